"""The [serve] table of config.toml: how `llm-tui serve` (and the app's serve toggle) listen and what they allow.

```toml
[serve]
host = "127.0.0.1"          # any other address needs an API key
port = 8000
api_keys = ["sk-local-..."]  # the file is then written with mode 0600; or LLM_TUI_API_KEY=key1,key2
requests_per_minute = 0     # per key (per client address without keys); 0 = no limit
max_body_bytes = 16777216
max_upload_bytes = 104857600  # an audio file sent to /v1/audio/transcriptions (refused past this, unread)
max_tokens = 4096           # the most a request may ask for; requests that ask for none get this many at most
max_queue = 32              # requests waiting per instance before the server answers 429
shutdown_grace_s = 10       # on SIGTERM / Ctrl+C, how long running replies may go on before they are ended
launch_on_demand = false    # load a model that is not running when a request names it (memory permitting):
                            # only catalog ids, aliases and files inside models_dir, never any other path
allowed_origins = []        # web pages (browser Origin) that may call the server, e.g. ["http://localhost:3000"];
                            # "*" allows any page; a request from any other page gets 403, key or not
```

Without an API key the server answers only requests addressed to a loopback name (Host 127.0.0.1,
localhost or [::1], or the address it is bound to), so a web page whose domain is made to resolve to
127.0.0.1 (DNS rebinding) cannot use it; /healthz follows the same rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from engines.config.tables import as_table, file_value
from engines.config.values import Invalid, Parse, parse_bool, parse_float, parse_int, parse_text
from engines.secret import Secret

API_KEY_ENV = "LLM_TUI_API_KEY"
"""Comma-separated API keys for the server, on top of those in the file."""


SCOPES = ("infer", "metrics", "admin")
"""infer: the OpenAI routes; metrics: /metrics and the status document; admin: everything, launching and stopping
instances included."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One key the server accepts: its name (in logs and metrics, never the key), what it may do, its limits."""

    name: str
    secret: Secret
    scopes: frozenset[str] = frozenset(SCOPES)
    requests_per_minute: int = 0
    """0: the server's own limit ([serve] requests_per_minute) applies."""
    tokens_per_minute: int = 0
    """Prompt + completion tokens a minute; 0 = no limit."""

    def allows(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes


@dataclass(frozen=True, slots=True)
class ServeConfig:
    """Where the API server listens and the limits it enforces."""

    host: str = "127.0.0.1"
    port: int = 8000
    api_keys: tuple[Secret, ...] = ()
    requests_per_minute: int = 0
    max_body_bytes: int = 16 * 1024 * 1024
    max_upload_bytes: int = 100 * 1024 * 1024
    """The largest multipart upload (an audio file to transcribe); JSON bodies stay under max_body_bytes."""
    max_tokens: int = 4096
    max_queue: int = 32
    shutdown_grace_s: float = 10.0
    """On SIGTERM, seconds running replies may take to finish before they end with an error event."""
    launch_on_demand: bool = False
    allowed_origins: tuple[str, ...] = ()
    """Browser origins ("scheme://host[:port]", lower case, or "*") whose requests are served."""
    keys: tuple[ApiKey, ...] = ()
    """Named keys with scopes and limits ([[serve.keys]], a keys file); api_keys are unnamed admin keys."""
    root_path: str = ""
    """The prefix a reverse proxy serves this API under ("/llm"), as uvicorn's --root-path; "" for none."""
    idle_unload_s: float | None = None
    """Unload a model the server loaded (--model or on demand) after this many seconds without requests."""

    def with_env(self, env: Mapping[str, str]) -> ServeConfig:
        """Add the keys of LLM_TUI_API_KEY, and LLM_TUI_SERVE_HOST / _PORT over the file's values."""
        out = self
        keys = [k.strip() for k in env.get(API_KEY_ENV, "").split(",") if k.strip()]
        if keys:
            out = out.with_keys(*keys)
        if host := env.get("LLM_TUI_SERVE_HOST", "").strip():
            out = replace(out, host=host)
        if port := env.get("LLM_TUI_SERVE_PORT", "").strip():
            out = replace(out, port=_value("port", port, "env LLM_TUI_SERVE_PORT"))
        return out

    def all_keys(self) -> tuple[ApiKey, ...]:
        """Every key accepted: the named ones, then api_keys as "key-1", "key-2"... with every scope."""
        unnamed = tuple(ApiKey(f"key-{i}", secret) for i, secret in enumerate(self.api_keys, start=1))
        return self.keys + unnamed

    @property
    def has_keys(self) -> bool:
        return bool(self.keys or self.api_keys)

    def with_keys(self, *keys: str) -> ServeConfig:
        """These keys accepted too (duplicates dropped)."""
        known = list(self.api_keys)
        for key in keys:
            secret = Secret(key)
            if secret not in known:
                known.append(secret)
        return replace(self, api_keys=tuple(known))


def _port(raw: object, base: Path) -> int:
    value: int = parse_int(0, "a port number from 0 to 65535 (0 = any free port)")(raw, base)
    if value > 65535:
        raise Invalid("a port number from 0 to 65535 (0 = any free port)")
    return value


def _keys(raw: object, base: Path) -> tuple[Secret, ...]:
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list | tuple) or not all(isinstance(k, str) and k.strip() for k in items):
        raise Invalid("a list of non-empty key strings", show=False)
    return tuple(Secret(k.strip()) for k in items)


