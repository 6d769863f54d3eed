"""Fixtures for the MCP client's tests: the demo server over stdio and over streamable HTTP, and a hub."""

from __future__ import annotations

import os
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from engines.mcp.client import McpHub
from engines.mcp.types import McpServer

DEMO = Path(__file__).with_name("demo_server.py")


def demo_server(name: str = "demo", timeout_s: float = 10.0, **env: str) -> McpServer:
    """The demo server, run over stdio by this interpreter."""
    return McpServer(name, command=sys.executable, args=(str(DEMO),), env=env, timeout_s=timeout_s)


def script_server(name: str, code: str, timeout_s: float = 10.0) -> McpServer:
    """A "server" that is a Python one-liner (to misbehave on purpose)."""
    return McpServer(name, command=sys.executable, args=("-c", code), timeout_s=timeout_s)


@pytest.fixture
def hubs() -> Iterator[list[McpHub]]:
    """Hubs a test makes, closed after it whatever happens."""
    made: list[McpHub] = []
    yield made
    for hub in made:
        hub.close()


MakeHub = Callable[..., McpHub]


@pytest.fixture
def make_hub(hubs: list[McpHub]) -> MakeHub:
    """Make a hub on the given servers (PATH as its only outside variable unless `env` is given)."""

    def make(*servers: McpServer, env: dict[str, str] | None = None) -> McpHub:
        hub = McpHub(servers, {"PATH": os.environ.get("PATH", "")} if env is None else env)
        hubs.append(hub)
        return hub

    return make


@pytest.fixture(scope="module")
def demo_hub() -> Iterator[McpHub]:
    """One hub on the demo server, shared by a module's tests (the server starts once)."""
    hub = McpHub([demo_server()], {"PATH": os.environ.get("PATH", "")})
    yield hub
    hub.close()


@pytest.fixture(scope="module")
def http_url() -> Iterator[str]:
    """The demo server over streamable HTTP on 127.0.0.1, served by uvicorn in a thread."""
    import uvicorn

    from tests.engines.mcp.demo_server import build

    # Bound before uvicorn starts: a client connecting early waits in the backlog, so nothing polls for readiness.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]
    app = build().streamable_http_app(host="127.0.0.1")
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}/mcp"
    server.should_exit = True
    thread.join(10)
    sock.close()
