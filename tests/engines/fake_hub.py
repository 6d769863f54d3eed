"""A fake HTTP file server on 127.0.0.1 that serves bytes with Range and misbehaves on demand.

Each served path has a list of `Fault`s consumed one per request (then `default` applies), so a test can
say "stall the first request after 1000 bytes, then behave". Every request's headers are recorded.
`route_faults` do the same for any route (the search API, model info, "*" for every request): a 429 with
Retry-After for the next K requests is `hub.rate_limit(K, retry_after=...)`.

`add_repo` registers a whole model repo: the Hub API's model info (`GET /api/models/{repo}[/revision/{rev}]`,
what `HfApi.model_info` asks) lists its files, and each file is served at `/{repo}/resolve/{rev}/{path}`.
`GET /api/models?search=...` is the Hub's search as `HfApi.list_models` asks it, paged by a `Link` header.
A repo can be gated (its files refused without an accepted token, as the Hub refuses them) and can send
its LFS files' downloads to a second FakeHub playing the CDN, by a 302 as the Hub does.

A served file is bytes, a `VirtualBytes` (a real header, then zeros up to a declared size: a 16 GB GGUF
costs its header) or a `FileBytes` (a file on disk read by range); hashes are computed once per file.

Run as a script (`python -m tests.engines.fake_hub FILE`) it serves FILE at /file and prints its port.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

DEFAULT_COMMIT = "c0ffee" * 6 + "c0ff"
_CHUNK = 1 << 20  # bytes read and written at a time


class Content:
    """Bytes that need not be held whole: a size, reads by range, and hashes computed once."""

    size: int

    def __init__(self, size: int, *, sha256: str | None = None) -> None:
        self.size = size
        self._sha256 = sha256
        self._blob_id: str | None = None
        self._lock = threading.Lock()

    def read(self, start: int, end: int) -> bytes:
        """The bytes in [start, end), clamped to the content."""
        raise NotImplementedError

    def chunks(self, start: int = 0, end: int | None = None, step: int = _CHUNK) -> Iterator[bytes]:
        """The bytes in [start, end) in pieces of at most `step` bytes."""
        end = self.size if end is None else min(end, self.size)
        while start < end:
            n = min(step, end - start)
            yield self.read(start, start + n)
            start += n

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, key: int | slice) -> Any:
        if isinstance(key, slice):
            start, stop, stride = key.indices(self.size)
            if stride != 1:
                raise ValueError("only contiguous slices of served content")
            return self.read(start, max(start, stop))
        index = key + self.size if key < 0 else key
        if not 0 <= index < self.size:
            raise IndexError(key)
        return self.read(index, index + 1)[0]

    def __bytes__(self) -> bytes:
        return self.read(0, self.size)

    @property
    def sha256(self) -> str:
        """The sha256 the Hub reports for this file: given by the caller, else computed once."""
        with self._lock:
            if self._sha256 is None:
                digest = hashlib.sha256()
                for chunk in self.chunks(step=16 * _CHUNK):
                    digest.update(chunk)
                self._sha256 = digest.hexdigest()
            return self._sha256

    @property
    def git_blob_id(self) -> str:
        """The git object id of a blob holding these bytes, computed once."""
        with self._lock:
            if self._blob_id is None:
                digest = hashlib.sha1(b"blob %d\0" % self.size)
                for chunk in self.chunks(step=16 * _CHUNK):
                    digest.update(chunk)
                self._blob_id = digest.hexdigest()
            return self._blob_id

    @property
    def lfs_pointer(self) -> bytes:
        """The git-lfs pointer file git stores in place of these bytes."""
        return f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\nsize {self.size}\n".encode()


class MemoryBytes(Content):
    """Bytes held in memory (what a plain `bytes` file becomes)."""

    def __init__(self, data: bytes | bytearray | memoryview, *, sha256: str | None = None) -> None:
        self.data = bytes(data)
        super().__init__(len(self.data), sha256=sha256)

    def read(self, start: int, end: int) -> bytes:
        return self.data[start:end]


class VirtualBytes(Content):
    """A large file without its memory: a real `prefix`, then zeros up to `size` bytes.

    `sha256` is what the Hub reports for it; left out, it is computed over the whole size once (slow for GBs:
    the builders pass a made-up one, so a download of it fails its hash check unless the test expects that).
    """

    def __init__(self, prefix: bytes, size: int, *, sha256: str | None = None) -> None:
        if size < len(prefix):
            raise ValueError(f"size {size} is shorter than the prefix ({len(prefix)} bytes)")
        self.prefix = bytes(prefix)
        super().__init__(size, sha256=sha256)

    def read(self, start: int, end: int) -> bytes:
        start, end = max(0, start), min(end, self.size)
        if start >= end:
            return b""
        head = self.prefix[start:end]
        return head + bytes(end - start - len(head))

    def __repr__(self) -> str:
        return f"VirtualBytes(prefix=<{len(self.prefix)} bytes>, size={self.size})"


class FileBytes(Content):
    """A file on disk served by range, never read whole per request; `sha256` saves hashing it once."""

    def __init__(self, path: str | os.PathLike[str], *, sha256: str | None = None) -> None:
        self.path = Path(path)
        super().__init__(self.path.stat().st_size, sha256=sha256)

    def read(self, start: int, end: int) -> bytes:
        start, end = max(0, start), min(end, self.size)
        if start >= end:
            return b""
        with open(self.path, "rb") as f:
            return os.pread(f.fileno(), end - start, start)

    def chunks(self, start: int = 0, end: int | None = None, step: int = _CHUNK) -> Iterator[bytes]:
        end = self.size if end is None else min(end, self.size)
        with open(self.path, "rb") as f:  # one open per request, not per chunk
            while start < end:
                data = os.pread(f.fileno(), min(step, end - start), start)
                if not data:
                    return
                yield data
                start += len(data)

    def __repr__(self) -> str:
        return f"FileBytes({str(self.path)!r}, size={self.size})"


ServedData = bytes | bytearray | memoryview | Content | Path


def as_content(data: ServedData) -> Content:
    """The Content for what a test hands in: bytes, a Content, or a Path (served from disk)."""
    if isinstance(data, Content):
        return data
    if isinstance(data, Path):
        return FileBytes(data)
    return MemoryBytes(data)


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
    # extra response headers ({"Retry-After": "3"}), kept as pairs so a Fault stays hashable
    headers: Mapping[str, str] | tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.headers, Mapping):
            object.__setattr__(self, "headers", tuple(self.headers.items()))


def rate_limited(retry_after: int = 1) -> Fault:
    """The Hub's answer to too many requests: 429 with Retry-After (seconds)."""
    return Fault(status=429, headers={"Retry-After": str(retry_after)}, error_message="Too Many Requests")


