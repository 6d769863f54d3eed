"""Stopping the server tidily: no new requests, running replies finish within a grace, the rest end cleanly.

uvicorn's own shutdown already stops accepting, closes idle connections and waits for busy ones; what it
cannot do is end a reply well: past `timeout_graceful_shutdown` it cancels the request's task, which cuts a
stream without an error event and loses the request's log line ("Cancel N running task(s)"). So the
server here ends every reply still running when the grace runs out through the reply's own event queue
(an Error, as an engine failure would), and gives uvicorn a little longer than the grace to see them go.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import threading
import weakref
from collections.abc import Generator
from contextlib import contextmanager
from types import FrameType
from typing import Protocol

import uvicorn

from engines.types import Error

log = logging.getLogger("llm_tui.serve")

SHUTDOWN_KIND = "shutdown"
"""The Error kind of a reply ended because the server stops (errors.py answers it 503 server_shutting_down)."""

FINISH_MARGIN_S = 2.0
"""How long after the grace uvicorn waits for the ended replies to write their last event and close."""


class Endable(Protocol):
    """A running reply that can be ended from the event loop."""

    def end_now(self, event: Error) -> None:
        """Cancel the generation and hand the reply `event` as its final event."""


class Drain:
    """The server's stopping state, shared by the routes (which register replies) and the server."""

    def __init__(self) -> None:
        self.stopping = False
        """Set when shutdown begins: new requests are refused with 503."""
        self.grace_s = 0.0
        self._expired = False
        self._live: weakref.WeakSet[Endable] = weakref.WeakSet()  # weak: a reply never iterated must not leak

    def track(self, reply: Endable) -> None:
        """A reply has started; one that starts after the grace has run out is ended at once."""
        self._live.add(reply)
        if self._expired:
            self._end(reply)

    def untrack(self, reply: Endable) -> None:
        """The reply is over."""
        self._live.discard(reply)

    def begin(self, grace_s: float) -> None:
        """Shutdown begins (on the event loop): end what still runs `grace_s` from now."""
        self.stopping = True
        self.grace_s = grace_s
        if running := len(self._live):
            log.info(
                "stopping: waiting up to %g s for %d running repl%s", grace_s, running, "y" if running == 1 else "ies"
            )
        asyncio.get_running_loop().call_later(grace_s, self.expire)

    def expire(self) -> None:
        """The grace is over: end every reply still running with an error event."""
        self._expired = True
        for reply in list(self._live):
            self._end(reply)

    def _end(self, reply: Endable) -> None:
        self._live.discard(reply)
        why = f"the server is shutting down: replies still running after its {self.grace_s:g} s grace are ended"
        reply.end_now(Error(why, SHUTDOWN_KIND))


class DrainingServer(uvicorn.Server):
    """uvicorn's server with a tidy stop: replies drain for `grace_s`, then end with an error event; SIGHUP is
    logged and ignored, and the stop signal is not raised again afterwards (the caller says `stopped`, exits 0)."""

    def __init__(self, config: uvicorn.Config, drain: Drain, grace_s: float) -> None:
        super().__init__(config)
        self.drain = drain
        self.grace_s = grace_s

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Refuse new requests and end what still runs after the grace, then uvicorn's own shutdown."""
        self.drain.begin(self.grace_s)
        await super().shutdown(sockets=sockets)

    @contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # Signals can only be handled on the main thread (the app's serve toggle runs on another).
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handlers = {signal.SIGINT: self.handle_exit, signal.SIGTERM: self.handle_exit, signal.SIGHUP: hangup}
        original = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)
        # uvicorn raises the captured signal again here, which kills the process by SIGTERM before it can say
        # "stopped"; a server that drained and stopped as asked has succeeded, so it does not.


def hangup(sig: int, frame: FrameType | None) -> None:
    """SIGHUP's handler: say it is ignored."""
    # Reloading would need every setting to be re-read consistently (keys, limits, the rate limiter's
    # state); a restart does that. Dying silently (exit 129) on a closed terminal or a stray `kill -HUP` is worse.
    log.warning("SIGHUP ignored; restart llm-tui serve to reload its config")
