"""What every request passes before it reaches a route: Origin and Host rules, body size limit and type, API
key, per-key rate limit; and the count and log line every request leaves behind.

A web page can make a browser send requests to 127.0.0.1 in two ways, and both are refused: from its own
origin (the browser sends `Origin`; only `[serve] allowed_origins` are served), and by DNS rebinding (its
domain resolves to 127.0.0.1; the browser then sends `Host: evil.example`, which a keyless server refuses:
only loopback names and the bound address are served). A page can post a "simple" cross-site form without
`Origin` checks in older browsers, so POST bodies must say `Content-Type: application/json`, which a form
cannot. The one route that takes an upload (an audio file to transcribe) must be sent as
`multipart/form-data`, which a form can send: there the browser's `Origin` (sent with every cross-site POST by
browsers since 2019-2020) is what refuses another page, and such a page could at most start a transcription
whose answer it cannot read (no CORS header for it). An upload has its own size limit (`max_upload_bytes`),
enforced on the stream as it arrives, so a huge file is refused before it is all read.

A pure ASGI middleware (no buffering of streamed replies). Keys are compared in constant time and never
logged: the log names the key by its position ("key 2"), the rate limit counts per key (per client address
when the server has no keys).
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from engines.config.serve import ServeConfig
from engines.server.errors import ApiError

log = logging.getLogger("llm_tui.serve")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = ("/healthz",)
"""Paths answered without a key (load balancers and `curl` probes); the Host and Origin rules still apply."""

BODY_PATHS = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/embeddings"})
"""The routes that take a (JSON) body."""

UPLOAD_PATHS = frozenset({"/v1/audio/transcriptions"})
"""The routes that take a `multipart/form-data` upload (a file), limited by `max_upload_bytes`."""

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]"})
"""Host names a keyless server answers (with any port), besides the address it is bound to."""

CORS_METHODS = "GET, POST, HEAD, OPTIONS"
CORS_HEADERS = "authorization, content-type"


def host_name(value: str) -> str:
    """The name part of a Host header, lower case, without port or trailing dot ("[::1]:8000" -> "[::1]")."""
    text = value.strip().lower()
    if text.startswith("["):
        end = text.find("]")
        return text[: end + 1] if end > 0 else text
    name, sep, port = text.rpartition(":")
    if sep and port.isdigit():
        text = name
    return text.rstrip(".")


def bound_name(host: str) -> str:
    """The address the server binds, as it appears in a Host header (IPv6 in brackets)."""
    text = host.strip().lower()
    return f"[{text}]" if ":" in text and not text.startswith("[") else text


def _shown(value: str) -> str:
    """A header value fit to quote back in an error: the caller's own text, cut short."""
    return repr(value if len(value) <= 80 else value[:80] + "...")


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One finished request, for the log and the app's serve panel."""

    method: str
    path: str
    status: int
    ms: float
    client: str
    error: str | None = None
    request_id: str = ""
    key: str | None = None
    """The name of the API key it came with (None: the server has no keys, or an open path)."""
    model: str | None = None
    """The model the request named (chat, completions, embeddings, transcriptions)."""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    ttft_ms: float | None = None
    """Time to the first token of a generation."""


RecordListener = Callable[[RequestRecord], None]
"""Told of every finished request (after the counts, outside the lock): the Prometheus metrics, the access log."""


@dataclass
class ServerStats:
    """Counts shared by the event loop and whoever displays them (the app polls `snapshot`)."""

    requests: int = 0
    errors: int = 0
    in_flight: int = 0
    cancelled: int = 0
    """Requests whose client went away before the reply ended (their generation was stopped)."""
    by_status: dict[int, int] = field(default_factory=dict)
    last_error: str | None = None
    recent: deque[RequestRecord] = field(default_factory=lambda: deque(maxlen=50))
    listeners: list[RecordListener] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_listener(self, listener: RecordListener) -> None:
        self.listeners.append(listener)

    def begin(self) -> None:
        with self._lock:
            self.in_flight += 1

    def note_cancelled(self) -> None:
        with self._lock:
            self.cancelled += 1

    def end(self, record: RequestRecord) -> None:
        with self._lock:
            self.in_flight -= 1
            self.requests += 1
            self.by_status[record.status] = self.by_status.get(record.status, 0) + 1
            if record.status >= 400 or record.error:
                self.errors += 1
                self.last_error = f"{record.status} {record.path}: {record.error or 'error'}"
            self.recent.append(record)
        for listener in self.listeners:
            try:
                listener(record)
            except Exception:  # a metrics or log failure must never fail the request
                log.exception("request listener failed")

    def recent_records(self) -> list[RequestRecord]:
        """The last requests, oldest first."""
        with self._lock:
            return list(self.recent)

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            return {
                "requests": self.requests,
                "errors": self.errors,
                "in_flight": self.in_flight,
                "cancelled": self.cancelled,
                "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
                "last_error": self.last_error,
            }