@dataclass
class Served:
    """One path's content and its queued misbehaviours."""

    data: ServedData
    faults: list[Fault] = field(default_factory=list)
    default: Fault = field(default_factory=Fault)
    sent_bytes: int = 0  # body bytes sent so far over all requests
    milestone: int | None = None  # set `reached` once sent_bytes passes this
    reached: threading.Event = field(default_factory=threading.Event)
    commit: str = DEFAULT_COMMIT  # X-Repo-Commit of the HEAD answer
    lfs: bool = True  # HEAD: X-Linked-Etag = sha256 when True, else ETag = the git blob id (a non-LFS file)
    repo: HubRepo | None = None  # the repo it belongs to: a gated repo's files need an accepted token
    cdn_url: str | None = None  # answer 302 to this URL with the Hub's X-Linked-* headers (an LFS file on a CDN)
    on_cdn: bool = False  # served by a CDN: plain ETag and Content-Length, none of the Hub's headers
    _source: Any = field(default=None, init=False, repr=False, compare=False)
    _content: Content | None = field(default=None, init=False, repr=False, compare=False)

    def next_fault(self) -> Fault:
        return self.faults.pop(0) if self.faults else self.default

    @property
    def content(self) -> Content:
        """`data` as a Content (whose hashes are computed once); follows a test replacing `data`."""
        if self._content is None or self._source is not self.data:
            self.bind(as_content(self.data))
        assert self._content is not None
        return self._content

    def bind(self, content: Content) -> None:
        """Serve `content` for `data` (so every revision of a repo file shares one Content and its hashes)."""
        self._source, self._content = self.data, content


