"""The MCP client the chat uses: a synchronous facade over one asyncio loop holding a session per server.

Textual thread workers (and tests) call McpHub directly; each call is handed to the hub's own event loop, which
runs in a daemon thread, and waits there for its answer. Servers start on demand, on the first tools() or call()
that needs them, and stay open until close(). A server that fails is reported by name and never hides the others.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from engines.mcp.bounds import MAX_NAME
from engines.mcp.connection import STOP_TIMEOUT, Connection
from engines.mcp.errors import McpError
from engines.mcp.loop import LoopThread
from engines.mcp.naming import model_name, tool_for_model
from engines.mcp.types import McpResult, McpServer, McpTool

__all__ = ["McpError", "McpHub", "tool_for_model"]

T = TypeVar("T")
GRACE_S = 15.0
"""Added to an operation's own timeouts before a synchronous caller stops waiting for the loop at all."""


class McpHub:
    """The configured MCP servers: their tools, calls to them, and their shutdown.

    `env` is the environment the caller runs in (the hub reads no variables itself). A stdio server gets only the
    SDK's safe variables from it (PATH, HOME, USER, ...) plus its own `env` entries, where `${NAME}` is replaced
    by `env["NAME"]` so a token need not be written into config.toml. Call close() when done (or use `with`).
    """

    def __init__(self, servers: Sequence[McpServer], env: Mapping[str, str]) -> None:
        names = [s.name for s in servers]
        if duplicates := sorted({n for n in names if names.count(n) > 1}):
            raise McpError(f"[[mcp_servers]] names must be unique: {', '.join(duplicates)} appears twice")
        self._servers = {s.name: s for s in servers}
        self._env = dict(env)
        self._connections: dict[str, Connection] = {}
        self._loop: LoopThread | None = None
        self._closed = False
        self._lock = threading.Lock()
        """Guards `_loop` and `_closed`: worker threads may make the first call, or close, at the same time."""

    @property
    def servers(self) -> tuple[McpServer, ...]:
        """The configured servers, in configuration order."""
        return tuple(self._servers.values())

    def tools(self, server: str) -> list[McpTool]:
        """The tools `server` offers (starting it if need be). Raises McpError."""
        timeout = 2 * self._server(server).timeout_s + GRACE_S  # start, then list
        return self._run(self._tools(server), timeout)

    def all_tools(self) -> tuple[list[McpTool], dict[str, str]]:
        """Every server's tools, and server name → error text for each server that failed (listed in parallel)."""
        if not self._servers:
            return [], {}
        timeout = 2 * max(s.timeout_s for s in self._servers.values()) + GRACE_S
        return self._run(self._all_tools(), timeout)

    def call(self, server: str, tool: str, arguments: dict[str, object], timeout_s: float | None = None) -> McpResult:
        """Call `tool` on `server` within `timeout_s` (default: the server's). A tool that failed is a result with
        is_error; an unknown server or tool, a server that cannot start, a timeout or a protocol error is McpError."""
        limit = self._server(server).timeout_s if timeout_s is None else timeout_s
        timeout = 2 * self._server(server).timeout_s + limit + GRACE_S  # start, list, call
        return self._run(self._call(server, tool, arguments, limit), timeout)

    def find(self, qualified: str) -> McpTool | None:
        """The tool the model calls `qualified` (`server__tool`, as sent or as made safe), or None."""
        return self._run(self._find(qualified), 2 * max((s.timeout_s for s in self.servers), default=0) + GRACE_S)

    def skipped(self, server: str) -> tuple[str, ...]:
        """Tools of `server`'s last listing left out for the limits, each with its reason."""
        connection = self._connections.get(server)
        listing = connection.listing if connection else None
        return listing.skipped if listing else ()

    def pids(self) -> list[int]:
        """Process ids of the stdio servers started so far (for tests and diagnostics)."""
        return [pid for c in list(self._connections.values()) for pid in c.pids]

    def close(self) -> None:
        """End every session and stop every server process; the hub refuses work afterwards."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loop = self._loop
        if loop is None:
            return
        try:
            loop.run(self._close_all(), STOP_TIMEOUT + GRACE_S)
        except TimeoutError:
            pass  # a server that would not die in time is left to the SDK's own kill escalation
        finally:
            loop.stop()

    def __enter__(self) -> McpHub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        with self._lock:
            if self._closed:
                coro.close()
                raise McpError("the MCP client is closed")
            if self._loop is None:
                self._loop = LoopThread()
            loop = self._loop
        try:
            return loop.run(coro, timeout)
        except TimeoutError:
            raise McpError(f"the MCP client did not answer within {timeout:g} s") from None
        except concurrent.futures.CancelledError:
            raise McpError("the MCP client was closed before this finished") from None

    def _server(self, name: str) -> McpServer:
        server = self._servers.get(name)
        if server is None:
            known = ", ".join(self._servers) or "none configured"
            raise McpError(f"no MCP server named {name} (servers: {known})")
        return server

    def _connection(self, name: str) -> Connection:
        """The server's connection, a new one if it never started or has ended (so a dead server restarts)."""
        connection = self._connections.get(name)
        if connection is None or not connection.alive:
            connection = Connection(self._server(name), self._env)
            self._connections[name] = connection
        return connection

    async def _tools(self, server: str) -> list[McpTool]:
        listing = await self._connection(server).list_tools()
        return list(listing.tools)

    async def _all_tools(self) -> tuple[list[McpTool], dict[str, str]]:
        names = list(self._servers)
        answers = await asyncio.gather(*(self._tools(n) for n in names), return_exceptions=True)
        tools: list[McpTool] = []
        errors: dict[str, str] = {}
        for name, answer in zip(names, answers, strict=True):
            if isinstance(answer, McpError):
                errors[name] = str(answer)
            elif isinstance(answer, BaseException):
                raise answer
            else:
                tools.extend(answer)
        return tools, errors

    async def _call(self, server: str, tool: str, arguments: dict[str, object], timeout_s: float) -> McpResult:
        connection = self._connection(server)
        listing = connection.listing or await connection.list_tools()
        if not any(t.name == tool for t in listing.tools):
            for reason in listing.skipped:
                if reason.startswith(f"{tool[:MAX_NAME]!r}:"):
                    raise McpError(f"MCP server {server}: tool {reason} (so it cannot be called)")
            offered = ", ".join(t.name for t in listing.tools) or "none"
            raise McpError(f"MCP server {server} has no tool {tool} (it offers: {offered})")
        return await connection.call(tool, arguments, timeout_s)

    async def _find(self, qualified: str) -> McpTool | None:
        if found := self._known(qualified):
            return found
        for name in self._servers:
            connection = self._connections.get(name)
            listed = connection is not None and connection.listing is not None
            if not listed and model_name(qualified).startswith(model_name(f"{name}__")):
                try:
                    await self._tools(name)
                except McpError:
                    continue
        return self._known(qualified)

    def _known(self, qualified: str) -> McpTool | None:
        for connection in self._connections.values():
            for tool in connection.listing.tools if connection.listing else ():
                if qualified in (tool.qualified, model_name(tool.qualified)):
                    return tool
        return None

    async def _close_all(self) -> None:
        connections = list(self._connections.values())
        self._connections.clear()
        await asyncio.gather(*(c.stop() for c in connections))
