"""What the fleet's fake servers share: a threaded HTTP/1.1 server on 127.0.0.1 whose subclass answers each request,
and that misbehaves on demand: `hangs` (takes the connection, never answers), `dies` (closes it unanswered).

`keep_alive=False` closes the connection after each answer, so a server stopped between two polls is refused at
once (a kept-alive connection would otherwise outlive the listening socket).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Any, Literal

from tests.engines.fake_stream_server import HungUp, StreamHandler, StreamServer

Mode = Literal["ok", "hangs", "dies"]


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    content_type: str = "application/json"


@dataclass(frozen=True)
class Seen:
    """One request as the server saw it (header names in lower case)."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    peer: int = 0
    """The client's port: one port for many requests means the connection was kept alive."""


def json_answer(status: int, doc: object) -> Answer:
    return Answer(status, json.dumps(doc).encode())


def error_answer(status: int, message: str, code: str | None = None, kind: str = "invalid_request_error") -> Answer:
    """An OpenAI-shaped error, as llm-tui serve, vLLM and llama-server send them."""
    return json_answer(status, {"error": {"message": message, "type": kind, "param": None, "code": code or status}})


class FakeHttp(StreamServer):
    """Subclasses implement answer(); use as a context manager. `base` is the URL to put in a FleetMember."""

    def __init__(self, *, mode: Mode = "ok", keep_alive: bool = True) -> None:
        self.mode: Mode = mode
        self.keep_alive = keep_alive
        self.seen: list[Seen] = []
        super().__init__(_Handler)
        self.base = f"http://127.0.0.1:{self.port}"

    def answer(self, method: str, path: str, headers: dict[str, str], body: Any) -> Answer:
        raise NotImplementedError

    def stop(self) -> None:
        """Close the listening socket: new connections are refused from now on."""
        self.__exit__(None, None, None)


class _Handler(StreamHandler):
    owner: FakeHttp

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        fake = self.owner
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        headers = {k.lower(): v for k, v in self.headers.items()}
        fake.seen.append(Seen(method, self.path, headers, body, self.client_address[1]))
        if fake.mode == "hangs":
            with contextlib.suppress(HungUp):
                self.hold()  # until the server stops or the client hangs up
            self.close_connection = True
            return
        if fake.mode == "dies":
            self.close_connection = True  # nothing written: the client sees the connection closed unanswered
            return
        answer = fake.answer(method, self.path, headers, body)
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        if not fake.keep_alive:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(answer.body)