def git_blob_id(data: ServedData) -> str:
    """The git object id of a blob holding `data` (what the Hub calls blobId and sends as non-LFS ETag)."""
    return as_content(data).git_blob_id


def lfs_pointer(data: ServedData) -> bytes:
    """The git-lfs pointer file git stores in place of `data`."""
    return as_content(data).lfs_pointer


# The keys the Hub's search answers with when neither `expand` nor `full` is asked (pipeline_tag and
# library_name only when the repo has them); `full=True` adds the _FULL_KEYS and the file names.
_SEARCH_KEYS = (
    "_id",
    "id",
    "likes",
    "trendingScore",
    "private",
    "downloads",
    "tags",
    "pipeline_tag",
    "library_name",
    "createdAt",
    "modelId",
)
_FULL_KEYS = ("author", "gated", "lastModified", "sha", "disabled", "siblings")
_SORT_KEYS = ("downloads", "likes", "lastModified", "createdAt", "trendingScore")


@dataclass
class HubRepo:
    """A model repo: files at one commit, reachable by the commit and by each name in `revisions`.

    `faults`/`default` apply to its model-info API route like a Served's; `extra_siblings` are appended to the
    listing as given (a malicious `{"rfilename": "../evil"}`); `info_overrides` replace top-level keys of the JSON
    (and add any key, "gguf" or "cardData", that search's `expand` can then ask for).
    `gated` ("auto", "manual") refuses its files to requests without a token in `tokens`; `cdn` is the FakeHub its
    LFS files are redirected to.
    """

    repo: str
    commit: str
    files: dict[str, ServedData]
    lfs: frozenset[str]
    revisions: tuple[str, ...]
    faults: list[Fault] = field(default_factory=list)
    default: Fault = field(default_factory=Fault)
    extra_siblings: list[dict[str, Any]] = field(default_factory=list)
    info_overrides: dict[str, Any] = field(default_factory=dict)
    gated: bool | str = False
    tokens: frozenset[str] = frozenset()
    downloads: int = 0
    likes: int = 0
    trending_score: int = 0
    last_modified: str = "2025-01-01T00:00:00.000Z"
    created_at: str = "2025-01-01T00:00:00.000Z"
    tags: tuple[str, ...] = ()
    library_name: str | None = "transformers"
    pipeline_tag: str | None = None
    private: bool = False
    cdn: FakeHub | None = None
    contents: dict[str, Content] = field(default_factory=dict)
    served: dict[str, list[Served]] = field(default_factory=dict)  # path -> its Served on the Hub and the CDN

    def next_fault(self) -> Fault:
        return self.faults.pop(0) if self.faults else self.default

    def content(self, path: str) -> Content:
        """The file's Content, made once so its hashes are computed once."""
        if path not in self.contents:
            self.contents[path] = as_content(self.files[path])
        return self.contents[path]

    def sent_bytes(self, path: str) -> int:
        """Body bytes of `path` sent so far, over every revision's URL and the CDN."""
        return sum(served.sent_bytes for served in self.served.get(path, ()))

    def cdn_served(self, path: str) -> Served:
        """The Served behind the CDN URL the Hub redirects `path` to (to queue faults on the CDN's answers)."""
        return next(served for served in self.served[path] if served.on_cdn)

    @property
    def model_id(self) -> str:
        """The `_id` the Hub gives the repo (a Mongo id: 24 hex digits)."""
        return hashlib.sha1(self.repo.encode()).hexdigest()[:24]

    def sibling(self, path: str, blobs: bool) -> dict[str, Any]:
        if not blobs:
            return {"rfilename": path}
        content = self.content(path)
        if path not in self.lfs:
            return {"rfilename": path, "size": content.size, "blobId": content.git_blob_id}
        pointer = content.lfs_pointer
        lfs = {"sha256": content.sha256, "size": content.size, "pointerSize": len(pointer)}
        return {
            "rfilename": path,
            "size": content.size,
            "blobId": hashlib.sha1(b"blob %d\0" % len(pointer) + pointer).hexdigest(),
            "lfs": lfs,
        }

    def model_info(self, blobs: bool) -> dict[str, Any]:
        """The JSON the Hub answers `GET /api/models/{repo}` with (`blobs`: the `?blobs=True` file metadata)."""
        info: dict[str, Any] = {
            "_id": self.model_id,
            "id": self.repo,
            "modelId": self.repo,
            "author": self.repo.split("/")[0],
            "sha": self.commit,
            "lastModified": self.last_modified,
            "private": self.private,
            "gated": self.gated,
            "disabled": False,
            "downloads": self.downloads,
            "likes": self.likes,
            "trendingScore": self.trending_score,
            "tags": list(self.tags),
            "library_name": self.library_name,
            "siblings": [self.sibling(path, blobs) for path in self.files] + self.extra_siblings,
            "createdAt": self.created_at,
        }
        if self.pipeline_tag is not None:
            info["pipeline_tag"] = self.pipeline_tag
        if self.library_name is None:
            del info["library_name"]
        info.update(self.info_overrides)
        return info

    def search_item(self, expand: list[str], full: bool) -> dict[str, Any]:
        """One result of `GET /api/models`: the Hub's short form, `full`'s longer one, or `_id`, `id` + `expand`."""
        info = self.model_info(blobs=False)
        if expand:
            keys: tuple[str, ...] = ("_id", "id", *expand)
        else:
            keys = _SEARCH_KEYS + (_FULL_KEYS if full else ())
        return {key: info[key] for key in keys if key in info}


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
        # route (a URL path without its query, or "*" for every request) -> faults consumed one per request;
        # only status, headers and the error code/message apply here, and Fault() lets a request through
        self.route_faults: dict[str, list[Fault]] = {}
        self.max_page_size = 1000  # the search's largest page, whatever `limit` asks (the Hub's is 1000)
        self.stopping = threading.Event()
        hub = self

        class Handler(_Handler):
            owner = hub

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def add(self, path: str, data: ServedData, *faults: Fault, default: Fault | None = None) -> Served:
        """Serve `data` (bytes, VirtualBytes, FileBytes or a Path) at `path` (with its query, if any)."""
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
        files: Mapping[str, ServedData],
        *,
        lfs: tuple[str, ...] | list[str] | None = None,
        commit: str = DEFAULT_COMMIT,
        revisions: tuple[str, ...] = ("main",),
        faults: tuple[Fault, ...] = (),
        default: Fault | None = None,
        gated: bool | str = False,
        tokens: tuple[str, ...] | list[str] = (),
        downloads: int = 0,
        likes: int = 0,
        trending_score: int = 0,
        last_modified: str = "2025-01-01T00:00:00.000Z",
        created_at: str | None = None,
        tags: tuple[str, ...] | list[str] = (),
        library_name: str | None = "transformers",
        pipeline_tag: str | None = None,
        cdn: FakeHub | None = None,
        info: Mapping[str, Any] | None = None,
    ) -> HubRepo:
        """Serve model repo `repo`; `lfs` names the LFS files (None: every file). `faults` are for its API route.

        The rest is what model info and search report: `gated` (False, "auto" or "manual") also refuses its files
        without one of `tokens`; `cdn` answers its LFS files' resolve URLs with a 302 there; `info` sets any other
        top-level key. A repo with no files is cheap: a search-only result.
        """
        stored = HubRepo(
            repo,
            commit,
            dict(files),
            frozenset(files if lfs is None else lfs),
            revisions,
            list(faults),
            default or Fault(),
            info_overrides=dict(info or {}),
            gated=gated,
            tokens=frozenset(tokens),
            downloads=downloads,
            likes=likes,
            trending_score=trending_score,
            last_modified=last_modified,
            created_at=created_at or last_modified,
            tags=tuple(tags),
            library_name=library_name,
            pipeline_tag=pipeline_tag,
            cdn=cdn,
        )
        self.repos[repo] = stored
        for path, data in files.items():
            content = stored.content(path)
            is_lfs = path in stored.lfs
            cdn_url = None
            if cdn is not None and is_lfs:
                on_cdn = cdn.add(cdn_path(repo, commit, path), data)
                on_cdn.bind(content)
                on_cdn.on_cdn = True
                stored.served.setdefault(path, []).append(on_cdn)
                cdn_url = cdn.url(cdn_path(repo, commit, path))
            for revision in (*revisions, commit):
                served = self.add(self.resolve_path(repo, path, revision), data)
                served.bind(content)
                served.commit, served.lfs, served.repo, served.cdn_url = commit, is_lfs, stored, cdn_url
                stored.served.setdefault(path, []).append(served)
        return stored

    def served(self, repo: str, path: str, revision: str = "main") -> Served:
        """The Served behind a repo file's resolve URL at `revision` (to queue faults on it)."""
        return self.files[self.resolve_path(repo, path, revision)]

    def fault_route(self, route: str, *faults: Fault) -> None:
        """Queue faults for the next requests to `route`: a URL path without its query ("/api/models" is the
        search), or "*" for every request; checked before the path's own faults."""
        self.route_faults.setdefault(route, []).extend(faults)

    def rate_limit(self, count: int = 1, retry_after: int = 1, route: str = "*") -> None:
        """Answer the next `count` requests to `route` with 429 and `Retry-After: retry_after`."""
        self.fault_route(route, *[rate_limited(retry_after)] * count)

    def authorized_requests(self) -> list[Recorded]:
        """The requests that carried an Authorization header (a CDN should see none)."""
        return [r for r in self.requests if "authorization" in r.headers]

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


