"""A fake Ollama daemon on 127.0.0.1 that streams `POST /api/pull` like the real one, and misbehaves on demand.

The pull answer is chunked NDJSON, as the daemon sends it: `{"status":"pulling manifest"}`, then per layer
`{"status":"pulling <12 hex>","digest":"sha256:…","total":N,"completed":M}` lines (`completed` left out while 0,
as Go's `omitempty` does), `verifying sha256 digest`, `writing manifest`, `success`. Layers go one after another.

The daemon keeps partial blobs, and so does the fake: each model remembers how far each layer got, so a second
pull starts a layer at the bytes reached before (a layer already complete gets one line, completed = total).

Each model has a list of `PullFault`s consumed one per pull (then `default` applies): an `{"error": …}` line,
a dropped connection, a clean end without `success`, or a hold until `release()` (or until the client hangs up,
which sets `disconnected`). An unknown model is answered the way the daemon does: 200, `pulling manifest`,
then `{"error":"pull model manifest: file does not exist"}` - or with `unknown_status` as a plain HTTP error.
Also `GET /api/tags` (the pulled models) and `GET /` ("Ollama is running"). Every request is recorded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import select
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

NOT_FOUND = "pull model manifest: file does not exist"


@dataclass(frozen=True)
class PullFault:
    """How one pull misbehaves; byte counts are of the whole model (all layers), as the daemon has them."""

    error_after: int | None = None  # after this many bytes, send {"error": error} and end the stream
    error: str = "max retries exceeded: unexpected EOF"
    drop_after: int | None = None  # after this many bytes, close the connection mid-stream
    end_after: int | None = None  # after this many bytes, end the stream cleanly but without "success"
    hold_after: int | None = None  # after this many bytes, pause until release() or the client hangs up


@dataclass
class FakeModel:
    """One model the fake registry has: its layers and how far the daemon has got with each."""

    name: str
    sizes: list[int]
    faults: list[PullFault] = field(default_factory=list)
    default: PullFault = field(default_factory=PullFault)
    have: list[int] = field(default_factory=list)  # bytes of each layer on the daemon's disk
    pulled: bool = False
    pulls: int = 0

    def __post_init__(self) -> None:
        self.have = self.have or [0] * len(self.sizes)

    @property
    def digests(self) -> list[str]:
        return [hashlib.sha256(f"{self.name}/{i}/{n}".encode()).hexdigest() for i, n in enumerate(self.sizes)]

    @property
    def digest(self) -> str:
        return hashlib.sha256("".join(self.digests).encode()).hexdigest()


@dataclass(frozen=True)
class Recorded:
    """One request as the server saw it."""

    method: str
    path: str
    body: Any


def full_name(name: str) -> str:
    """The daemon's default tag: "qwen2.5" -> "qwen2.5:latest"."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


class FakeOllama:
    """The server; use as a context manager. `host` is what to give the client."""

    def __init__(self, *, step: int = 1 << 20, delay: float = 0.0, unknown_status: int | None = None) -> None:
        self.step = step  # bytes between two progress lines of a layer
        self.delay = delay  # seconds before each line
        self.unknown_status = unknown_status
        self.models: dict[str, FakeModel] = {}
        self.requests: list[Recorded] = []
        self.lines: list[dict[str, Any]] = []  # every NDJSON line sent, over all pulls
        self.lock = threading.Lock()
        self.held = threading.Event()  # a pull reached its hold point
        self.released = threading.Event()
        self.disconnected = threading.Event()  # a client hung up before its stream ended
        self.stopping = threading.Event()
        fake = self

        class Handler(_Handler):
            owner = fake

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.host = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)

    def add(self, name: str, sizes: Sequence[int], *faults: PullFault, default: PullFault | None = None) -> FakeModel:
        model = FakeModel(full_name(name), list(sizes), list(faults), default or PullFault())
        self.models[model.name] = model
        return model

    def release(self) -> None:
        """Let a held pull go on."""
        self.released.set()

    def __enter__(self) -> FakeOllama:
        self.thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stopping.set()
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


