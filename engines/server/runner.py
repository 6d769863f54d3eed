"""Starting and stopping the API server: the bind rules, the port check, and uvicorn in the foreground
(`llm-tui serve`) or on a thread (the app's serve toggle).

The listening socket is bound here, before uvicorn starts, so a port in use is reported as one clear
error (not a traceback from inside the event loop) and nothing can take the port in between.
"""

from __future__ import annotations

import math
import socket
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from engines import listen
from engines.errors import LlmTuiError
from engines.listen import is_loopback
from engines.server.app import ServerContext, create_app
from engines.server.guard import Asgi, ServerStats

if TYPE_CHECKING:
    from engines.server.drain import DrainingServer


class ServeError(LlmTuiError):
    """The server cannot start: address refused without a key, port in use, bad host."""


def check_exposure(host: str, has_keys: bool) -> None:
    """Refuse to listen beyond loopback without an API key."""
    if not is_loopback(host) and not has_keys:
        raise ServeError(
            f"refusing to listen on {host} without an API key: anyone who can reach this machine could use "
            "the models; set one with --api-key-env NAME, LLM_TUI_API_KEY or [serve] api_keys, or bind 127.0.0.1"
        )


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port; ServeError naming the port when it is taken."""
    in_use = " (another llm-tui serve or another server?); choose another with --port or [serve] port"
    return listen.bind(host, port, error=ServeError, in_use=in_use)


def url_of(sock: socket.socket) -> str:
    """The base URL clients use (`…/v1`), from the address actually bound (port 0 picks one)."""
    return listen.address_url(sock) + "/v1"


@dataclass
class Listening:
    """A bound, checked socket and the context the server will serve."""

    context: ServerContext
    sock: socket.socket
    app: Asgi = field(init=False)
    """The ASGI app over the context (built once: it holds the access log file, closed by close_app)."""

    def __post_init__(self) -> None:
        self.app = create_app(self.context)

    @property
    def url(self) -> str:
        return url_of(self.sock)

    def close_app(self) -> None:
        """Close what the app holds open (the access log file); the server has stopped."""
        close = getattr(self.app, "close", None)
        if callable(close):
            close()


def prepare(context: ServerContext, host: str | None = None, port: int | None = None) -> Listening:
    """Check the bind rules and bind; ServeError says what to change."""
    serve = context.serve
    host = serve.host if host is None else host
    port = serve.port if port is None else port
    check_exposure(host, serve.has_keys)
    return Listening(context, bind(host, port))


def _uvicorn(listening: Listening, grace_s: float) -> DrainingServer:
    import uvicorn

    from engines.server.drain import FINISH_MARGIN_S, DrainingServer

    config = uvicorn.Config(
        listening.app,
        log_level="warning",
        access_log=False,  # the guard logs one line per request, without keys
        lifespan="off",
        # Past the grace the drain ends every reply itself; uvicorn's own cancel is only the backstop.
        timeout_graceful_shutdown=math.ceil(grace_s + FINISH_MARGIN_S),
        timeout_keep_alive=30,
    )
    return DrainingServer(config, listening.context.drain, grace_s)


def serve_forever(listening: Listening) -> None:
    """Run in the foreground until Ctrl+C / SIGTERM; running replies get `shutdown_grace_s` to finish."""
    server = _uvicorn(listening, listening.context.serve.shutdown_grace_s)
    try:
        server.run(sockets=[listening.sock])
    finally:
        listening.close_app()


class ServerThread:
    """The server on a background thread, for the app: start(), `url`, `stats`, stop()."""

    def __init__(self, listening: Listening) -> None:
        self.listening = listening
        # No grace: turning the app's server off ends its replies at once (each with an error event).
        self._server = _uvicorn(listening, 0.0)
        self._thread = threading.Thread(target=self._run, name="llm-tui-serve", daemon=True)
        self.error: BaseException | None = None

    @property
    def url(self) -> str:
        return self.listening.url

    @property
    def stats(self) -> ServerStats:
        return self.listening.context.stats

    @property
    def key_count(self) -> int:
        """How many API keys clients may send (0: none is asked for)."""
        return len(self.listening.context.serve.all_keys())

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self.listening.sock])
        except BaseException as exc:  # reported by the app, not lost on a daemon thread
            self.error = exc

    def start(self, timeout: float = 10.0) -> None:
        """Start serving; returns once the server accepts connections."""
        self._thread.start()
        deadline = threading.Event()
        for _ in range(int(timeout / 0.02)):
            if self._server.started or not self._thread.is_alive():
                break
            deadline.wait(0.02)
        if self.error is not None:
            raise ServeError(f"the API server failed to start: {self.error}")

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting, end open streams (their requests are cancelled) and wait for the thread."""
        self._server.should_exit = True
        self._thread.join(timeout)
        self.listening.sock.close()
        self.listening.close_app()
