"""What every request passes before it reaches a route: Origin and Host rules, body size limit and type, API
key and its scope, per-key request and token limits; and the request id, count and log line every request
leaves behind.

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
logged: the log names the key by its name (the unnamed `api_keys` are "key-1", "key-2"...), and each path needs
a scope of the key (engines.server.keys). The request limits count per key (per client address when the server
has no keys), except on /healthz and the status paths a scraper polls. Every reply carries `x-request-id`: the
client's own `X-Request-Id` when it is a plain token of up to 128 characters, else a new one; the access log
(engines.server.access_log) names requests by it.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from engines.config.serve import SCOPES, ApiKey, ServeConfig
from engines.server.access_log import AccessLog
from engines.server.errors import ApiError
from engines.server.keys import OPEN_PATHS as OPEN_PATHS  # part of this module's API
from engines.server.keys import UNCOUNTED_PATHS, TokenBudget, find_key, needed_scope, retry_after, route_path
from engines.server.keys import RateLimiter as RateLimiter  # part of this module's API
from engines.server.keys import key_index as key_index  # part of this module's API
from engines.server.records import RecordListener as RecordListener  # part of this module's API
from engines.server.records import RequestRecord as RequestRecord  # part of this module's API
from engines.server.records import ServerStats as ServerStats  # part of this module's API
from engines.server.request_state import record_fields

log = logging.getLogger("llm_tui.serve")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]

BODY_PATHS = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/llm-tui/instances"})
"""The routes that take a (JSON) body."""

UPLOAD_PATHS = frozenset({"/v1/audio/transcriptions"})
"""The routes that take a `multipart/form-data` upload (a file), limited by `max_upload_bytes`."""

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]"})
"""Host names a keyless server answers (with any port), besides the address it is bound to."""

REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
"""A client's X-Request-Id that is taken as the request's id (anything else gets a new id)."""

CORS_METHODS = "GET, POST, DELETE, HEAD, OPTIONS"
CORS_HEADERS = "authorization, content-type, x-request-id"


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


class Guard:
    """The ASGI middleware: limits and key checks first, then the app; one record per request."""

    def __init__(
        self, app: Asgi, serve: ServeConfig, stats: ServerStats, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.app = app
        self.max_body = serve.max_body_bytes
        self.max_upload = serve.max_upload_bytes
        self.keys = serve.all_keys()
        self.keyed = serve.has_keys
        self.metrics_open = serve.metrics_without_key
        self.prefix = serve.root_path
        self.limiter = RateLimiter(serve.requests_per_minute, clock)
        self.tokens = TokenBudget(clock)
        self.stats = stats
        self.hosts = LOOPBACK_HOSTS | {bound_name(serve.host)}
        self.origins = frozenset(serve.allowed_origins)
        self.access = AccessLog.of(serve)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._closing(send))
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        error: str | None = None
        self.stats.begin()
        state = scope.setdefault("state", {})
        request_id = _request_id(_headers(scope).get("x-request-id"))
        state["request_id"] = request_id
        path = route_path(scope, self.prefix)
        extra = [*self._cors_headers(scope), (b"x-request-id", request_id.encode())]

        async def record_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                own = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                message = {**message, "headers": [*own, *extra]}
            await send(message)

        try:
            if self._preflight(scope):
                status = 204
                await record_send({"type": "http.response.start", "status": 204, "headers": _PREFLIGHT})
                await record_send({"type": "http.response.body", "body": b""})
                return
            self._check(scope, path)
            await self.app(scope, self._limited(path, receive), record_send)
        except ApiError as exc:
            error = exc.message
            status = exc.status
            await _answer(record_send, exc)
        except Exception as exc:  # the reply has already started or the app failed: log, count, don't leak
            error = f"{type(exc).__name__}: {exc}"
            log.exception("request failed")
            raise
        finally:
            self._finish(scope, path, status, error, started)

    def _finish(self, scope: Scope, path: str, status: int, error: str | None, started: float) -> None:
        """Charge the key's token budget, count the request and write its log line."""
        state = scope.get("state", {})
        client = scope.get("client")
        key: ApiKey | None = state.get("api_key")
        record = RequestRecord(
            scope["method"],
            path,
            status,
            (time.perf_counter() - started) * 1000.0,
            f"{client[0]}:{client[1]}" if client else "-",
            error or state.get("error"),
            request_id=str(state.get("request_id", "")),
            key=None if key is None else key.name,
            **record_fields(state),
        )
        if key is not None and key.tokens_per_minute:
            used = (record.prompt_tokens or 0) + (record.completion_tokens or 0)
            self.tokens.charge(key.name, key.tokens_per_minute, used)
        self.stats.end(record)
        try:
            self.access.write(record)
        except Exception:  # a log failure must never fail the request
            log.exception("access log failed")

    def _closing(self, send: Send) -> Send:
        """`send` for the lifespan: closes the access log file once the server has shut down."""

        async def closing(message: Message) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                self.access.close()
            await send(message)

        return closing

    def close(self) -> None:
        """Close the access log file (a server without the ASGI lifespan calls this when it stops)."""
        self.access.close()

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
        return [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-expose-headers", b"x-request-id"),
            (b"vary", b"Origin"),
        ]

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
        if self.keyed or host is None or host_name(host) in self.hosts:
            return
        raise ApiError(
            403,
            f"this server has no API key, so it answers only requests addressed to 127.0.0.1, localhost or "
            f"[::1], not to {_shown(host)}: call it by 127.0.0.1, or set an API key ([serve] api_keys or "
            "LLM_TUI_API_KEY) to serve other names",
            type="permission_error",
            code="host_not_allowed",
        )

    def _check(self, scope: Scope, path: str) -> None:
        headers = _headers(scope)
        self._origin(scope)
        self._check_host(headers)
        length = headers.get("content-length")
        limit, what, hint = self._limit(path)
        if length is not None and length.isdigit() and int(length) > limit:
            raise ApiError(413, f"the {what} is {length} bytes; the limit is {limit}{hint}", code="body_too_large")
        if scope["method"] == "POST" and path in UPLOAD_PATHS:
            mime = headers.get("content-type", "").partition(";")[0].strip().lower()
            if mime != "multipart/form-data":
                shown = f"got {_shown(mime)}" if mime else "it sent none"
                raise ApiError(
                    415,
                    f"send the file as multipart/form-data ({shown}), as OpenAI's clients do",
                    code="unsupported_media_type",
                )
        # Only the routes that take a body: a POST elsewhere is the router's 405 (with `Allow`), not a 415.
        if scope["method"] == "POST" and path in BODY_PATHS:
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
        state = scope.setdefault("state", {})
        key = self._authorize(scope["method"], path, headers, state)
        caller = (client[0] if client else "unknown") if key is None else key.name
        state["caller"] = caller
        if path in UNCOUNTED_PATHS:
            return
        rpm = key.requests_per_minute if key is not None and key.requests_per_minute else self.limiter.per_minute
        if (wait := self.limiter.take(f"key:{caller}" if key else f"ip:{caller}", rpm)) > 0:
            raise ApiError(
                429,
                f"rate limit of {rpm} requests per minute reached; retry in {wait:.1f} s",
                type="requests",
                code="rate_limit_exceeded",
                headers=(("Retry-After", retry_after(wait)),),
            )
        if key is not None and (wait := self.tokens.wait(key.name, key.tokens_per_minute)) > 0:
            raise ApiError(
                429,
                f"the key {key.name!r} has used its {key.tokens_per_minute} tokens per minute; retry in {wait:.1f} s",
                type="tokens",
                code="rate_limit_exceeded",
                headers=(("Retry-After", retry_after(wait)),),
            )

    def _authorize(
        self, method: str, path: str, headers: dict[str, str], state: MutableMapping[str, Any]
    ) -> ApiKey | None:
        """The key the request brings when the path needs one (None: no keys, or an open path), named in `state`;
        ApiError 401 for a missing or wrong key, 403 for a key without the scope the path needs."""
        needed = needed_scope(method, path)
        if not self.keyed or needed is None or (self.metrics_open and path == "/metrics"):
            return None
        scheme, _, token = headers.get("authorization", "").partition(" ")
        key = find_key(token.strip(), self.keys) if scheme.lower() == "bearer" else None
        if key is None:
            raise ApiError(
                401,
                "missing or wrong API key: send it as 'Authorization: Bearer KEY'",
                code="invalid_api_key",
                headers=(("WWW-Authenticate", "Bearer"),),
            )
        state["key"] = key.name
        state["api_key"] = key
        if not key.allows(needed):
            has = ", ".join(s for s in SCOPES if s in key.scopes)
            raise ApiError(
                403,
                f"the key {key.name!r} may use {has}, not {needed}: {_WHY[needed]}",
                type="permission_error",
                code="insufficient_scope",
            )
        return key

    def _limited(self, path: str, receive: Receive) -> Receive:
        """`receive` that refuses a body (sent without Content-Length) growing past the limit."""
        seen = 0
        limit, what, hint = self._limit(path)

        async def guarded() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise ApiError(413, f"the {what} is over the limit of {limit} bytes{hint}", code="body_too_large")
            return message

        return guarded

    def _limit(self, path: str) -> tuple[int, str, str]:
        """The most bytes this request's body may have, what to call it in a refusal, and the setting to name."""
        if path in UPLOAD_PATHS:
            return self.max_upload, "upload", " ([serve] max_upload_bytes)"
        return self.max_body, "request body", ""


_WHY = {
    "infer": "the OpenAI routes need a key with the infer scope",
    "metrics": "the metrics and status routes need a key with the metrics scope",
    "admin": "launching and stopping instances needs a key with the admin scope",
}


def _request_id(given: str | None) -> str:
    """The client's X-Request-Id when it is a plain token of 1 to 128 characters, else a new id."""
    if given is not None and REQUEST_ID.fullmatch(given):
        return given
    return uuid.uuid4().hex


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
