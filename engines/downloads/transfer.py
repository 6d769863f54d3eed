"""One resumable, verified HTTP file transfer: Range from a `.part` file, sha256 while streaming, atomic rename."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from engines.downloads.names import part_path
from engines.downloads.pacing import Meter, TokenBucket, TransferProgress, default_backoff
from engines.downloads.part_file import DiskFull, PartFile, PartInUse
from engines.errors import DownloadError

if TYPE_CHECKING:  # httpx is imported where used: importing it pulls in rich when that is installed
    import httpx

__all__ = [
    "DiskFull",
    "DownloadAuthError",
    "DownloadCancelled",
    "DownloadNotFound",
    "PartInUse",
    "TransferFailed",
    "TransferProgress",
    "TransferResult",
    "VerificationFailed",
    "default_backoff",
    "download_file",
]

log = logging.getLogger(__name__)

_SECRET_HEADERS = ("authorization", "cookie", "proxy-authorization")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_BLOB_ID_RE = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")  # git's sha1 object ids, or sha256 ones
_CONTENT_RANGE_RE = re.compile(r"^bytes\s+(\d+)-(\d+)/(\d+|\*)$")
_MAX_REDIRECTS = 10


class DownloadAuthError(DownloadError):
    """The server refused our credentials (401/403); retrying will not help."""


class DownloadNotFound(DownloadError):
    """The server has no such file (404)."""


class VerificationFailed(DownloadError):
    """The downloaded bytes do not match the expected size, sha256 or git blob id; the `.part` was deleted."""

    def __init__(self, what: str, expected: str, got: str) -> None:
        self.what = what
        self.expected = expected
        self.got = got
        super().__init__(f"{what} mismatch: expected {expected}, got {got}; the partial file was deleted")


class DownloadCancelled(DownloadError):
    """The download was cancelled; the `.part` file is kept so it can resume."""


class TransferFailed(DownloadError):
    """The transfer kept failing (stalls, dropped connections, server errors) until the retries ran out."""


@dataclass(frozen=True, slots=True)
class TransferResult:
    """A finished, verified transfer."""

    path: Path
    size: int
    sha256: str
    resumed_from: int
    attempts: int
    elapsed_s: float


class _Retry(Exception):
    """Internal: this attempt failed in a way worth retrying."""


class _Restart(Exception):
    """Internal: the `.part` was discarded; ask again from byte 0 at once."""


class _Overrun(Exception):
    """Internal: the body went past the size the server or the listing gave; the bytes past it were not written."""

    def __init__(self, total: int, received: int) -> None:
        self.total, self.received = total, received


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return (url.scheme, url.host, url.port)


def _shown(url: httpx.URL) -> str:
    """A URL for messages: no query string (signed CDN URLs) and no user info."""
    return str(url.copy_with(query=None, fragment=None, username=None, password=None))


def download_file(
    url: str,
    target: Path,
    *,
    expected_sha256: str | None = None,
    expected_size: int | None = None,
    expected_blob_id: str | None = None,
    headers: Mapping[str, str] | None = None,
    progress: Callable[[TransferProgress], None] | None = None,
    cancel: threading.Event | None = None,
    stall_timeout_s: float = 30.0,
    max_retries: int = 5,
    client: httpx.Client | None = None,
    bandwidth_cap: int | TokenBucket | None = None,
    backoff: Callable[[int], float] = default_backoff,
) -> TransferResult:
    """Download `url` to `target` via a resumable `.part` file, verify size, sha256 and git blob id, then rename.

    `expected_blob_id` is the git object id of a file kept in git itself (not LFS): sha1 (or sha256) over
    `blob <size>\\0` + its bytes. A body longer than the expected size is cut off within one chunk: the bytes past
    the size are never written. `headers` may carry credentials: they go only to the URL's own origin, never to a
    redirect target on another host. Raises a `DownloadError` subclass; the `.part` is kept for resume only when
    it holds bytes that can be resumed: a verification failure, an overlong body or a full disk delete it, and so
    does any failure before the first byte arrived.
    """
    if expected_sha256 is not None:
        expected_sha256 = expected_sha256.lower()
        if not _SHA256_RE.match(expected_sha256):
            raise DownloadError("the expected sha256 is not 64 hexadecimal digits")
    if expected_blob_id is not None:
        expected_blob_id = expected_blob_id.lower()
        if not _BLOB_ID_RE.match(expected_blob_id):
            raise DownloadError("the expected git blob id is not 40 (or 64) hexadecimal digits")
    secrets = [v for k, v in (headers or {}).items() if k.lower() in _SECRET_HEADERS and v]
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    meter = Meter(progress, 0, expected_size)
    part = PartFile(part_path(target, url), meter.add)
    import httpx

    http = client or httpx.Client()
    try:
        job = _Job(url, target, part, http, dict(headers or {}), secrets, cancel or threading.Event(), meter)
        # A shared TokenBucket caps several transfers together (the queue's cap is over all of them).
        job.bucket = TokenBucket(bandwidth_cap) if isinstance(bandwidth_cap, int) and bandwidth_cap else None
        job.bucket = bandwidth_cap if isinstance(bandwidth_cap, TokenBucket) else job.bucket
        job.timeout = httpx.Timeout(stall_timeout_s)
        job.prepare(expected_size)
        resumed_from = part.size
        attempts = job.run(max_retries, backoff)
        job.verify(expected_sha256, expected_size)
        job.verify_blob(expected_blob_id)
        part.sync()
    except DiskFull as exc:
        if not exc.while_writing:  # the check before starting: what the `.part` holds can still resume
            _discard_if_empty(part)
            raise
        # A full disk must not stay full because of us: the bytes go, and the message says how many to free.
        _discard(part)
        need = f"{expected_size} bytes" if expected_size is not None else "space for the whole file"
        raise DiskFull(
            f"disk full while writing {target.name}: the partial file was deleted so the disk is not left full; "
            f"free {need} in {target.parent} and download again"
        ) from None
    except BaseException:
        _discard_if_empty(part)  # a 404, 401 or 500 before any byte leaves no empty `.part` behind
        raise
    finally:
        part.close()
        if client is None:
            http.close()
    os.replace(part.path, target)
    _fsync_dir(target.parent)
    elapsed = time.monotonic() - started
    return TransferResult(target, part.size, part.digest.hexdigest(), resumed_from, attempts, elapsed)


def _discard(part: PartFile) -> None:
    """Delete the `.part` (still open and locked by us, so no other download is writing it)."""
    with contextlib.suppress(OSError):
        os.unlink(part.path)


def _discard_if_empty(part: PartFile) -> None:
    """Delete a `.part` that holds nothing to resume from."""
    with contextlib.suppress(OSError):
        if part.size == 0 and os.fstat(part.fd).st_size == 0:
            os.unlink(part.path)


def git_blob_id(path: Path, *, sha256: bool = False) -> str:
    """The git object id of a blob holding the file's bytes: sha1 (or sha256) over `blob <size>\\0` + bytes."""
    digest = hashlib.sha256() if sha256 else hashlib.sha1()
    with open(path, "rb") as stream:
        size = os.fstat(stream.fileno()).st_size
        digest.update(b"blob %d\0" % size)
        while block := stream.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can open a folder
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class _Job:
    """The state of one transfer across its attempts: the open `.part`, its size and running hash."""

    def __init__(
        self,
        url: str,
        target: Path,
        part: PartFile,
        http: httpx.Client,
        headers: dict[str, str],
        secrets: list[str],
        cancel: threading.Event,
        meter: Meter,
    ) -> None:
        import httpx

        self.url = httpx.URL(url)
        self.target, self.part, self.http, self.meter = target, part, http, meter
        self.headers, self.secrets, self.cancel = headers, secrets, cancel
        self.timeout = httpx.Timeout(30.0)
        self.bucket: TokenBucket | None = None
        self.expected_size: int | None = None
        self.total: int | None = None

    @property
    def size(self) -> int:
        return self.part.size

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
            if " " in secret:  # "Bearer hf_x": the bare token must go too
                text = text.replace(secret.split(" ", 1)[1], "***")
        return text

    def prepare(self, expected_size: int | None) -> None:
        """Drop a `.part` longer than the file and check that the rest fits on the disk."""
        self.expected_size = self.total = expected_size
        if expected_size is not None and self.size > expected_size:
            self.truncate()
        self.meter.reset(self.size)
        if expected_size is not None:
            need = expected_size - self.size
            free = shutil.disk_usage(self.part.path.parent).free
            if need > free:
                raise DiskFull(
                    f"not enough disk space for {self.target.name}: needs {need} more bytes, "
                    f"{free} free in {self.part.path.parent}; free some space and resume"
                )

    def truncate(self) -> None:
        self.part.truncate()
        self.meter.reset(0)

    def run(self, max_retries: int, backoff: Callable[[int], float]) -> int:
        """Attempt the transfer until it completes; returns the number of requests made."""
        failures = attempts = 0
        while True:
            if self.cancel.is_set():
                raise DownloadCancelled(f"download of {self.target.name} cancelled; the partial file is kept")
            attempts += 1
            before = self.size
            try:
                self.attempt()
                self.meter.emit()
                return attempts
            except _Overrun as over:
                with contextlib.suppress(OSError):  # the file cannot be right: none of it is kept
                    os.unlink(self.part.path)
                raise VerificationFailed(
                    f"size of {self.target.name}",
                    f"{over.total} bytes",
                    f"more: the server sent at least {over.received} bytes and was cut off",
                ) from None
            except _Restart:
                failures += 1  # a server that keeps lying about ranges must not loop forever
                if failures > max_retries:
                    raise TransferFailed(f"{_shown(self.url)} kept sending the wrong byte range") from None
                continue
            except _Retry as exc:
                failures = 0 if self.size > before else failures + 1
                if failures > max_retries:
                    raise TransferFailed(
                        f"download of {self.target.name} failed after {max_retries} retries: {exc}; "
                        "the partial file is kept, retry later to resume"
                    ) from None
                delay = backoff(max(failures, 1))
                log.info("download of %s: %s; retrying in %.1f s", self.target.name, exc, delay)
                self.cancel.wait(delay)

    def attempt(self) -> None:
        """One request (following redirects) and the streaming of its body into the `.part`."""
        with self.open() as response:
            status = response.status_code
            if status == 416 and self.size > 0:
                if self.check_complete(response):
                    return
                self.truncate()
                raise _Restart
            if status == 206 and self.size > 0:
                match = _CONTENT_RANGE_RE.match(response.headers.get("content-range", "").strip())
                if match is None or int(match.group(1)) != self.size:
                    log.warning("download of %s: wrong Content-Range; restarting from 0", self.target.name)
                    self.truncate()
                    raise _Restart
                if match.group(3) != "*":
                    self.total = int(match.group(3))
            elif status == 200:
                if self.size > 0:  # the server ignored Range: start over with this full body
                    log.warning("download of %s: server ignored Range; restarting from 0", self.target.name)
                    self.truncate()
                length = response.headers.get("content-length")
                self.total = int(length) if length and length.isdigit() else self.expected_size
            else:
                self.fail_status(response)
            self.check_total()
            encoding = response.headers.get("content-encoding", "identity").lower()
            if encoding not in ("identity", ""):
                raise DownloadError(f"{_shown(response.url)} sent compressed bytes ({encoding}); cannot resume those")
            self.meter.total = self.total
            self.stream(response.iter_raw(), None if self.total is None else self.total - self.size)
        if self.total is not None and self.size < self.total:
            raise _Retry(f"connection closed at {self.size} of {self.total} bytes")

    def check_complete(self, response: httpx.Response) -> bool:
        """416 on a resume: complete when the server's size (or the expected one) equals the `.part` size."""
        match = re.match(r"^bytes\s+\*/(\d+)$", response.headers.get("content-range", "").strip())
        known = int(match.group(1)) if match else self.expected_size
        return known is None or known == self.size

    def check_total(self) -> None:
        if self.expected_size is not None and self.total is not None and self.total != self.expected_size:
            raise DownloadError(
                f"{_shown(self.url)} has {self.total} bytes but {self.expected_size} were expected; "
                "the file on the server changed or the metadata is stale"
            )

    def fail_status(self, response: httpx.Response) -> None:
        status, where = response.status_code, _shown(response.url)
        if status in (401, 403):
            raise DownloadAuthError(
                f"access denied (HTTP {status}) for {where}: check your token, or accept the model's terms on its page"
            )
        if status == 404:
            raise DownloadNotFound(f"not found (HTTP 404): {where}; check the repository, revision and file name")
        if status >= 500 or status in (408, 429):
            raise _Retry(f"server error HTTP {status}")
        raise DownloadError(f"unexpected HTTP {status} from {where}")

    @contextlib.contextmanager
    def open(self) -> Iterator[httpx.Response]:
        """Send the GET, following redirects by hand so credentials never reach another origin."""
        import httpx

        url, send_secrets = self.url, True
        for _ in range(_MAX_REDIRECTS + 1):
            headers = {"Accept-Encoding": "identity"}
            headers.update(self.headers)
            if self.size > 0:
                headers["Range"] = f"bytes={self.size}-"
            if not send_secrets:
                headers = {k: v for k, v in headers.items() if k.lower() not in _SECRET_HEADERS}
            request = self.http.build_request("GET", url, headers=headers, timeout=self.timeout)
            if not send_secrets:  # also whatever the caller's client adds by default
                for name in _SECRET_HEADERS:
                    request.headers.pop(name, None)
            try:
                response = self.http.send(request, stream=True, follow_redirects=False)
            except httpx.TransportError as exc:
                raise _Retry(self.redact(f"{type(exc).__name__}: {exc}")) from None
            if response.is_redirect and "location" in response.headers:
                url = url.join(response.headers["location"])
                response.close()
                send_secrets = send_secrets and _origin(url) == _origin(self.url)
                continue
            try:
                yield response
            except httpx.TransportError as exc:
                raise _Retry(self.redact(f"{type(exc).__name__}: {exc}")) from None
            finally:
                response.close()
            return
        raise DownloadError(f"too many redirects for {_shown(self.url)}")

    def stream(self, chunks: Iterator[bytes], room: int | None) -> None:
        """Hand the body to the writer thread; `self.size` and the digest are exact again on return.

        `room` is how many bytes the body may have: one byte more (a chunked body that does not end, a server
        that lies about its size) stops it there, without writing the chunk that went past, and fails the file.
        """
        start, received = self.size, 0  # settled here; `self.size` grows on the writer thread from now on
        try:
            for chunk in chunks:
                received += len(chunk)
                if room is not None and received > room:
                    raise _Overrun(start + room, start + received)
                self.part.put(chunk)
                if self.bucket is not None:
                    self.bucket.take(len(chunk), self.cancel)
                if self.cancel.is_set():
                    raise DownloadCancelled(f"download of {self.target.name} cancelled; the partial file is kept")
        finally:
            self.part.settle()  # a write error outranks whatever stopped the stream

    def verify(self, expected_sha256: str | None, expected_size: int | None) -> None:
        """Check size and hash; a mismatch deletes the `.part`, a match syncs it to disk."""
        got = self.part.digest.hexdigest()
        failure: VerificationFailed | None = None
        if expected_size is not None and self.size != expected_size:
            failure = VerificationFailed(f"size of {self.target.name}", f"{expected_size} bytes", f"{self.size} bytes")
        elif expected_sha256 is not None and got != expected_sha256:
            failure = VerificationFailed(f"sha256 of {self.target.name}", expected_sha256, got)
        if failure is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.part.path)
            raise failure

    def verify_blob(self, expected: str | None) -> None:
        """For a file kept in git (not LFS): its git blob id must be the listed one; a mismatch deletes it."""
        if expected is None:
            return
        got = git_blob_id(self.part.path, sha256=len(expected) == 64)
        if got != expected:
            with contextlib.suppress(OSError):
                os.unlink(self.part.path)
            raise VerificationFailed(f"git blob id of {self.target.name}", expected, got)
