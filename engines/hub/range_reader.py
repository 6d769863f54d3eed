"""Read the start of a remote file with HTTP Range requests, bounded in bytes, requests and time.

A model header is read by the same parser as a local file (`parse_gguf_header` takes a `read_at`); this is the
`read_at` for a file on the Hub. The window of each request starts small and doubles, up to a cap, only while
the parser keeps asking; the total is bounded (a header that needs more is refused, never read whole). The
Hub's `resolve` URL answers large files with a 302 to a CDN on another host: the first request follows it by
hand, without the token, and later ranges go straight to where it led. A server that ignores Range (200 with
the whole file) is read forward as one stream, still within the bound.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engines.errors import BadModelFile
from engines.hub.errors import HubAuthError, HubError, HubNotFound, HubRateLimited, HubUnreachable

if TYPE_CHECKING:  # httpx is imported where used
    import httpx

KIB = 1 << 10
MIB = 1 << 20
FIRST_WINDOW = 256 * KIB
"""The first request's size: a safetensors header, or a GGUF's keys up to its vocabulary, in one round trip."""
MAX_WINDOW = 512 * KIB
"""The largest single request: the bytes read past what the parser needed are at most this."""
JUMP_WINDOW = 64 * KIB
"""The window after the parser skipped ahead (past a vocabulary's scores): the next key is usually small."""
MAX_HEADER_BYTES = 32 * MIB
"""The most read for one file's header. Real headers: Gemma 3 6.5 MB (4.4 MB of it read), Qwen 2.5 ~6 MB."""
_MAX_REDIRECTS = 5
_MAX_RATE_RETRIES = 3
_MAX_RETRY_AFTER_S = 30.0
_SECRET_HEADERS = ("authorization", "cookie", "proxy-authorization")
_CONTENT_RANGE = re.compile(r"^bytes\s+(\d+)-(\d+)/(\d+|\*)$")

Waiting = Callable[[float, str], None]
"""Told before a back-off: seconds to wait and why ("rate limited by huggingface.co (HTTP 429)")."""


@dataclass(frozen=True, slots=True)
class ReadStats:
    """What reading one header cost."""

    requests: int
    bytes_read: int
    range_ignored: bool
    redirected: bool


class RangeReader:
    """`read_at(offset, at_least)` over one remote file of a known size; use as a context manager."""

    def __init__(
        self,
        http: httpx.Client,
        url: str,
        *,
        size: int,
        shown: str,
        headers: Mapping[str, str] | None = None,
        max_bytes: int = MAX_HEADER_BYTES,
        first_window: int = FIRST_WINDOW,
        max_window: int = MAX_WINDOW,
        timeout_s: float = 30.0,
        cancel: threading.Event | None = None,
        on_wait: Waiting | None = None,
    ) -> None:
        self.http = http
        self.url = url
        self.size = size
        self.shown = shown
        self.headers = {k.lower(): v for k, v in (headers or {}).items()}
        self.max_bytes = max_bytes
        self.window = first_window
        self.max_window = max_window
        self._next = 0  # where the last read ended: a read elsewhere means the parser skipped ahead
        self.timeout_s = timeout_s
        self.cancel = cancel
        self.on_wait = on_wait
        self.requests = 0
        self.bytes_read = 0
        self.redirected = False
        self._target: str | None = None  # where the first request's redirects led
        self._send_secrets = True
        self._stream: Iterator[bytes] | None = None  # the whole-file body of a server that ignored Range
        self._response: httpx.Response | None = None
        self._prefix = bytearray()  # what that body has given so far, from byte 0

    @property
    def stats(self) -> ReadStats:
        return ReadStats(self.requests, self.bytes_read, self._response is not None, self.redirected)

    def __enter__(self) -> RangeReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._response is not None:
            self._response.close()
            self._response, self._stream = None, None

    # -- the read_at the parsers take -----------------------------------------------------------

    def read_at(self, offset: int, at_least: int) -> bytes:
        """The bytes from `offset`: at least `at_least` of them unless the file ends, at most one window more."""
        if offset >= self.size:
            return b""
        if offset > self._next + JUMP_WINDOW:
            self.window = min(JUMP_WINDOW, self.window)
        want = min(self.size - offset, max(at_least, self.window))
        self.window = min(self.window * 2, self.max_window)
        self._next = offset + want
        import httpx

        try:
            if self._stream is not None:  # a stream has no round trips to save: read only what is asked
                return self._from_stream(offset, min(self.size - offset, at_least))
            self._check_budget(want, offset)
            return self._get(offset, want)
        except httpx.TimeoutException:
            raise HubUnreachable(f"{self.shown}: no answer within {self.timeout_s:.0f} s") from None
        except httpx.TransportError as exc:  # refused, reset, or closed mid-body
            raise HubUnreachable(f"the connection for {self.shown} failed: {type(exc).__name__}") from None

    def _check_budget(self, want: int, offset: int) -> None:
        if self.bytes_read + want > self.max_bytes:
            raise BadModelFile(
                self.shown,
                f"the header goes on past byte {offset:,}: more than the {_size(self.max_bytes)} read"
                " remotely for one file; download it to inspect it",
            )

    def _from_stream(self, offset: int, want: int) -> bytes:
        assert self._stream is not None
        end = offset + want
        while len(self._prefix) < end:
            self._check_budget(0, len(self._prefix))
            if self.cancel is not None and self.cancel.is_set():
                raise HubError(f"reading {self.shown} cancelled")
            chunk = next(self._stream, b"")
            if not chunk:
                break
            self.bytes_read += len(chunk)
            self._prefix += chunk
        if self.bytes_read > self.max_bytes:
            self._check_budget(1, offset)
        return bytes(self._prefix[offset:])

    # -- HTTP -----------------------------------------------------------------------------------

    def _get(self, offset: int, want: int) -> bytes:
        import httpx

        end = offset + want - 1
        for attempt in range(_MAX_RATE_RETRIES + 1):
            if self.cancel is not None and self.cancel.is_set():
                raise HubError(f"reading {self.shown} cancelled")
            try:
                response = self._send(offset, end)
            except httpx.ConnectError as exc:
                raise HubUnreachable(f"cannot reach the server for {self.shown}: {type(exc).__name__}") from None
            self.requests += 1
            if response.status_code == 429 and attempt < _MAX_RATE_RETRIES:
                response.close()
                self._back_off(response, attempt)
                continue
            return self._body(response, offset, want)
        raise AssertionError("unreachable")  # the loop returns or raises

    def _back_off(self, response: httpx.Response, attempt: int) -> None:
        wait = retry_after(response.headers, default=2.0**attempt)
        if self.on_wait is not None:
            self.on_wait(wait, f"rate limited by {response.url.host} (HTTP 429)")
        if self.cancel is not None:
            if self.cancel.wait(wait):
                raise HubError(f"reading {self.shown} cancelled")
        else:
            time.sleep(wait)

    def _send(self, offset: int, end: int) -> httpx.Response:
        import httpx

        url = httpx.URL(self._target or self.url)
        for _ in range(_MAX_REDIRECTS + 1):
            headers = {"Range": f"bytes={offset}-{end}", "Accept-Encoding": "identity"}
            if self._send_secrets:
                headers.update(self.headers)
            else:
                headers.update({k: v for k, v in self.headers.items() if k.lower() not in _SECRET_HEADERS})
            request = self.http.build_request("GET", url, headers=headers, timeout=self.timeout_s)
            if not self._send_secrets:
                for name in _SECRET_HEADERS:
                    request.headers.pop(name, None)
            response = self.http.send(request, stream=True, follow_redirects=False)
            if response.is_redirect and "location" in response.headers:
                response.close()
                new = url.join(response.headers["location"])
                self._send_secrets = self._send_secrets and _origin(new) == _origin(httpx.URL(self.url))
                url = new
                self.redirected = True
                continue
            self._target = str(url)
            return response
        raise HubError(f"too many redirects for {self.shown}")

    def _body(self, response: httpx.Response, offset: int, want: int) -> bytes:
        status = response.status_code
        if status == 206:
            try:
                start = _range_start(response.headers.get("content-range", ""))
                if start != offset:
                    raise HubError(
                        f"the server answered a request for bytes {offset}.. of {self.shown} with bytes {start}.."
                    )
                return self._read(response, want)
            finally:
                response.close()
        if status == 200:  # Range ignored: the whole file comes; read forward only as far as the parser asks
            self._response, self._stream = response, response.iter_bytes(64 * KIB)
            return self._from_stream(offset, want)
        response.close()
        raise status_error(status, response.headers, self.shown, token_sent="authorization" in self.headers)

    def _read(self, response: httpx.Response, want: int) -> bytes:
        data = bytearray()
        for chunk in response.iter_bytes(64 * KIB):
            room = want - len(data)
            data += chunk[:room]
            self.bytes_read += min(len(chunk), room)
            if len(chunk) >= room:
                break
        return bytes(data)


def _size(n: int) -> str:
    return f"{n / MIB:g} MiB" if n >= MIB else f"{n:,} bytes"


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return (url.scheme, url.host, url.port)


def _range_start(value: str) -> int | None:
    match = _CONTENT_RANGE.match(value.strip())
    return int(match.group(1)) if match else None


def retry_after(headers: Mapping[str, str], *, default: float) -> float:
    """Seconds a 429 asks to wait (Retry-After in seconds), capped; `default` when it says nothing usable."""
    with contextlib.suppress(TypeError, ValueError):
        return min(max(float(headers.get("retry-after", "")), 0.0), _MAX_RETRY_AFTER_S)
    return min(default, _MAX_RETRY_AFTER_S)


def status_error(status: int, headers: Mapping[str, str], shown: str, *, token_sent: bool = False) -> HubError:
    """The error for an HTTP status on a Hub file, in words a user can act on."""
    code = headers.get("x-error-code", "")
    gated = code == "GatedRepo" or (status in (401, 403) and "restricted" in headers.get("x-error-message", ""))
    if gated and token_sent:
        return HubAuthError(
            f"{shown} is in a gated repo and your hf_token has no access to it: accept the licence on the model's"
            " Hub page with the account the token belongs to"
        )
    if gated:
        return HubAuthError(
            f"{shown} is in a gated repo: accept its licence on the model's Hub page, then set hf_token"
            " (Settings, or the HF_TOKEN environment variable)"
        )
    if status in (401, 403):
        return HubAuthError(f"the Hub refused {shown} (HTTP {status}): set hf_token, or check it")
    if status == 404:
        return HubNotFound(f"{shown} is not on the Hub (HTTP 404)")
    if status == 429:
        wait = retry_after(headers, default=60.0)
        return HubRateLimited(
            f"the Hub is rate limiting requests (HTTP 429) for {shown}; try again in {wait:.0f} s,"
            " or set hf_token (signed-in users get a higher limit)",
            wait,
        )
    if status == 416:
        return HubError(f"the server refused a byte range of {shown} (HTTP 416)")
    return HubError(f"the server answered HTTP {status} for {shown}")
