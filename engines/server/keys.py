"""Which key a request brings and what it may do: the path rules, the key lookup, and each key's budgets.

Every path rule compares the path the routes see: `route_path` takes a reverse proxy's prefix off once (the
`root_path` uvicorn puts in the scope, else `[serve] root_path` when a proxy passed the prefix on), so that
`/llm/v1/llm-tui/instances` needs the same scope as `/v1/llm-tui/instances`.

Scopes by path and method (`needed_scope`): /healthz needs no key; the read-only status paths need `metrics`;
anything else under /v1/llm-tui/ needs `metrics` to read (GET, HEAD) and `admin` to change (launching and stopping
instances); every other path (the OpenAI routes, /v1/models, /openapi.json) needs `infer`. A key with `admin` may
do everything.

A key is found by comparing the token with every key in constant time (no early exit, so the time does not say
how many leading keys were tried). Budgets are token buckets per key: requests a minute (a key's own
`requests_per_minute`, else the server's), and prompt + completion tokens a minute, charged when a reply ends.
"""

from __future__ import annotations

import hmac
import math
import threading
import time
from collections.abc import Callable, MutableMapping
from typing import Any

from engines.config.serve import ApiKey

OPEN_PATHS = frozenset({"/healthz"})
"""Paths answered without a key (load balancers and `curl` probes); the Host and Origin rules still apply."""

STATUS_PATHS = frozenset({"/metrics", "/v1/llm-tui/status", "/v1/llm-tui/metrics"})
"""Read-only status documents: the `metrics` scope, any method (the router answers 405 to all but GET)."""

UNCOUNTED_PATHS = OPEN_PATHS | STATUS_PATHS
"""Paths that no request limit counts: a scraper polling them must not use up a key's allowance."""

FLEET_PREFIX = "/v1/llm-tui/"
"""llm-tui's own routes: reading them (instances, status) needs `metrics`, changing them `admin`."""
READ_METHODS = frozenset({"GET", "HEAD"})


def route_path(scope: MutableMapping[str, Any], prefix: str = "") -> str:
    """The request's path without a reverse proxy's prefix: the scope's `root_path` when the path starts with it,
    else `prefix` (`[serve] root_path`) when it does; taken off once. Every path rule compares this."""
    path = str(scope.get("path", ""))
    for root in (str(scope.get("root_path") or ""), prefix):
        root = root.rstrip("/")
        if root and (path == root or path.startswith(root + "/")):
            return path[len(root) :] or "/"
    return path


def needed_scope(method: str, path: str) -> str | None:
    """The scope a request needs (infer, metrics or admin), or None for a path open to all; `path` is route_path's."""
    if path in OPEN_PATHS:
        return None
    if path in STATUS_PATHS:
        return "metrics"
    if path.startswith(FLEET_PREFIX) or path == FLEET_PREFIX.rstrip("/"):
        return "metrics" if method.upper() in READ_METHODS else "admin"
    return "infer"


def find_key(given: str, keys: tuple[ApiKey, ...]) -> ApiKey | None:
    """The first key whose secret is `given`, comparing against every key in constant time; None for no match."""
    found = None
    raw = given.encode()
    for key in keys:
        secret = key.secret.reveal().encode()
        if hmac.compare_digest(raw, secret) and secret and found is None:
            found = key
    return found


def key_index(given: str, keys: tuple[str, ...]) -> int | None:
    """The 1-based position of `given` among `keys`, comparing against every key in constant time."""
    found = None
    raw = given.encode()
    for i, key in enumerate(keys, start=1):
        if hmac.compare_digest(raw, key.encode()) and found is None:
            found = i
    return found


def retry_after(wait: float) -> str:
    """A Retry-After value (whole seconds, at least 1) for a wait in seconds."""
    return str(max(1, math.ceil(wait)))


class RateLimiter:
    """A token bucket per caller: `per_minute` requests a minute, in bursts of up to that many."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, caller: str, per_minute: int | None = None) -> float:
        """0 when the request may go; otherwise the seconds until it may. `per_minute` overrides the limit."""
        limit = self.per_minute if per_minute is None else per_minute
        if limit <= 0:
            return 0.0
        rate = limit / 60.0
        now = self._clock()
        with self._lock:
            tokens, then = self._buckets.get(caller, (float(limit), now))
            tokens = min(float(limit), tokens + (now - then) * rate)
            if tokens >= 1.0:
                self._buckets[caller] = (tokens - 1.0, now)
                return 0.0
            self._buckets[caller] = (tokens, now)
            return (1.0 - tokens) / rate


class TokenBudget:
    """Prompt + completion tokens a minute per key: a bucket of `per_minute` that refills continuously, charged
    when a reply ends (it may go below zero: a reply is never cut for it) and checked when a request arrives."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def _level(self, name: str, per_minute: int, now: float) -> float:
        level, then = self._buckets.get(name, (float(per_minute), now))
        return min(float(per_minute), level + (now - then) * per_minute / 60.0)

    def wait(self, name: str, per_minute: int) -> float:
        """0 when the key has a token left; otherwise the seconds until it has one again."""
        if per_minute <= 0:
            return 0.0
        now = self._clock()
        with self._lock:
            level = self._level(name, per_minute, now)
            self._buckets[name] = (level, now)
        return 0.0 if level >= 1.0 else (1.0 - level) * 60.0 / per_minute

    def charge(self, name: str, per_minute: int, tokens: int) -> None:
        """Take `tokens` from the key's bucket (a finished request's prompt + completion tokens)."""
        if per_minute <= 0 or tokens <= 0:
            return
        now = self._clock()
        with self._lock:
            self._buckets[name] = (self._level(name, per_minute, now) - tokens, now)
