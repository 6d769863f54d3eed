"""The MCP client's own asyncio event loop, run in a daemon thread, and the child processes it spawns."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import sys
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
P = TypeVar("P", bound=asyncio.BaseProtocol)

SPAWNED: contextvars.ContextVar[list[asyncio.SubprocessTransport] | None] = contextvars.ContextVar(
    "mcp_spawned", default=None
)
"""Set by a task that starts a server: the loop appends each process that task spawns (its pid and exit code)."""


class _RecordingLoop(asyncio.SelectorEventLoop):
    """An event loop that tells the spawning task which process it started.

    The SDK's stdio transport keeps its process to itself; through the loop (anyio spawns with
    `loop.subprocess_exec`) we still learn a server's exit code, which the user needs when it dies at start.
    """

    async def subprocess_exec(
        self, protocol_factory: Callable[[], P], program: Any, *args: Any, **kwargs: Any
    ) -> tuple[asyncio.SubprocessTransport, P]:
        transport, protocol = await super().subprocess_exec(protocol_factory, program, *args, **kwargs)
        spawned = SPAWNED.get()
        if spawned is not None:
            spawned.append(transport)
        return transport, protocol


def _new_loop() -> asyncio.AbstractEventLoop:
    if sys.platform == "win32":  # the SDK spawns through a Job Object there: no exit codes are recorded
        return asyncio.new_event_loop()
    return _RecordingLoop()


class LoopThread:
    """One event loop in a daemon thread; synchronous callers hand it coroutines and wait for their results."""

    def __init__(self, name: str = "mcp-client") -> None:
        self.loop = _new_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            # Whatever still runs is cancelled, so a caller waiting on it is answered instead of left hanging.
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None) -> T:
        """Run `coro` on the loop and return its result; TimeoutError (the coroutine cancelled) past `timeout`,
        concurrent.futures.CancelledError when the loop stopped first."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("the MCP client's synchronous API was called from its own event loop")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError from None

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop and wait (at most `timeout` s) for its thread to end."""
        try:
            self.loop.call_soon_threadsafe(self.loop.stop)
        except RuntimeError:
            return  # already stopped and closed
        self._thread.join(timeout)