def cdn_path(repo: str, commit: str, path: str) -> str:
    """Where a CDN FakeHub serves a repo's LFS file: a signed-looking URL whose query must come back intact."""
    signature = hashlib.sha256(f"{repo}@{commit}/{path}".encode()).hexdigest()[:32]
    return f"/repos/{quote(repo)}/{commit}/{quote(path)}?Expires=4102444800&Signature={signature}"


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """The [start, end) a Range header asks of `size` bytes: `bytes=S-E` (E inclusive, clamped), `bytes=S-`,
    `bytes=-N` (the last N). None when there is none or it is not one we serve (several ranges, bad syntax):
    the whole file then, as servers do. Raises `_Unsatisfiable` for a range past the end (416)."""
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", header.strip())
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = match.groups()
    if first == "":
        if int(last) == 0:
            raise _Unsatisfiable
        return max(0, size - int(last)), size
    start = int(first)
    if last != "" and int(last) < start:
        return None  # syntactically invalid: ignored
    if start >= size:
        raise _Unsatisfiable
    return start, size if last == "" else min(int(last) + 1, size)


class _Unsatisfiable(Exception):
    pass


class _Handler(BaseHTTPRequestHandler):
    owner: FakeHub
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # small answers on a kept-alive connection would wait ~40 ms for a delayed ACK
    RESTRICTED: ClassVar[str] = (
        "Access to model {repo} is restricted. You must have access to it and be authenticated to access it."
        " Please log in."
    )
    NOT_AUTHORIZED: ClassVar[str] = (
        "Access to model {repo} is restricted and you are not in the authorized list."
        " Visit https://huggingface.co/{repo} to ask for access."
    )

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass

    def handle(self) -> None:
        with contextlib.suppress(OSError):  # the client vanished (killed, cancelled, timed out): nothing to answer
            super().handle()

    def record(self, method: str) -> None:
        self.owner.requests.append(Recorded(method, self.path, {k.lower(): v for k, v in self.headers.items()}))

    def route_fault(self) -> bool:
        """Answer with the next queued fault of this route (or of "*"), if it is an error; True if answered."""
        route = urlsplit(self.path).path
        for key in (route, "*"):
            queue = self.owner.route_faults.get(key)
            if queue:
                fault = queue.pop(0)
                if fault.status is not None:
                    self.answer(fault.status, _error_headers(fault))
                    return True
        return False

    def gate(self, served: Served) -> bool:
        """Refuse a gated repo's file as the Hub does (401 without a token, 403 with one it does not accept)."""
        repo = served.repo
        if repo is None or not repo.gated:
            return False
        auth = self.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
        if token and token in repo.tokens:
            return False
        status, message = (403, self.NOT_AUTHORIZED) if token else (401, self.RESTRICTED)
        self.answer(status, {"X-Error-Code": "GatedRepo", "X-Error-Message": message.format(repo=repo.repo)})
        return True

    def do_GET(self) -> None:
        hub = self.owner
        self.record("GET")
        if self.route_fault():
            return
        served = hub.files.get(self.path)
        route = urlsplit(self.path).path
        if served is None and route == "/api/models":
            self.answer_search()
            return
        if served is None and route.startswith("/api/models/"):
            self.answer_model_info()
            return
        if served is None:
            self.answer(404)
            return
        if self.gate(served):
            return
        fault = served.next_fault()
        if fault.status is not None:
            self.answer(fault.status, _error_headers(fault))
            return
        if fault.redirect_to is not None:
            self.answer(302, {"Location": fault.redirect_to})
            return
        if served.cdn_url is not None:
            self.answer(302, self.linked_headers(served))
            return
        if fault.chunked_bytes is not None:
            self.send_chunked(served, fault.chunked_bytes)
            return
        size = served.content.size
        header = self.headers.get("Range", "")
        try:
            asked = parse_range(header, size) if header and not fault.ignore_range else None
        except _Unsatisfiable:
            self.answer(416, {"Content-Range": f"bytes */{size}"})
            return
        start, end = 0, size
        if asked is None:
            self.send_response(200)
        else:
            start, end = asked
            if fault.wrong_range:  # from byte 0: to the end for an open range, as many bytes for a closed one
                start, end = 0, (size if header.strip().endswith("-") else end - start)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        self.send_header("Content-Length", str(end - start))
        self.send_header("Accept-Ranges", "bytes")
        for name, value in fault.headers:
            self.send_header(name, value)
        self.end_headers()
        self.send_body(served, fault, start, end)

    def do_HEAD(self) -> None:
        """What the Hub answers huggingface_hub's metadata request with: commit, LFS sha256 and size."""
        hub = self.owner
        self.record("HEAD")
        if self.route_fault():
            return
        served = hub.files.get(self.path)
        if served is None:
            self.answer(404, {"X-Error-Code": "EntryNotFound"})
            return
        if self.gate(served):
            return
        if served.default.status is not None:
            self.answer(served.default.status, _error_headers(served.default))
            return
        if served.cdn_url is not None:
            self.answer(302, self.linked_headers(served))
            return
        content = served.content
        self.send_response(200)
        if served.on_cdn:
            self.send_header("ETag", '"' + content.sha256 + '"')
        else:
            self.send_header("X-Repo-Commit", served.commit)
            if served.lfs:
                self.send_header("X-Linked-Etag", '"' + content.sha256 + '"')
                self.send_header("X-Linked-Size", str(content.size))
            else:
                self.send_header("ETag", '"' + content.git_blob_id + '"')
        self.send_header("Content-Length", str(content.size))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()

    @staticmethod
    def linked_headers(served: Served) -> dict[str, str]:
        """The Hub's 302 of an LFS file to its CDN: where, and the file's size, sha256 and commit."""
        assert served.cdn_url is not None
        content = served.content
        return {
            "Location": served.cdn_url,
            "X-Repo-Commit": served.commit,
            "X-Linked-Size": str(content.size),
            "X-Linked-Etag": '"' + content.sha256 + '"',
            "ETag": '"' + content.sha256 + '"',
        }

    def answer_json(self, value: object, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(value).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for name, header in (headers or {}).items():
            self.send_header(name, header)
        self.end_headers()
        self.wfile.write(body)

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
        self.answer_json(repo.model_info(blobs=parse_qs(url.query).get("blobs", [""])[-1].lower() in ("true", "1")))

    def answer_search(self) -> None:
        """`GET /api/models?search=&author=&filter=&gated=&pipeline_tag=&sort=&direction=&limit=&expand=&full=`,
        one page of at most `limit` (capped by max_page_size) results and a `Link: <...>; rel="next"` to the rest."""
        hub = self.owner
        query = parse_qs(urlsplit(self.path).query, keep_blank_values=True)

        def last(name: str) -> str | None:
            values = query.get(name)
            return values[-1] if values else None

        def bad(message: str) -> None:
            self.answer(400, {"X-Error-Message": message})

        repos = list(hub.repos.values())
        if search := (last("search") or "").lower():
            repos = [r for r in repos if search in r.repo.lower()]
        if author := last("author"):
            repos = [r for r in repos if r.repo.split("/")[0].lower() == author.lower()]
        for wanted in query.get("filter", []):
            repos = [r for r in repos if wanted in (*r.tags, r.library_name, r.pipeline_tag)]
        if (gated := last("gated")) is not None:
            repos = [r for r in repos if bool(r.gated) == (gated.lower() == "true")]
        if pipeline := last("pipeline_tag"):
            repos = [r for r in repos if r.pipeline_tag == pipeline]
        if (sort := last("sort")) is not None:
            if sort not in _SORT_KEYS:
                bad(f'"sort" must be one of {", ".join(_SORT_KEYS)}')
                return
            repos.sort(key=lambda r: r.model_info(blobs=False)[sort], reverse=last("direction") != "1")
        try:
            limit = int(last("limit") or hub.max_page_size)
            cursor = last("cursor")
            offset = int(json.loads(base64.urlsafe_b64decode(cursor))["offset"]) if cursor else 0
        except (ValueError, KeyError, TypeError):
            bad("Invalid limit or cursor")
            return
        if limit < 1:
            bad('"limit" must be positive')
            return
        expand = query.get("expand", []) + query.get("expand[]", [])
        full = (last("full") or "").lower() in ("true", "1")
        page = repos[offset : offset + min(limit, hub.max_page_size)]
        headers = {}
        if offset + len(page) < len(repos):
            cursor = base64.urlsafe_b64encode(json.dumps({"offset": offset + len(page)}).encode()).decode()
            rest = [(k, v) for k, values in query.items() if k != "cursor" for v in values] + [("cursor", cursor)]
            headers["Link"] = f'<{hub.endpoint}/api/models?{urlencode(rest)}>; rel="next"'
        self.answer_json([r.search_item(expand, full) for r in page], headers)

    def send_body(self, served: Served, fault: Fault, start: int, end: int | None = None) -> None:
        """Bytes [start, end) of the content, cut, corrupted or throttled as `fault` says."""
        content = served.content
        end = content.size if end is None else end
        length = end - start
        limit = length
        for cut in (fault.stall_after, fault.drop_after):
            if cut is not None:
                limit = min(limit, cut)
        step = _CHUNK if fault.throttle_bps is None else max(1024, fault.throttle_bps // 50)
        pos = start
        try:
            for chunk in content.chunks(start, start + limit, step):
                if fault.corrupt_at is not None and pos <= fault.corrupt_at < pos + len(chunk):
                    flipped = bytearray(chunk)
                    flipped[fault.corrupt_at - pos] ^= 0xFF
                    chunk = bytes(flipped)
                # Counted before the write: a client that has the bytes must see them counted (after, it raced).
                served.sent_bytes += len(chunk)
                try:
                    self.wfile.write(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    served.sent_bytes -= len(chunk)
                    raise
                pos += len(chunk)
                if served.milestone is not None and served.sent_bytes >= served.milestone:
                    served.reached.set()
                if fault.throttle_bps is not None:
                    time.sleep(len(chunk) / fault.throttle_bps)
            if fault.stall_after is not None and limit < length:
                self.owner.stopping.wait(30)
        except (BrokenPipeError, ConnectionResetError):
            pass
        if limit < length:
            self.close_connection = True

    def send_chunked(self, served: Served, count: int) -> None:
        """A chunked body of `count` bytes (the file from the Range's start, then zeros): a server that sends more
        than it listed; a large count is "without end" for the client, bounded so a test of a broken client ends."""
        content = served.content
        try:
            asked = parse_range(self.headers.get("Range", ""), content.size)
        except _Unsatisfiable:
            asked = (content.size, content.size)
        start = asked[0] if asked else 0
        self.send_response(206 if asked else 200)
        if asked:
            self.send_header("Content-Range", f"bytes {start}-{content.size - 1}/{content.size}")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.close_connection = True
        chunk = 1 << 16
        pos = start
        try:
            while count > 0 and not self.owner.stopping.is_set():
                n = min(chunk, count)
                piece = content.read(pos, pos + n).ljust(n, b"\0")
                count -= n
                pos += n
                served.sent_bytes += n  # before the write, as in send_body
                self.wfile.write(b"%x\r\n%s\r\n" % (n, piece))
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
    headers |= {"X-Error-Message": fault.error_message} if fault.error_message else {}
    return headers | dict(fault.headers)


def main(path: str) -> int:
    """Serve one file at /file until killed; print the port first."""
    with FakeHub() as hub:
        hub.add("/file", Path(path).read_bytes())
        print(hub.port, flush=True)
        hub.stopping.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
