"""A fake HTTP file server on 127.0.0.1 that serves bytes with Range and misbehaves on demand.

Each served path has a list of `Fault`s consumed one per request (then `default` applies), so a test can
say "stall the first request after 1000 bytes, then behave". Every request's headers are recorded.

`add_repo` registers a whole model repo: the Hub API's model info (`GET /api/models/{repo}[/revision/{rev}]`,
what `HfApi.model_info` asks) lists its files, and each file is served at `/{repo}/resolve/{rev}/{path}`.

Run as a script (`python -m tests.engines.fake_hub FILE`) it serves FILE at /file and prints its port.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

DEFAULT_COMMIT = "c0ffee" * 6 + "c0ff"


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
    error_code: str | None = None  # with `status`: the Hub's X-Error-Code ("GatedRepo", "RepoNotFound", ...)
    error_message: str | None = None  # with `status`: the Hub's X-Error-Message
    chunked_bytes: int | None = None  # answer chunked, no Content-Length: this many bytes (the file, then zeros)


@dataclass
class Served:
    """One path's content and its queued misbehaviours."""

    data: bytes
    faults: list[Fault] = field(default_factory=list)
    default: Fault = field(default_factory=Fault)
    sent_bytes: int = 0  # body bytes sent so far over all requests
    milestone: int | None = None  # set `reached` once sent_bytes passes this
    reached: threading.Event = field(default_factory=threading.Event)
    commit: str = DEFAULT_COMMIT  # X-Repo-Commit of the HEAD answer
    lfs: bool = True  # HEAD: X-Linked-Etag = sha256 when True, else ETag = the git blob id (a non-LFS file)

    def next_fault(self) -> Fault:
        return self.faults.pop(0) if self.faults else self.default


