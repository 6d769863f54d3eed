"""The MCP client over streamable HTTP: the demo server on 127.0.0.1 through uvicorn."""

from __future__ import annotations

import json
import socket

import pytest

from engines.mcp.client import McpError
from engines.mcp.types import McpServer
from tests.engines.mcp.conftest import MakeHub

pytest.importorskip("mcp", reason="needs the MCP SDK: pip install 'llm-tui[mcp]'")


def test_lists_and_calls_over_http(make_hub: MakeHub, http_url: str) -> None:
    hub = make_hub(McpServer("web", url=http_url, timeout_s=10))
    tools = {t.name: t for t in hub.tools("web")}
    assert json.loads(tools["add"].input_schema)["required"] == ["a", "b"]
    assert hub.call("web", "add", {"a": 40, "b": 2}).text == "42"
    boom = hub.call("web", "boom", {})
    assert boom.is_error and "kaboom" in boom.text


def test_a_hanging_call_over_http_is_cancelled(make_hub: MakeHub, http_url: str) -> None:
    hub = make_hub(McpServer("web", url=http_url, timeout_s=10))
    with pytest.raises(McpError, match=r"^tool hang on server web did not answer within 0\.5 s$"):
        hub.call("web", "hang", {}, timeout_s=0.5)
    assert hub.call("web", "hangs_running", {}).text == "0"
    assert hub.call("web", "add", {"a": 1, "b": 2}).text == "3"


def test_an_unreachable_url_is_named(make_hub: MakeHub) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/mcp"
    hub = make_hub(McpServer("web", url=url, timeout_s=5))
    with pytest.raises(McpError, match=rf"^MCP server web: cannot reach {url}: "):
        hub.tools("web")