class RateLimiter:
    """A token bucket per caller: `per_minute` requests a minute, in bursts of up to that many."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, caller: str) -> float:
        """0 when the request may go; otherwise the seconds until it may."""
        if self.per_minute <= 0:
            return 0.0
        rate = self.per_minute / 60.0
        now = self._clock()
        with self._lock:
            tokens, then = self._buckets.get(caller, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - then) * rate)
            if tokens >= 1.0:
                self._buckets[caller] = (tokens - 1.0, now)
                return 0.0
            self._buckets[caller] = (tokens, now)
            return (1.0 - tokens) / rate


def key_index(given: str, keys: tuple[str, ...]) -> int | None:
    """The 1-based position of `given` among `keys`, comparing against every key in constant time."""
    found = None
    raw = given.encode()
    for i, key in enumerate(keys, start=1):
        if hmac.compare_digest(raw, key.encode()) and found is None:
            found = i
    return found


class Guard:
    """The ASGI middleware: limits and key checks first, then the app; one record per request."""

    def __init__(self, app: Asgi, serve: ServeConfig, stats: ServerStats) -> None:
        self.app = app
        self.max_body = serve.max_body_bytes
        self.max_upload = serve.max_upload_bytes
        self.keys = tuple(k.reveal() for k in serve.api_keys)
        self.limiter = RateLimiter(serve.requests_per_minute)
        self.stats = stats
        self.hosts = LOOPBACK_HOSTS | {bound_name(serve.host)}
        self.origins = frozenset(serve.allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        error: str | None = None
        self.stats.begin()

        cors = self._cors_headers(scope)

        async def record_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                if cors:
                    message = {**message, "headers": [*message.get("headers", []), *cors]}
            await send(message)

        try:
            if self._preflight(scope):
                status = 204
                await record_send({"type": "http.response.start", "status": 204, "headers": _PREFLIGHT})
                await record_send({"type": "http.response.body", "body": b""})
                return
            self._check(scope)
            await self.app(scope, self._limited(scope, receive), record_send)
        except ApiError as exc:
            error = exc.message
            status = exc.status
            await _answer(record_send, exc)
        except Exception as exc:  # the reply has already started or the app failed: log, count, don't leak
            error = f"{type(exc).__name__}: {exc}"
            log.exception("request failed")
            raise
        finally:
            error = error or scope.get("state", {}).get("error")
            client = scope.get("client")
            record = RequestRecord(
                scope["method"],
                scope["path"],
                status,
                (time.perf_counter() - started) * 1000.0,
                f"{client[0]}:{client[1]}" if client else "-",
                error,
            )
            self.stats.end(record)
            log.info(
                "%s %s %d %.0f ms %s%s",
                record.method,
                record.path,
                record.status,
                record.ms,
                scope.get("state", {}).get("caller", record.client),
                f" ({error})" if error else "",
            )

    def _origin(self, scope: Scope) -> str | None:
        """The request's Origin when it is allowed; ApiError 403 when one is sent and not allowed."""
        origin = _headers(scope).get("origin")
        if origin is None:
            return None
        if "*" in self.origins or origin.strip().lower().rstrip("/") in self.origins:
            return origin
        raise ApiError(
            403,
            f"requests from the web page {_shown(origin)} are refused: add that origin to [serve] "
            "allowed_origins in config.toml to allow it",
            type="permission_error",
            code="origin_not_allowed",
        )

    def _cors_headers(self, scope: Scope) -> list[tuple[bytes, bytes]]:
        """The CORS headers for an allowed Origin (none for a refused or absent one: the refusal says why)."""
        try:
            origin = self._origin(scope)
        except ApiError:
            return []
        if origin is None:
            return []
        return [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin")]

    def _preflight(self, scope: Scope) -> bool:
        """Whether this is a browser's CORS preflight from an allowed origin (answered here, before the key)."""
        headers = _headers(scope)
        if scope["method"] != "OPTIONS" or "access-control-request-method" not in headers:
            return False
        self._check_host(headers)
        return self._origin(scope) is not None

    def _check_host(self, headers: dict[str, str]) -> None:
        """Without keys, only requests addressed to a loopback name (or the bound address) are served."""
        host = headers.get("host")
        if self.keys or host is None or host_name(host) in self.hosts:
            return
        raise ApiError(
            403,
            f"this server has no API key, so it answers only requests addressed to 127.0.0.1, localhost or "
            f"[::1], not to {_shown(host)}: call it by 127.0.0.1, or set an API key ([serve] api_keys or "
            "LLM_TUI_API_KEY) to serve other names",
            type="permission_error",
            code="host_not_allowed",
        )

    def _check(self, scope: Scope) -> None:
        headers = _headers(scope)
        self._origin(scope)
        self._check_host(headers)
        length = headers.get("content-length")
        limit, what, hint = self._limit(scope)
        if length is not None and length.isdigit() and int(length) > limit:
            raise ApiError(413, f"the {what} is {length} bytes; the limit is {limit}{hint}", code="body_too_large")
        if scope["method"] == "POST" and scope["path"] in UPLOAD_PATHS:
            mime = headers.get("content-type", "").partition(";")[0].strip().lower()
            if mime != "multipart/form-data":
                shown = f"got {_shown(mime)}" if mime else "it sent none"
                raise ApiError(
                    415,
                    f"send the file as multipart/form-data ({shown}), as OpenAI's clients do",
                    code="unsupported_media_type",
                )
        # Only the routes that take a body: a POST elsewhere is the router's 405 (with `Allow`), not a 415.
        if scope["method"] == "POST" and scope["path"] in BODY_PATHS:
            mime = headers.get("content-type", "").partition(";")[0].strip().lower()
            if mime != "application/json":
                shown = f"got {_shown(mime)}" if mime else "it sent none"
                raise ApiError(
                    415,
                    f"send Content-Type: application/json ({shown}): the body must be JSON, and other types are "
                    "refused so that a web page cannot post a form to this server",
                    code="unsupported_media_type",
                )
        client = scope.get("client")
        caller = client[0] if client else "unknown"
        scope.setdefault("state", {})["caller"] = caller
        if self.keys and scope["path"] not in OPEN_PATHS:
            auth = headers.get("authorization", "")
            scheme, _, token = auth.partition(" ")
            index = key_index(token.strip(), self.keys) if scheme.lower() == "bearer" else None
            if index is None:
                raise ApiError(
                    401,
                    "missing or wrong API key: send it as 'Authorization: Bearer KEY'",
                    code="invalid_api_key",
                    headers=(("WWW-Authenticate", "Bearer"),),
                )
            caller = f"key {index}"
        scope.setdefault("state", {})["caller"] = caller
        if scope["path"] not in OPEN_PATHS and (wait := self.limiter.take(caller)) > 0:
            raise ApiError(
                429,
                f"rate limit of {self.limiter.per_minute} requests per minute reached; retry in {wait:.1f} s",
                type="requests",
                code="rate_limit_exceeded",
                headers=(("Retry-After", str(max(1, round(wait)))),),
            )

    def _limited(self, scope: Scope, receive: Receive) -> Receive:
        """`receive` that refuses a body (sent without Content-Length) growing past the limit."""
        seen = 0
        limit, what, hint = self._limit(scope)

        async def guarded() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise ApiError(413, f"the {what} is over the limit of {limit} bytes{hint}", code="body_too_large")
            return message

        return guarded

    def _limit(self, scope: Scope) -> tuple[int, str, str]:
        """The most bytes this request's body may have, what to call it in a refusal, and the setting to name."""
        if scope["path"] in UPLOAD_PATHS:
            return self.max_upload, "upload", " ([serve] max_upload_bytes)"
        return self.max_body, "request body", ""


_PREFLIGHT = [
    (b"access-control-allow-methods", CORS_METHODS.encode()),
    (b"access-control-allow-headers", CORS_HEADERS.encode()),
    (b"access-control-max-age", b"600"),
    (b"content-length", b"0"),
]


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


async def _answer(send: Send, error: ApiError) -> None:
    body = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
