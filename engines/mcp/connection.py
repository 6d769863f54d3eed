"""One MCP server's session on the client's event loop: started on demand, listed, called, stopped.

One task owns each connection: it enters the transport and the SDK's ClientSession and leaves them again, in
that same task, as anyio's cancel scopes require. Calls run in other tasks on the same loop and share the session.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import Mapping
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from engines.mcp.bounds import MAX_PAGES, MAX_TOOLS, Listing, accept_tools, result_text
from engines.mcp.errors import McpError, require_sdk
from engines.mcp.loop import SPAWNED
from engines.mcp.stderr_tail import StderrTail
from engines.mcp.types import McpResult, McpServer

if TYPE_CHECKING:
    import anyio
    from mcp.client.session import ClientSession
    from mcp_types import Tool

log = logging.getLogger(__name__)

STOP_TIMEOUT = 10.0
"""Longest wait for a session to end: the SDK's stdio shutdown takes at most about 7 s (flush, exit, TERM, KILL)."""
STDERR_GRACE = 0.5
"""How long a dead server's last stderr bytes may take to arrive before its error is written."""
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def child_env(server: McpServer, env: Mapping[str, str]) -> dict[str, str]:
    """A stdio server's own variables: the SDK's safe defaults taken from `env`, then the server's `env` entries
    with `${NAME}` replaced from `env` (so a secret need not be written into config.toml)."""
    from mcp.client.stdio import DEFAULT_INHERITED_ENV_VARS

    base = {key: env[key] for key in DEFAULT_INHERITED_ENV_VARS if key in env and not env[key].startswith("()")}

    def expand(key: str, value: str) -> str:
        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in env:
                raise McpError(f"MCP server {server.name}: env {key} uses ${{{name}}}, which is not set")
            return env[name]

        return _VAR.sub(one, value)

    return base | {key: expand(key, value) for key, value in server.env.items()}