class _HungUp(Exception):
    """The client closed the connection."""


class _Drop(Exception):
    """We cut the connection on purpose."""


class _Handler(BaseHTTPRequestHandler):
    owner: FakeOllama
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass

    def handle(self) -> None:
        with contextlib.suppress(OSError):
            super().handle()

    def do_GET(self) -> None:
        fake = self.owner
        fake.requests.append(Recorded("GET", self.path, None))
        if self.path == "/":
            self.answer(200, b"Ollama is running", "text/plain; charset=utf-8")
        elif self.path == "/api/tags":
            models = [
                {"name": m.name, "model": m.name, "modified_at": "2025-01-01T00:00:00Z", "size": sum(m.sizes),
                 "digest": m.digest, "details": {"format": "gguf", "family": "fake"}}
                for m in fake.models.values() if m.pulled
            ]  # fmt: skip
            self.answer(200, json.dumps({"models": models}).encode())
        else:
            self.answer(404, b"404 page not found", "text/plain")

    def do_POST(self) -> None:
        fake = self.owner
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        fake.requests.append(Recorded("POST", self.path, body))
        if self.path != "/api/pull" or not isinstance(body, dict):
            self.answer(404 if self.path != "/api/pull" else 400, json.dumps({"error": "bad request"}).encode())
            return
        model = fake.models.get(full_name(str(body.get("model") or body.get("name") or "")))
        if model is None and fake.unknown_status is not None:
            self.answer(fake.unknown_status, json.dumps({"error": NOT_FOUND}).encode())
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            self.send_line({"status": "pulling manifest"})
            if model is None:
                self.send_line({"error": NOT_FOUND})
            elif self.stream_layers(model):
                for status in ("verifying sha256 digest", "writing manifest", "success"):
                    self.send_line({"status": status})
                model.pulled = True
            self.wfile.write(b"0\r\n\r\n")
        except _HungUp:
            fake.disconnected.set()
            self.close_connection = True
        except _Drop:
            self.close_connection = True

    def stream_layers(self, model: FakeModel) -> bool:
        """Send each layer's progress, applying this pull's fault; True when every layer is complete."""
        fake = self.owner
        with fake.lock:
            fault = model.faults.pop(0) if model.faults else model.default
            model.pulls += 1
        for i, (size, digest) in enumerate(zip(model.sizes, model.digests, strict=True)):
            first = True
            while first or model.have[i] < size:
                if not first:
                    model.have[i] = min(size, model.have[i] + fake.step)
                first = False
                line: dict[str, Any] = {"status": f"pulling {digest[:12]}", "digest": f"sha256:{digest}", "total": size}
                if model.have[i]:
                    line["completed"] = model.have[i]
                self.send_line(line)
                got = sum(model.have)
                if fault.error_after is not None and got >= fault.error_after:
                    self.send_line({"error": fault.error})
                    return False
                if fault.end_after is not None and got >= fault.end_after:
                    return False
                if fault.drop_after is not None and got >= fault.drop_after:
                    raise _Drop  # no closing chunk: the client sees the stream cut short
                if fault.hold_after is not None and got >= fault.hold_after:
                    fault = PullFault(error_after=fault.error_after, drop_after=fault.drop_after)  # hold once
                    self.hold()
        return True

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
                        raise _HungUp
                except OSError:
                    raise _HungUp from None

    def send_line(self, obj: dict[str, Any]) -> None:
        fake = self.owner
        if fake.delay:
            time.sleep(fake.delay)
        data = json.dumps(obj, separators=(",", ":")).encode() + b"\n"
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        except OSError:
            raise _HungUp from None
        fake.lines.append(obj)

    def answer(self, status: int, body: bytes, kind: str = "application/json; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
