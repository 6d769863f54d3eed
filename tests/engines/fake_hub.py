"""A fake HTTP file server on 127.0.0.1 that serves bytes with Range and misbehaves on demand.

Each served path has a list of `Fault`s consumed one per request (then `default` applies), so a test can
say "stall the first request after 1000 bytes, then behave". Every request's headers are recorded.

Run as a script (`python -m tests.engines.fake_hub FILE`) it serves FILE at /file and prints its port.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType


@dataclass(frozen=True)
class Fault:
    """How one request is answered; the default is a correct answer."""

    status: int | None = None  # answer with this status and an empty body
    redirect_to: str | None = None  # 302 to this URL
    stall_after: int | None = None  # send this many body bytes, then go silent (until the hub stops)
    drop_after: int | None = None  # send this many body bytes, then close the connection
    ignore_range: bool = False  # answer 200 with the whole file even to a Range request
    wrong_range: bool = False  # answer a Range request with 206 from byte 0, labelled honestly
    corrupt_at: int | None = None  # flip the byte at this file offset
    throttle_bps: int | None = None  # send at about this rate


@dataclass
class Served:
    """One path's content and its queued misbehaviours."""

    data: bytes
    faults: list[Fault] = field(default_factory=list)
    default: Fault = field(default_factory=Fault)
    sent_bytes: int = 0  # body bytes sent so far over all requests
    milestone: int | None = None  # set `reached` once sent_bytes passes this
    reached: threading.Event = field(default_factory=threading.Event)

    def next_fault(self) -> Fault:
        return self.faults.pop(0) if self.faults else self.default


@dataclass(frozen=True)
class Recorded:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]


class FakeHub:
    """The server; use as a context manager. `url(path)` gives the address of a served path."""

    def __init__(self) -> None:
        self.files: dict[str, Served] = {}
        self.requests: list[Recorded] = []
        self.stopping = threading.Event()
        hub = self

        class Handler(_Handler):
            owner = hub

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def add(self, path: str, data: bytes, *faults: Fault, default: Fault | None = None) -> Served:
        served = Served(data, list(faults), default or Fault())
        self.files[path] = served
        return served

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


class _Handler(BaseHTTPRequestHandler):
    owner: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass

    def handle(self) -> None:
        with contextlib.suppress(OSError):  # the client vanished (killed, cancelled, timed out): nothing to answer
            super().handle()

    def do_GET(self) -> None:
        hub = self.owner
        hub.requests.append(Recorded("GET", self.path, {k.lower(): v for k, v in self.headers.items()}))
        served = hub.files.get(self.path)
        if served is None:
            self.answer(404)
            return
        fault = served.next_fault()
        if fault.status is not None:
            self.answer(fault.status)
            return
        if fault.redirect_to is not None:
            self.answer(302, {"Location": fault.redirect_to})
            return
        size = len(served.data)
        start = 0
        match = re.match(r"^bytes=(\d+)-$", self.headers.get("Range", ""))
        if match and not fault.ignore_range:
            start = int(match.group(1))
            if start >= size:
                self.answer(416, {"Content-Range": f"bytes */{size}"})
                return
            if fault.wrong_range:
                start = 0
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(size - start))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self.send_body(served, fault, start)

    def do_HEAD(self) -> None:
        """What the Hub answers huggingface_hub's metadata request with: commit, LFS sha256 and size."""
        hub = self.owner
        hub.requests.append(Recorded("HEAD", self.path, {k.lower(): v for k, v in self.headers.items()}))
        served = hub.files.get(self.path)
        if served is None:
            self.answer(404, {"X-Error-Code": "EntryNotFound"})
            return
        if served.default.status is not None:
            self.answer(served.default.status)
            return
        self.send_response(200)
        self.send_header("X-Repo-Commit", "c0ffee" * 6 + "c0ff")
        self.send_header("X-Linked-Etag", '"' + hashlib.sha256(served.data).hexdigest() + '"')
        self.send_header("X-Linked-Size", str(len(served.data)))
        self.send_header("Content-Length", str(len(served.data)))
        self.end_headers()

    def send_body(self, served: Served, fault: Fault, start: int) -> None:
        body = bytearray(served.data[start:]) if fault.corrupt_at is not None else memoryview(served.data)[start:]
        if fault.corrupt_at is not None and fault.corrupt_at >= start:
            body[fault.corrupt_at - start] ^= 0xFF
        limit = len(body)
        for cut in (fault.stall_after, fault.drop_after):
            if cut is not None:
                limit = min(limit, cut)
        step = 1 << 20 if fault.throttle_bps is None else max(1024, fault.throttle_bps // 50)
        pos = 0
        try:
            while pos < limit:
                n = min(step, limit - pos)
                self.wfile.write(body[pos : pos + n])
                pos += n
                served.sent_bytes += n
                if served.milestone is not None and served.sent_bytes >= served.milestone:
                    served.reached.set()
                if fault.throttle_bps is not None:
                    time.sleep(n / fault.throttle_bps)
            if fault.stall_after is not None and limit < len(body):
                self.owner.stopping.wait(30)
        except (BrokenPipeError, ConnectionResetError):
            pass
        if limit < len(body):
            self.close_connection = True

    def answer(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()


def main(path: str) -> int:
    """Serve one file at /file until killed; print the port first."""
    with FakeHub() as hub:
        hub.add("/file", Path(path).read_bytes())
        print(hub.port, flush=True)
        hub.stopping.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
