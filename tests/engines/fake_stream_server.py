"""What the fake streaming servers (Ollama, OpenAI-compatible) share: a threaded HTTP server on 127.0.0.1 run as
a context manager, and handlers that can hold a stream mid-reply while watching for the client hanging up."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self


class HungUp(Exception):
    """The client closed the connection."""


class StreamHandler(BaseHTTPRequestHandler):
    """Quiet HTTP/1.1 handler; a client that vanishes mid-answer is not an error."""

    owner: StreamServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as uvicorn does: no Nagle delays

    def handle(self) -> None:
        with contextlib.suppress(OSError):
            super().handle()

    def hold(self) -> None:
        """Pause until released; meanwhile watch for the client hanging up (EOF on the socket)."""
        fake = self.owner
        fake.held.set()
        conn: socket.socket = self.connection
        while not fake.released.is_set():
            readable, _, _ = select.select([conn], [], [], 0.01)
            if readable:
                try:
                    if conn.recv(1, socket.MSG_PEEK) == b"":
                        raise HungUp
                except OSError:
                    raise HungUp from None


class StreamServer:
    """Serves `handler` (a StreamHandler subclass whose `owner` becomes this server) on a free port."""

    def __init__(self, handler: type[StreamHandler]) -> None:
        self.held = threading.Event()  # a stream reached its hold point
        self.released = threading.Event()
        self.disconnected = threading.Event()  # a client hung up before its stream ended
        self.stopping = threading.Event()
        bound = type(handler.__name__, (handler,), {"owner": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), bound)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)

    def release(self) -> None:
        """Let a held stream go on."""
        self.released.set()

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stopping.set()
        self.released.set()
        self.server.shutdown()
        self.server.server_close()