def origin_text(value: str) -> str | None:
    """The origin as browsers send it (lower case, no trailing slash), or None when it is not one."""
    text = value.strip().lower().rstrip("/")
    if text == "*":
        return text
    scheme, sep, rest = text.partition("://")
    if not sep or not scheme or not rest or any(c in rest for c in "/?#@ "):
        return None
    return text


def _origins(raw: object, base: Path) -> tuple[str, ...]:
    expected = 'a list of origins such as "http://localhost:3000" (or "*" for any)'
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list | tuple) or not all(isinstance(o, str) for o in items):
        raise Invalid(expected)
    out = tuple(origin_text(o) for o in items)
    if any(o is None for o in out):
        raise Invalid(expected)
    return tuple(o for o in out if o is not None)


_FIELDS: dict[str, Parse] = {
    "host": parse_text,
    "port": _port,
    "api_keys": _keys,
    "requests_per_minute": parse_int(0, "a whole number of requests per minute (0 = no limit)"),
    "max_body_bytes": parse_int(1024, "a number of bytes, at least 1024"),
    "max_upload_bytes": parse_int(1024, "a number of bytes, at least 1024"),
    "max_tokens": parse_int(1, "an integer of at least 1"),
    "max_queue": parse_int(1, "an integer of at least 1"),
    "shutdown_grace_s": parse_float(lambda s: 0 <= s <= 3600, "a number of seconds from 0 to 3600"),
    "launch_on_demand": parse_bool,
    "allowed_origins": _origins,
}


def _value(key: str, raw: object, where: str) -> Any:
    return file_value(_FIELDS[key], raw, Path(), where)


def parse_serve(raw: object, label: str, warnings: list[str]) -> ServeConfig:
    """The [serve] table; ConfigError names the key at fault, unknown keys become warnings."""
    table = as_table(raw, f"{label}: serve", "the API server's settings")
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key in _FIELDS:
            values[key] = _value(key, value, f"{label}: serve.{key}")
        else:
            known = ", ".join(_FIELDS)
            warnings.append(f"{label}: serve: unknown key {key!r} ignored (known keys: {known})")
    return ServeConfig(**values)


def serve_table(config: ServeConfig) -> dict[str, object]:
    """The values that differ from the defaults, as a [serve] table (keys revealed, for the file)."""
    base = ServeConfig()
    out: dict[str, object] = {}
    for f in fields(config):
        value = getattr(config, f.name)
        if value != getattr(base, f.name):
            if f.name == "api_keys":
                value = [k.reveal() for k in value]
            out[f.name] = list(value) if isinstance(value, tuple) else value
    return out
