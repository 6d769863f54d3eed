"""Configuration: built-in defaults < config.toml < environment < command-line flags, merged into one Config.

Nothing here reads os.environ: callers pass the environment in. Paths from a
config file resolve against that file's folder; paths from the environment or
flags against the working directory. Secrets stay wrapped in `Secret` so that
repr, str and logs never show them.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

import platformdirs
import tomli_w

from engines.atomic import atomic_write
from engines.config_values import (
    Invalid,
    Parse,
    parse_float,
    parse_int,
    parse_ollama,
    parse_path,
    parse_secret,
    parse_text,
    parse_url,
    resolve_path,
)
from engines.errors import BadRequest, ConfigError
from engines.secret import MASK, Secret
from engines.types import Params

APP_NAME = "llm-tui"
CONFIG_ENV = "LLM_TUI_CONFIG"
DEFAULT_OLLAMA_HOST = "http://127.0.0.1:11434"


@dataclass(frozen=True, slots=True)
class RemoteEndpoint:
    """An OpenAI-compatible server (vLLM, llama-server, another llm-tui serve...)."""

    name: str
    url: str
    api_key_env: str | None = None
    """Name of the environment variable that holds the key."""
    api_key: Secret | None = None
    """A key written in the file itself (the file is then saved with mode 0600)."""

    def resolve_api_key(self, env: Mapping[str, str]) -> Secret | None:
        """The key from the file, else from the variable api_key_env names in `env`, else None."""
        if self.api_key is not None:
            return self.api_key
        value = env.get(self.api_key_env, "").strip() if self.api_key_env else ""
        return Secret(value) if value else None


def _empty_mapping() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Config:
    """The effective configuration; build it with load_config()."""

    models_dir: Path
    data_dir: Path
    cache_dir: Path
    hf_token: Secret | None = None
    hf_endpoint: str | None = None
    ollama_host: str = DEFAULT_OLLAMA_HOST
    n_ctx: int = 4096
    n_threads: int | None = None
    n_gpu_layers: int = 0
    gpu_memory_fraction: float = 0.9
    telemetry_interval_s: float = 1.0
    theme: str = "textual-dark"
    aliases: Mapping[str, str] = field(default_factory=_empty_mapping)
    remote_endpoints: tuple[RemoteEndpoint, ...] = ()
    defaults: Params = field(default_factory=Params)
    source: Path | None = field(default=None, compare=False)
    """The config file that was read, if any."""
    warnings: tuple[str, ...] = field(default=(), compare=False)
    """Problems that were not fatal, such as unknown keys."""
    origins: Mapping[str, str] = field(default_factory=_empty_mapping, compare=False, repr=False)
    """Where each top-level key came from: "default", "file PATH", "env NAME" or "flag --NAME"."""

    def __post_init__(self) -> None:
        # Copy into read-only containers so a caller's dict cannot change a frozen Config.
        object.__setattr__(self, "aliases", MappingProxyType(dict(self.aliases)))
        object.__setattr__(self, "origins", MappingProxyType(dict(self.origins)))
        object.__setattr__(self, "remote_endpoints", tuple(self.remote_endpoints))
        object.__setattr__(self, "warnings", tuple(self.warnings))

    @property
    def config_dir(self) -> Path:
        """The folder of the config file in use (the user's config folder when none): catalog.toml lives there."""
        return self.source.parent if self.source is not None else user_config_path().parent

    @property
    def db_path(self) -> Path:
        """The SQLite database file."""
        return self.data_dir / "llm-tui.db"

    def redacted(self) -> dict[str, object]:
        """A JSON-ready dict of every setting with secrets shown as ********."""
        out: dict[str, object] = {f.name: _redact(getattr(self, f.name)) for f in fields(self)}
        out["db_path"] = str(self.db_path)
        return out


def _redact(value: object) -> object:
    if isinstance(value, Secret):
        return MASK
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _redact(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_redact(v) for v in value]
    if isinstance(value, RemoteEndpoint | Params):
        return {f.name: _redact(getattr(value, f.name)) for f in fields(value)}
    return value


def user_config_path() -> Path:
    """The per-user config file (XDG_CONFIG_HOME on Linux), whether it exists or not."""
    return platformdirs.user_config_path(APP_NAME) / "config.toml"


def default_config() -> Config:
    """The built-in defaults, with platformdirs' data and cache folders."""
    data_dir = platformdirs.user_data_path(APP_NAME)
    return Config(models_dir=data_dir / "models", data_dir=data_dir, cache_dir=platformdirs.user_cache_path(APP_NAME))


@dataclass(frozen=True, slots=True)
class _Key:
    parse: Parse
    env: tuple[str, ...] = ()
    flag: str = ""


_KEYS: dict[str, _Key] = {
    "models_dir": _Key(parse_path, ("LLM_TUI_MODELS_DIR",)),
    "data_dir": _Key(parse_path, ("LLM_TUI_DATA_DIR",)),
    "cache_dir": _Key(parse_path, ("LLM_TUI_CACHE_DIR",)),
    "hf_token": _Key(parse_secret, ("LLM_TUI_HF_TOKEN", "HF_TOKEN")),
    "hf_endpoint": _Key(parse_url, ("LLM_TUI_HF_ENDPOINT", "HF_ENDPOINT")),
    "ollama_host": _Key(parse_ollama, ("LLM_TUI_OLLAMA_HOST", "OLLAMA_HOST")),
    "n_ctx": _Key(parse_int(16, "an integer of at least 16"), ("LLM_TUI_N_CTX",)),
    "n_threads": _Key(parse_int(1, 'a positive integer or "auto"', auto=True), ("LLM_TUI_N_THREADS",), "--threads"),
    "n_gpu_layers": _Key(parse_int(-1, "an integer of at least -1 (-1 = all layers)"), ("LLM_TUI_N_GPU_LAYERS",)),
    "gpu_memory_fraction": _Key(
        parse_float(lambda v: 0 < v <= 1, "a number above 0 and at most 1"), ("LLM_TUI_GPU_MEMORY_FRACTION",)
    ),
    "telemetry_interval_s": _Key(
        parse_float(lambda v: v > 0, "a positive number of seconds"), ("LLM_TUI_TELEMETRY_INTERVAL_S",)
    ),
    "theme": _Key(parse_text, ("LLM_TUI_THEME",)),
}
SCALAR_KEYS: tuple[str, ...] = tuple(_KEYS)
ENV_VARS: tuple[str, ...] = (CONFIG_ENV, *(name for key in _KEYS.values() for name in key.env))


def flag_name(key: str) -> str:
    """The command-line option that sets a config key, as named in error messages."""
    return _KEYS[key].flag or "--" + key.replace("_", "-")


def _show(raw: object) -> str:
    text = json.dumps(raw) if isinstance(raw, str | bool) else repr(raw)
    return text if len(text) <= 80 else text[:77] + "..."


def _file_value(parse: Parse, raw: object, base: Path, where: str) -> Any:
    """Parse one value from a file; `where` is "PATH: key"."""
    try:
        return parse(raw, base)
    except Invalid as exc:
        got = f", got {_show(raw)}" if exc.show else ""
        raise ConfigError(f"{where} must be {exc.expected}{got}") from None


def _text_value(parse: Parse, raw: object, base: Path, source: str) -> Any:
    """Parse one value from the environment or a flag; `source` names the variable or option."""
    try:
        return parse(raw, base)
    except Invalid as exc:
        got = f", got {raw!r}" if exc.show else ""
        raise ConfigError(f"{source}: must be {exc.expected}{got}") from None


# --- the file schema: scalars, [aliases], [[remote_endpoints]], [defaults] ---

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PARAMS: dict[str, Parse] = {
    "temperature": parse_float(lambda v: True, "a number"),
    "top_p": parse_float(lambda v: True, "a number"),
    "top_k": parse_int(None, "an integer"),
    "repetition_penalty": parse_float(lambda v: True, "a number"),
    "max_tokens": parse_int(None, "an integer"),
    "seed": parse_int(None, "an integer"),
}


def _parse_document(doc: Mapping[str, object], label: str, base: Path, warnings: list[str]) -> dict[str, Any]:
    """Validate a parsed TOML document; return values by key and add non-fatal problems to `warnings`."""
    values: dict[str, Any] = {}
    for key, raw in doc.items():
        if key in _KEYS:
            values[key] = _file_value(_KEYS[key].parse, raw, base, f"{label}: {key}")
        elif key == "aliases":
            values[key] = _parse_aliases(raw, label)
        elif key == "remote_endpoints":
            values[key] = _parse_endpoints(raw, label, warnings)
        elif key == "defaults":
            values[key] = _parse_defaults(raw, label, warnings)
        else:
            warnings.append(f"{label}: unknown key {key!r} ignored")
    return values


def _table(raw: object, where: str, what: str) -> Mapping[str, object]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a table ({what}), got {_show(raw)}")
    return raw


def _parse_aliases(raw: object, label: str) -> dict[str, str]:
    table = _table(raw, f"{label}: aliases", 'name = "model reference"')
    out: dict[str, str] = {}
    for name, ref in table.items():
        if not name.strip():
            raise ConfigError(f"{label}: aliases: an alias name must not be empty")
        out[name] = _file_value(parse_text, ref, Path(), f"{label}: aliases.{name}")
    return out


def _parse_endpoints(raw: object, label: str, warnings: list[str]) -> tuple[RemoteEndpoint, ...]:
    if not isinstance(raw, list | tuple):
        raise ConfigError(f"{label}: remote_endpoints must be an array of tables ([[remote_endpoints]])")
    out: list[RemoteEndpoint] = []
    for i, item in enumerate(raw):
        where = f"{label}: remote_endpoints[{i}]"
        table = _table(item, where, "name, url, api_key_env, api_key")
        for key in table:
            if key not in ("name", "url", "api_key_env", "api_key"):
                warnings.append(f"{where}: unknown key {key!r} ignored")
        for key in ("name", "url"):
            if key not in table:
                raise ConfigError(f"{where}: {key} is required")
        name = _file_value(parse_text, table["name"], Path(), f"{where}.name")
        if any(e.name == name for e in out):
            raise ConfigError(f"{where}.name: {name!r} is used by another endpoint; names must be unique")
        env_name = table.get("api_key_env")
        if env_name is not None and (not isinstance(env_name, str) or not _ENV_NAME.match(env_name)):
            raise ConfigError(f"{where}.api_key_env must be an environment variable name, got {_show(env_name)}")
        api_key = table.get("api_key")
        out.append(
            RemoteEndpoint(
                name=name,
                url=_file_value(parse_url, table["url"], Path(), f"{where}.url"),
                api_key_env=env_name,
                api_key=None if api_key is None else _file_value(parse_secret, api_key, Path(), f"{where}.api_key"),
            )
        )
    return tuple(out)


def _parse_defaults(raw: object, label: str, warnings: list[str]) -> Params:
    table = _table(raw, f"{label}: defaults", "default sampling parameters")
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        where = f"{label}: defaults.{key}"
        if key in _PARAMS:
            kwargs[key] = _file_value(_PARAMS[key], value, Path(), where)
        elif key == "stop":
            stops = [value] if isinstance(value, str) else value
            if not isinstance(stops, list | tuple) or not all(isinstance(s, str) for s in stops):
                raise ConfigError(f"{where} must be a list of strings, got {_show(value)}")
            kwargs[key] = tuple(stops)
        else:
            warnings.append(f"{label}: defaults: unknown key {key!r} ignored")
    params = Params(**kwargs)
    try:
        params.validate()
    except BadRequest as exc:
        raise ConfigError(f"{label}: defaults: {exc}") from None
    return params


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc


# --- loading ---


def find_config_file(path: str | os.PathLike[str] | None, *, env: Mapping[str, str], cwd: Path) -> Path | None:
    """The config file to read: --config, else $LLM_TUI_CONFIG, else ./config.toml, else the user's; or None."""
    if path is not None:
        given = resolve_path(os.fspath(path), cwd)
        if not given.exists():
            raise ConfigError(f"--config: config file not found: {given}")
        return given
    from_env = env.get(CONFIG_ENV, "").strip()
    if from_env:
        named = resolve_path(from_env, cwd)
        if not named.exists():
            raise ConfigError(f"{CONFIG_ENV}: config file not found: {named}")
        return named
    for candidate in (cwd / "config.toml", user_config_path()):
        if candidate.is_file():
            return Path(os.path.abspath(candidate))
    return None


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str],
    overrides: Mapping[str, object] | None = None,
    cwd: Path | None = None,
) -> Config:
    """Merge defaults, the config file, `env` and flag `overrides` (None = not given) into a Config.

    Raises ConfigError naming the file and key, variable or option at fault.
    """
    here = Path(os.path.abspath(cwd if cwd is not None else Path.cwd()))
    source = find_config_file(path, env=env, cwd=here)
    warnings: list[str] = []
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    if source is not None:
        values = _parse_document(_read_toml(source), str(source), source.parent, warnings)
        origins = dict.fromkeys(values, f"file {source}")
    for key, spec in _KEYS.items():
        for var in spec.env:
            text = env.get(var, "")
            if text.strip():  # an empty variable counts as unset
                values[key] = _text_value(spec.parse, text, here, var)
                origins[key] = f"env {var}"
                break
    for key, raw in (overrides or {}).items():
        if raw is None:
            continue
        if key not in _KEYS:
            raise ValueError(f"{key!r} cannot be set from the command line; keys: {', '.join(_KEYS)}")
        values[key] = _text_value(_KEYS[key].parse, raw, here, flag_name(key))
        origins[key] = f"flag {flag_name(key)}"
    data_dir = values.pop("data_dir", None) or platformdirs.user_data_path(APP_NAME)
    cache_dir = values.pop("cache_dir", None) or platformdirs.user_cache_path(APP_NAME)
    models_dir = values.pop("models_dir", None) or data_dir / "models"
    all_keys = (*_KEYS, "aliases", "remote_endpoints", "defaults")
    return Config(
        models_dir=models_dir,
        data_dir=data_dir,
        cache_dir=cache_dir,
        source=source,
        warnings=tuple(warnings),
        origins={key: origins.get(key, "default") for key in all_keys},
        **values,
    )


