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
keys_file = "~/.config/llm-tui/keys.toml"  # named keys ([[keys]] entries, see serve_keys.py); must be mode 0600
metrics_without_key = false # serve /metrics (only) without a key, for a Prometheus that cannot send one
access_log = "serve-access.jsonl"  # also write the access log as JSON lines to this file (mode 0600), rotated
access_log_max_bytes = 10485760    # rotate past this size, keeping access_log_backups old files
access_log_backups = 5
root_path = "/llm"          # the prefix a reverse proxy serves the API under
idle_unload_s = 900         # unload a model the server loaded after this many seconds without requests

[[serve.keys]]              # a named key with scopes and limits (engines/config/serve_keys.py)
name = "grafana"
key_env = "GRAFANA_KEY"
scopes = ["metrics"]
```

Without an API key the server answers only requests addressed to a loopback name (Host 127.0.0.1,
localhost or [::1], or the address it is bound to), so a web page whose domain is made to resolve to
127.0.0.1 (DNS rebinding) cannot use it; /healthz follows the same rule.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from engines.config.serve_keys import SCOPES as SCOPES  # part of this module's API
from engines.config.serve_keys import ApiKey as ApiKey  # part of this module's API
from engines.config.serve_keys import key_entry, keys_file_path, parse_keys, read_keys_file, unique
from engines.config.tables import as_table, file_value
from engines.config.values import Invalid, Parse, parse_bool, parse_float, parse_int, parse_text, resolve_path
from engines.errors import ConfigError
from engines.secret import Secret

API_KEY_ENV = "LLM_TUI_API_KEY"
"""Comma-separated API keys for the server, on top of those in the file."""


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
    keys_file: Path | None = None
    """A file of [[keys]] entries, read by with_env (or with_keys_file) into `keys`; must be private (0600)."""
    metrics_without_key: bool = False
    """Serve /metrics (and only it) without a key: for a Prometheus that cannot send a bearer token."""
    access_log: Path | None = None
    """Also write one JSON line per request to this file (mode 0600), rotated past access_log_max_bytes."""
    access_log_max_bytes: int = 10 * 1024 * 1024
    access_log_backups: int = 5

    def with_env(self, env: Mapping[str, str]) -> ServeConfig:
        """Add the keys of LLM_TUI_API_KEY and of keys_file, read each named key's key_env, and take
        LLM_TUI_SERVE_HOST / _PORT over the file's values. ConfigError names a missing variable or a bad keys file."""
        out = self
        if self.keys_file is not None:
            out = out.with_keys_file(self.keys_file, env)
        out = replace(out, keys=tuple(k.resolved(env) for k in out.keys))
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
        """Whether requests need a key (a keys_file not read yet counts: no request gets in, none is let in free)."""
        return bool(self.keys or self.api_keys or self.keys_file is not None)

    def with_keys_file(self, path: str | os.PathLike[str], env: Mapping[str, str]) -> ServeConfig:
        """The keys of this keys file (path "~"-expanded, relative to the working directory) in place of those of an
        earlier one, their key_env read from `env`. ConfigError: missing, open to others, invalid, no keys, or a
        name used twice, or an unknown key in it (read when serving, it has no warnings to show; a misspelled
        limit must not leave a key unlimited)."""
        file = resolve_path(os.fspath(path), Path.cwd())
        warnings: list[str] = []
        read = read_keys_file(file, warnings)
        if warnings:
            raise ConfigError(warnings[0].replace(" ignored", " refused in a keys file", 1))
        if not read:
            raise ConfigError(f"keys file {file}: it holds no [[keys]] entries; add one, or remove keys_file")
        own = tuple(k for k in self.keys if k.keys_file is None)
        return replace(self, keys_file=file, keys=unique([*own, *(k.resolved(env) for k in read)]))

    def with_access_log(self, path: str | os.PathLike[str]) -> ServeConfig:
        """Also write the JSON access log to this file ("~"-expanded, relative to the working directory)."""
        return replace(self, access_log=resolve_path(os.fspath(path), Path.cwd()))

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


_ROOT_PATH = re.compile(r"(/[A-Za-z0-9._~-]+)+")


def _root_path(raw: object, base: Path) -> str:
    expected = 'a path prefix such as "/llm": starting with "/", no trailing "/", letters, digits and ._~-/ only'
    if not isinstance(raw, str) or (raw and (len(raw) > 200 or not _ROOT_PATH.fullmatch(raw))):
        raise Invalid(expected)
    if any(part in (".", "..") for part in raw.split("/")):
        raise Invalid(expected)
    return raw


def _file(raw: object, base: Path) -> Path:
    if not isinstance(raw, str) or not raw.strip():
        raise Invalid("a file path (a non-empty string)")
    return resolve_path(raw.strip(), base)


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
    "metrics_without_key": parse_bool,
    "access_log": _file,
    "access_log_max_bytes": parse_int(1024, "a number of bytes, at least 1024"),
    "access_log_backups": parse_int(1, "a whole number of old files to keep, at least 1"),
    "root_path": _root_path,
    "idle_unload_s": parse_float(lambda v: v > 0, "a positive number of seconds"),
}
_TABLES = ("keys", "keys_file")
"""Keys parsed apart from _FIELDS: [[serve.keys]] and the keys file's path."""


def _value(key: str, raw: object, where: str, base: Path = Path()) -> Any:
    return file_value(_FIELDS[key], raw, base, where)


def parse_serve(raw: object, label: str, warnings: list[str]) -> ServeConfig:
    """The [serve] table; ConfigError names the key at fault, unknown keys become warnings."""
    table = as_table(raw, f"{label}: serve", "the API server's settings")
    base = Path(os.path.abspath(label)).parent  # `label` is the file's path: paths in it are relative to its folder
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key in _FIELDS:
            values[key] = _value(key, value, f"{label}: serve.{key}", base)
        elif key == "keys":
            values[key] = parse_keys(value, f"{label}: serve.keys", warnings)
        elif key == "keys_file":
            values[key] = keys_file_path(value, base, f"{label}: serve.keys_file")
        else:
            known = ", ".join((*_FIELDS, *_TABLES))
            warnings.append(f"{label}: serve: unknown key {key!r} ignored (known keys: {known})")
    return ServeConfig(**values)


def serve_table(config: ServeConfig) -> dict[str, object]:
    """The values that differ from the defaults, as a [serve] table (keys revealed, for the file).

    A named key is written with its key_env when it came from one (never the variable's value); the keys read from
    keys_file stay in that file (only its path is written)."""
    base = ServeConfig()
    out: dict[str, object] = {}
    for f in fields(config):
        value = getattr(config, f.name)
        if value == getattr(base, f.name):
            continue
        if f.name == "api_keys":
            value = [k.reveal() for k in value]
        elif f.name == "keys":
            value = [key_entry(k) for k in value if k.keys_file is None]
            if not value:
                continue
        elif isinstance(value, Path):
            value = str(value)
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out