class Connection:
    """A started (or starting) MCP server and its open ClientSession."""

    def __init__(self, server: McpServer, env: Mapping[str, str]) -> None:
        self.server = server
        self._env = env
        self._session: ClientSession | None = None
        self._ready: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._scope: anyio.CancelScope | None = None
        self._stop = asyncio.Event()
        self._done = asyncio.Event()
        self._spawned: list[asyncio.SubprocessTransport] = []
        self._stderr = StderrTail()
        self.listing: Listing | None = None
        """The last tools/list answer within the limits (None until listed)."""

    @property
    def pids(self) -> list[int]:
        """Process ids of the stdio server (empty for HTTP, or before it started)."""
        return [pid for t in self._spawned if (pid := t.get_pid()) is not None]

    @property
    def alive(self) -> bool:
        """Whether the session is open (or still opening) and has not been stopped."""
        return not self._done.is_set() and not self._stop.is_set()

    async def start(self) -> None:
        """Start the server and its session; later callers wait for the same start. Raises McpError."""
        if self._ready is None:
            require_sdk()
            self._ready = asyncio.get_running_loop().create_future()
            self._ready.add_done_callback(_retrieve)
            self._task = asyncio.create_task(self._own(self._ready), name=f"mcp server {self.server.name}")
        # shield: one caller giving up must not cancel the start the others wait for
        await asyncio.shield(self._ready)

    async def _own(self, ready: asyncio.Future[None]) -> None:
        """The owner task: open the session, hold it until stop(), close it (the child process with it)."""
        import anyio
        from mcp.client.session import ClientSession
        from mcp_types import Implementation

        failure: BaseException | None = None
        try:
            with anyio.CancelScope(deadline=anyio.current_time() + self.server.timeout_s) as scope:
                self._scope = scope
                async with AsyncExitStack() as stack:
                    read, write = await self._open_transport(stack)
                    session = ClientSession(read, write, client_info=Implementation(name="llm-tui", version="1"))
                    await stack.enter_async_context(session)
                    await session.initialize()
                    scope.deadline = math.inf  # started: from now on only stop() ends it
                    self._session = session
                    ready.set_result(None)
                    await self._stop.wait()
        except Exception as exc:  # every way a start fails becomes one McpError below
            failure = exc
        finally:
            self._session = None
            if not ready.done():
                await self._stderr.drained(STDERR_GRACE)
                if failure is None:  # the deadline passed, or stop() came first
                    reason = "was stopped" if self._stop.is_set() else f"did not start within {self._seconds()} s"
                    failure = McpError(f"MCP server {self.server.name} {reason}{self._tail()}")
                ready.set_exception(self._start_error(failure))
            self._stderr.close()
            self._done.set()

    async def _open_transport(self, stack: AsyncExitStack) -> tuple[Any, Any]:
        """Enter the stdio or streamable-HTTP transport on `stack`; its read and write streams."""
        if self.server.url:
            from mcp.client.streamable_http import streamable_http_client

            return await stack.enter_async_context(streamable_http_client(self.server.url))
        from mcp.client.stdio import StdioServerParameters, stdio_client

        if not self.server.command:
            raise McpError(f"MCP server {self.server.name}: set `command` or `url` in its [[mcp_servers]] entry")
        params = StdioServerParameters(
            command=self.server.command, args=list(self.server.args), env=child_env(self.server, self._env)
        )
        errlog = await self._stderr.open()
        token = SPAWNED.set(self._spawned)
        try:
            return await stack.enter_async_context(stdio_client(params, errlog=errlog))
        finally:
            SPAWNED.reset(token)
            errlog.close()  # the child holds its own copy; ours would keep the pipe from ever ending

    def _start_error(self, failure: BaseException) -> McpError:
        """What the user reads when the server did not start."""
        from mcp.shared.exceptions import MCPError
        from mcp_types import CONNECTION_CLOSED

        leaf = _leaf(failure)
        name, command = self.server.name, self.server.command
        if isinstance(leaf, McpError):
            return leaf
        if isinstance(leaf, FileNotFoundError) and command and not self._spawned:
            return McpError(
                f"MCP server {name}: command not found: {command} (install it, or give its full path in config.toml)"
            )
        if isinstance(leaf, PermissionError) and command and not self._spawned:
            return McpError(f"MCP server {name}: cannot run {command}: permission denied")
        if isinstance(leaf, MCPError) and leaf.code == CONNECTION_CLOSED:
            return McpError(f"MCP server {name} {self._ended()} at start{self._tail()}")
        if isinstance(leaf, MCPError):
            return McpError(f"MCP server {name} refused to start a session: {leaf.message}{self._tail()}")
        if self.server.url and isinstance(leaf, OSError | _http_errors()):
            return McpError(f"MCP server {name}: cannot reach {_shown(self.server.url)}: {leaf}")
        return McpError(f"MCP server {name} failed to start: {_text(leaf)}{self._tail()}")

    async def list_tools(self) -> Listing:
        """The server's tools within the limits (read page by page). Raises McpError."""
        session = await self._open_session()  # first: it says so when the SDK is missing
        from mcp_types import PaginatedRequestParams

        what = f"tools/list on server {self.server.name}"
        raw: list[Tool] = []
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            params = PaginatedRequestParams(cursor=cursor) if cursor else None
            page = await self._request(what, session.list_tools(params=params), self.server.timeout_s)
            raw.extend(page.tools)
            cursor = page.next_cursor
            if not cursor or len(raw) > MAX_TOOLS:
                break
        self.listing = accept_tools(self.server.name, raw)
        for reason in self.listing.skipped:
            log.warning("MCP server %s: tool left out: %s", self.server.name, reason)
        return self.listing

    async def call(self, tool: str, arguments: dict[str, object], timeout_s: float) -> McpResult:
        """Call `tool`; a tool that failed is a result with is_error, a timeout or a broken server McpError."""
        session = await self._open_session()
        started = time.monotonic()
        what = f"tool {tool} on server {self.server.name}"
        result = await self._request(what, session.call_tool(tool, dict(arguments)), timeout_s)
        elapsed_ms = (time.monotonic() - started) * 1000
        return McpResult(result_text(result.content, result.structured_content), result.is_error, elapsed_ms)

    async def _open_session(self) -> ClientSession:
        await self.start()
        if self._session is None:
            raise McpError(f"MCP server {self.server.name} {self._ended()}{self._tail()}")
        return self._session

    async def _request(self, what: str, request: Any, timeout_s: float) -> Any:
        """Await one request within `timeout_s`, its failures as McpError; a timed-out request is cancelled."""
        import anyio
        from mcp.shared.exceptions import MCPError
        from mcp_types import CONNECTION_CLOSED
        from pydantic import ValidationError

        try:
            # Cancelling the request makes the SDK send notifications/cancelled, so the server stops the work
            # and the session stays usable for the next call.
            with anyio.move_on_after(timeout_s) as scope:
                return await request
        except MCPError as exc:
            if exc.code == CONNECTION_CLOSED:
                if self._stop.is_set():  # we ended it: its exit code says nothing about the server
                    raise McpError(f"MCP server {self.server.name} was stopped before {what} answered") from None
                await self.stop()
                raise McpError(f"MCP server {self.server.name} {self._ended()}{self._tail()}") from None
            raise McpError(f"MCP server {self.server.name} refused {what}: {exc.message} (code {exc.code})") from None
        except ValidationError as exc:
            raise McpError(f"MCP server {self.server.name} sent an invalid answer to {what}: {_text(exc)}") from None
        except RuntimeError as exc:  # the SDK's own checks of an answer (output schema, unexpected shapes)
            raise McpError(f"MCP server {self.server.name} sent a bad answer to {what}: {exc}") from None
        except (TypeError, ValueError) as exc:  # arguments that do not serialize to JSON
            raise McpError(f"cannot send {what}: {_text(exc)}") from None
        finally:
            if asyncio.iscoroutine(request):
                request.close()  # never awaited when the session was already gone
        if scope.cancelled_caught:
            raise McpError(f"{what} did not answer within {_seconds(timeout_s)} s")
        raise AssertionError("unreachable")

    async def stop(self) -> None:
        """End the session and the server process (bounded: a server that will not die is abandoned)."""
        self._stop.set()
        if self._task is None:
            return
        if self._ready is not None and not self._ready.done() and self._scope is not None:
            self._scope.cancel()  # still starting: nothing to close gracefully
        try:
            await asyncio.wait_for(self._done.wait(), STOP_TIMEOUT)
        except TimeoutError:
            if self._scope is not None:
                self._scope.cancel()

    def _ended(self) -> str:
        """How the server process ended: "exited with code 3", "was killed by signal 9", or closed the pipe."""
        codes = [code for t in self._spawned if (code := t.get_returncode()) is not None]
        if not codes:
            return "closed the connection"
        if codes[0] < 0:
            return f"was killed by signal {-codes[0]}"
        return f"exited with code {codes[0]}"

    def _tail(self) -> str:
        lines = self._stderr.lines()
        return ("; its stderr ends:\n" + "\n".join(lines)) if lines else ""

    def _seconds(self) -> str:
        return _seconds(self.server.timeout_s)


def _seconds(value: float) -> str:
    return f"{value:g}"


def _retrieve(future: asyncio.Future[None]) -> None:
    # A start nobody waits for any more must not log "exception was never retrieved".
    if not future.cancelled():
        future.exception()


def _leaf(exc: BaseException) -> BaseException:
    """The first real error inside (nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _text(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _shown(url: str) -> str:
    """`url` fit for an error message: no user, password or query (where tokens tend to hide)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _http_errors() -> type[Exception]:
    import httpx2

    return httpx2.HTTPError