def git_blob_id(data: bytes) -> str:
    """The git object id of a blob holding `data` (what the Hub calls blobId and sends as non-LFS ETag)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(data: bytes) -> bytes:
    """The git-lfs pointer file git stores in place of `data`."""
    sha = hashlib.sha256(data).hexdigest()
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {len(data)}\n".encode()


@dataclass
class HubRepo:
    """A model repo: files at one commit, reachable by the commit and by each name in `revisions`.

    `faults`/`default` apply to its model-info API route like a Served's; `extra_siblings` are appended to the
    listing as given (a malicious `{"rfilename": "../evil"}`); `info_overrides` replace top-level keys of the JSON.
    """

    repo: str
    commit: str
    files: dict[str, bytes]
    lfs: frozenset[str]
    revisions: tuple[str, ...]
    faults: list[Fault] = field(default_factory=list)
    default: Fault = field(default_factory=Fault)
    extra_siblings: list[dict[str, Any]] = field(default_factory=list)
    info_overrides: dict[str, Any] = field(default_factory=dict)

    def next_fault(self) -> Fault:
        return self.faults.pop(0) if self.faults else self.default

    def sibling(self, path: str, blobs: bool) -> dict[str, Any]:
        data = self.files[path]
        if not blobs:
            return {"rfilename": path}
        if path not in self.lfs:
            return {"rfilename": path, "size": len(data), "blobId": git_blob_id(data)}
        pointer = lfs_pointer(data)
        lfs = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": len(pointer)}
        return {"rfilename": path, "size": len(data), "blobId": git_blob_id(pointer), "lfs": lfs}

    def model_info(self, blobs: bool) -> dict[str, Any]:
        """The JSON the Hub answers `GET /api/models/{repo}` with (`blobs`: the `?blobs=True` file metadata)."""
        info: dict[str, Any] = {
            "_id": hashlib.sha1(self.repo.encode()).hexdigest()[:24],
            "id": self.repo,
            "modelId": self.repo,
            "author": self.repo.split("/")[0],
            "sha": self.commit,
            "lastModified": "2025-01-01T00:00:00.000Z",
            "private": False,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "library_name": "transformers",
            "siblings": [self.sibling(path, blobs) for path in self.files] + self.extra_siblings,
            "createdAt": "2025-01-01T00:00:00.000Z",
        }
        info.update(self.info_overrides)
        return info


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
        self.repos: dict[str, HubRepo] = {}
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

    @property
    def endpoint(self) -> str:
        """The base URL to give huggingface_hub as its endpoint."""
        return f"http://127.0.0.1:{self.port}"

    def add_repo(
        self,
        repo: str,
        files: dict[str, bytes],
        *,
        lfs: tuple[str, ...] | list[str] | None = None,
        commit: str = DEFAULT_COMMIT,
        revisions: tuple[str, ...] = ("main",),
        faults: tuple[Fault, ...] = (),
        default: Fault | None = None,
    ) -> HubRepo:
        """Serve model repo `repo`; `lfs` names the LFS files (None: every file). `faults` are for its API route."""
        stored = HubRepo(
            repo,
            commit,
            dict(files),
            frozenset(files if lfs is None else lfs),
            revisions,
            list(faults),
            default or Fault(),
        )
        self.repos[repo] = stored
        for path, data in files.items():
            for revision in (*revisions, commit):
                served = self.add(self.resolve_path(repo, path, revision), data)
                served.commit, served.lfs = commit, path in stored.lfs
        return stored

    @staticmethod
    def resolve_path(repo: str, path: str, revision: str = "main") -> str:
        """The request path of a repo file, quoted as huggingface_hub's hf_hub_url quotes it."""
        return f"/{repo}/resolve/{quote(revision, safe='')}/{quote(path)}"

    def resolve_url(self, repo: str, path: str, revision: str = "main") -> str:
        return self.url(self.resolve_path(repo, path, revision))

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
        if served is None and urlsplit(self.path).path.startswith("/api/models/"):
            self.answer_model_info()
            return
        if served is None:
            self.answer(404)
            return
        fault = served.next_fault()
        if fault.status is not None:
            self.answer(fault.status, _error_headers(fault))
            return
        if fault.redirect_to is not None:
            self.answer(302, {"Location": fault.redirect_to})
            return
        if fault.chunked_bytes is not None:
            self.send_chunked(served, fault.chunked_bytes)
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
            self.answer(served.default.status, _error_headers(served.default))
            return
        self.send_response(200)
        self.send_header("X-Repo-Commit", served.commit)
        if served.lfs:
            self.send_header("X-Linked-Etag", '"' + hashlib.sha256(served.data).hexdigest() + '"')
            self.send_header("X-Linked-Size", str(len(served.data)))
        else:
            self.send_header("ETag", '"' + git_blob_id(served.data) + '"')
        self.send_header("Content-Length", str(len(served.data)))
        self.end_headers()

    def answer_model_info(self) -> None:
        """`GET /api/models/{repo}` or `/api/models/{repo}/revision/{rev}`, `?blobs=true` for file metadata."""
        url = urlsplit(self.path)
        rest = url.path.removeprefix("/api/models/")
        repo_id, _, revision = rest.partition("/revision/")
        repo = self.owner.repos.get(repo_id)
        if repo is None:
            self.answer(404, {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"})
            return
        fault = repo.next_fault()
        if fault.status is not None:
            self.answer(fault.status, _error_headers(fault))
            return
        if revision and unquote(revision) not in (*repo.revisions, repo.commit):
            self.answer(404, {"X-Error-Code": "RevisionNotFound", "X-Error-Message": "Invalid rev id"})
            return
        body = json.dumps(
            repo.model_info(blobs=parse_qs(url.query).get("blobs", [""])[-1].lower() in ("true", "1"))
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

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

    def send_chunked(self, served: Served, count: int) -> None:
        """A chunked body of `count` bytes (the file from the Range's start, then zeros): a server that sends more
        than it listed; a large count is "without end" for the client, bounded so a test of a broken client ends."""
        match = re.match(r"^bytes=(\d+)-$", self.headers.get("Range", ""))
        start = int(match.group(1)) if match else 0
        self.send_response(206 if match else 200)
        if match:
            self.send_header("Content-Range", f"bytes {start}-{len(served.data) - 1}/{len(served.data)}")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.close_connection = True
        chunk = 1 << 16
        body = memoryview(served.data)[start:]
        try:
            while count > 0 and not self.owner.stopping.is_set():
                piece = bytes(body[: min(chunk, count)]).ljust(min(chunk, count), b"\0")
                count -= len(piece)
                body = body[chunk:]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                served.sent_bytes += len(piece)
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def answer(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()


def _error_headers(fault: Fault) -> dict[str, str]:
    headers = {"X-Error-Code": fault.error_code} if fault.error_code else {}
    return headers | ({"X-Error-Message": fault.error_message} if fault.error_message else {})


def main(path: str) -> int:
    """Serve one file at /file until killed; print the port first."""
    with FakeHub() as hub:
        hub.add("/file", Path(path).read_bytes())
        print(hub.port, flush=True)
        hub.stopping.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
