"""Named API keys for the server: `[[serve.keys]]` in config.toml, or the same `[[keys]]` entries in a keys file.

```toml
[serve]
keys_file = "~/.config/llm-tui/keys.toml"   # optional; refused when group or others may read or write it

[[serve.keys]]
name = "grafana"            # letters, digits, "_", "." and "-", up to 64; unique (key-1, key-2... are api_keys')
key_env = "GRAFANA_KEY"     # the variable that holds the key; or key = "sk-..." (the file is then written 0600)
scopes = ["metrics"]        # infer (the OpenAI routes), metrics (/metrics, status), admin (everything)
requests_per_minute = 60    # optional: this key's own limit instead of [serve] requests_per_minute
tokens_per_minute = 100000  # optional: prompt + completion tokens a minute (0 = no limit)
```

A key named by `key_env` is read from the environment by `ServeConfig.with_env` (nothing here reads os.environ);
until then its secret is empty and no request can match it.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from engines.config.tables import as_table, file_value, show_value
from engines.config.values import parse_int, parse_secret, parse_text
from engines.errors import ConfigError
from engines.secret import MASK, Secret

SCOPES = ("infer", "metrics", "admin")
"""infer: the OpenAI routes; metrics: /metrics and the status document; admin: everything, launching and stopping
instances included."""

NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_RESERVED_RE = re.compile(r"key-[0-9]+")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ENTRY_KEYS = ("name", "key", "key_env", "scopes", "requests_per_minute", "tokens_per_minute")


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
    key_env: str | None = None
    """The environment variable that holds the secret (read by ServeConfig.with_env); saved instead of the key."""
    keys_file: Path | None = None
    """The keys file this key was read from (None: config.toml itself); such keys are never written to config.toml."""
    where: str = field(default="", compare=False, repr=False)
    """Where it was defined ("PATH: serve.keys[0]"), for error messages."""

    def allows(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes

    @property
    def usable(self) -> bool:
        """Whether it has a secret to compare against (a key_env key has one once the environment was read)."""
        return bool(self.secret.reveal())

    def resolved(self, env: Mapping[str, str]) -> ApiKey:
        """This key with its secret read from `env` when it names a variable; ConfigError naming it when unset."""
        if self.key_env is None:
            return self
        value = env.get(self.key_env, "").strip()
        if not value:
            where = self.where or f"serve.keys {self.name!r}"
            raise ConfigError(
                f"{where}.key_env: the environment variable {self.key_env} (the key named {self.name!r}) is not "
                "set or empty: set it, or remove the key"
            )
        return replace(self, secret=Secret(value))


def _scopes(raw: object, where: str) -> frozenset[str]:
    expected = f"a non-empty list of scopes from {', '.join(SCOPES)}"
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list | tuple) or not items or not all(isinstance(s, str) for s in items):
        raise ConfigError(f"{where} must be {expected}, got {show_value(raw)}")
    unknown = [s for s in items if s not in SCOPES]
    if unknown:
        raise ConfigError(f"{where}: unknown scope {unknown[0]!r}; the scopes are {', '.join(SCOPES)}")
    return frozenset(items)


def _entry(raw: object, where: str, keys_file: Path | None, warnings: list[str]) -> ApiKey:
    table = as_table(raw, where, "name, key or key_env, scopes, requests_per_minute, tokens_per_minute")
    for key in table:
        if key not in _ENTRY_KEYS:
            warnings.append(f"{where}: unknown key {key!r} ignored (known keys: {', '.join(_ENTRY_KEYS)})")
    for key in ("name", "scopes"):
        if key not in table:
            raise ConfigError(f"{where}: {key} is required")
    name = table["name"]
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ConfigError(f"{where}.name must be 1 to 64 letters, digits, '_', '.' or '-', got {show_value(name)}")
    if _RESERVED_RE.fullmatch(name):
        raise ConfigError(f"{where}.name: {name!r} is reserved for the keys of api_keys; choose another name")
    has_key, has_env = "key" in table, "key_env" in table
    if has_key == has_env:
        raise ConfigError(f"{where}: give either key or key_env (the variable that holds the key), not both or none")
    env_name = table.get("key_env")
    if has_env and (not isinstance(env_name, str) or not _ENV_NAME.fullmatch(env_name)):
        raise ConfigError(f"{where}.key_env must be an environment variable name, got {show_value(env_name)}")
    key_env = env_name if isinstance(env_name, str) else None
    rpm = table.get("requests_per_minute", 0)
    tpm = table.get("tokens_per_minute", 0)
    return ApiKey(
        name=name,
        secret=file_value(parse_secret, table["key"], Path(), f"{where}.key") if has_key else Secret(""),
        scopes=_scopes(table["scopes"], f"{where}.scopes"),
        requests_per_minute=file_value(
            parse_int(0, "a whole number of requests per minute (0 = the server's limit)"),
            rpm,
            Path(),
            f"{where}.requests_per_minute",
        ),
        tokens_per_minute=file_value(
            parse_int(0, "a whole number of tokens per minute (0 = no limit)"),
            tpm,
            Path(),
            f"{where}.tokens_per_minute",
        ),
        key_env=key_env,
        keys_file=keys_file,
        where=where,
    )


def parse_keys(raw: object, where: str, warnings: list[str], keys_file: Path | None = None) -> tuple[ApiKey, ...]:
    """An array of key tables (`where` is "PATH: serve.keys"); ConfigError names the entry and key at fault."""
    if not isinstance(raw, list | tuple):
        raise ConfigError(f"{where} must be an array of tables ([[keys]] entries), got {show_value(raw)}")
    return unique([_entry(item, f"{where}[{i}]", keys_file, warnings) for i, item in enumerate(raw)])


def unique(keys: Sequence[ApiKey]) -> tuple[ApiKey, ...]:
    """`keys` when every name is used once; ConfigError naming the second use otherwise."""
    seen: dict[str, ApiKey] = {}
    for key in keys:
        if key.name in seen:
            first = seen[key.name].where or "another key"
            where = key.where or "serve.keys"
            raise ConfigError(f"{where}.name: {key.name!r} is already the name of {first}; names must be unique")
        seen[key.name] = key
    return tuple(keys)


def keys_file_path(raw: object, base: Path, where: str) -> Path:
    """The keys file a config value names ("~" expanded, relative to `base`)."""
    text = file_value(parse_text, raw, base, where)
    return Path(os.path.abspath(base / Path(text).expanduser()))


def read_keys_file(path: Path, warnings: list[str]) -> tuple[ApiKey, ...]:
    """The `[[keys]]` of a keys file; ConfigError when it is missing, unreadable, not TOML or open to others."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"keys file {path}: not found") from None
    except OSError as exc:
        raise ConfigError(f"keys file {path}: cannot read it: {exc.strerror or exc}") from None
    mode = stat.S_IMODE(info.st_mode)
    if os.name == "posix" and mode & 0o077:
        raise ConfigError(
            f"keys file {path}: group or others may read or write it (mode {mode:04o}); it holds keys, so it must be "
            f"private: chmod 600 {path}"
        )
    try:
        with path.open("rb") as f:
            document = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"keys file {path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"keys file {path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"keys file {path}: cannot read it: {exc.strerror or exc}") from None
    for key in document:
        if key != "keys":
            warnings.append(f"{path}: unknown key {key!r} ignored (a keys file holds [[keys]] entries)")
    return parse_keys(document.get("keys", []), f"{path}: keys", warnings, keys_file=path)


def key_entry(key: ApiKey) -> dict[str, object]:
    """A key as a `[[serve.keys]]` table: the variable's name when it came from one, never its value."""
    out: dict[str, object] = {"name": key.name}
    if key.key_env is not None:
        out["key_env"] = key.key_env
    else:
        out["key"] = key.secret.reveal()
    out["scopes"] = [s for s in SCOPES if s in key.scopes]
    if key.requests_per_minute:
        out["requests_per_minute"] = key.requests_per_minute
    if key.tokens_per_minute:
        out["tokens_per_minute"] = key.tokens_per_minute
    return out


def shown_key(key: ApiKey) -> dict[str, object]:
    """A key for display: the secret masked, the rest as written."""
    return {
        "name": key.name,
        "key": MASK,
        "key_env": key.key_env,
        "scopes": [s for s in SCOPES if s in key.scopes],
        "requests_per_minute": key.requests_per_minute,
        "tokens_per_minute": key.tokens_per_minute,
        "keys_file": None if key.keys_file is None else str(key.keys_file),
    }