# --- saving ---


def config_to_toml_dict(config: Config, *, include_defaults: bool = False) -> dict[str, object]:
    """The TOML document that loads back into `config` (secrets revealed, paths absolute).

    Values equal to the built-in defaults are left out unless include_defaults;
    None values are always left out (TOML has no null).
    """
    base = default_config()
    out: dict[str, object] = {}
    for key in _KEYS:
        value = getattr(config, key)
        default = config.data_dir / "models" if key == "models_dir" else getattr(base, key)
        if value is None or (value == default and not include_defaults):
            continue
        out[key] = _plain(value)
    if config.aliases or include_defaults:
        out["aliases"] = dict(config.aliases)
    if config.remote_endpoints:
        out["remote_endpoints"] = [_plain(e) for e in config.remote_endpoints]
    if config.defaults != Params() or include_defaults:
        out["defaults"] = _plain(config.defaults)
    return out


def _plain(value: object) -> Any:
    """TOML-ready form: secrets revealed, paths as text, None dropped."""
    if isinstance(value, Secret):
        return value.reveal()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, RemoteEndpoint | Params):
        value = {f.name: getattr(value, f.name) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items() if v is not None and v != ()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def holds_secret(value: object, key: str = "") -> bool:
    """Whether a config value or document holds a token or key (its file must then be 0600)."""
    if isinstance(value, Secret) or (key in ("hf_token", "api_key") and value):
        return True
    if isinstance(value, RemoteEndpoint):
        return value.api_key is not None
    if isinstance(value, Mapping):
        return any(holds_secret(v, str(k)) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(holds_secret(v) for v in value)
    return False


def check_document(document: Mapping[str, object], path: Path) -> None:
    """Raise ConfigError naming the key when `document` (a parsed config file) holds an invalid value."""
    _parse_document(_plain(document), str(path), Path(os.path.abspath(path)).parent, [])


def save_config(values: Mapping[str, object], path: Path) -> None:
    """Validate `values` and write them to `path` as TOML, atomically; mode 0600 when a secret is in them.

    Raises ConfigError for an invalid value (nothing is written then).
    """
    check_document(values, path)
    atomic_write(path, tomli_w.dumps(_plain(values)).encode(), private=holds_secret(values))
