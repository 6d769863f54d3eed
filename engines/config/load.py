"""Configuration: built-in defaults < config.toml < environment < command-line flags, merged into one Config.

The config file is the one --config or $LLM_TUI_CONFIG names, else the user's
(platformdirs); a ./config.toml (a checkout's documented defaults) is read
underneath the user's file and never written, so the settings a user saves
land in their own file. Nothing here reads os.environ: callers pass the
environment in. Paths from a config file resolve against that file's folder;
paths from the environment or flags against the working directory. Secrets
stay wrapped in `Secret` so that repr, str and logs never show them.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

import platformdirs
import tomli_w

from engines.atomic import atomic_write
from engines.config.fleet import fleet_table, parse_fleet
from engines.config.mcp import parse_mcp_servers, server_table, shown_server
from engines.config.presets import parse_presets, presets_doc, show_presets
from engines.config.redact import holds_secret as holds_secret  # part of this module's API
from engines.config.redact import plain, redact
from engines.config.serve import ServeConfig, parse_serve, serve_table
from engines.config.tables import RemoteEndpoint as RemoteEndpoint  # part of this module's API
from engines.config.tables import file_value, parse_aliases, parse_defaults, parse_endpoints
from engines.config.values import (
    Invalid,
    Parse,
    parse_bool,
    parse_float,
    parse_int,
    parse_ollama,
    parse_parallel,
    parse_path,
    parse_rate,
    parse_secret,
    parse_speculative,
    parse_text,
    parse_url,
    resolve_path,
)
from engines.errors import ConfigError
from engines.fleet.types import FleetMember
from engines.mcp.types import McpServer
from engines.presets import Preset
from engines.secret import Secret
from engines.types import Params

APP_NAME = "llm-tui"
CONFIG_ENV = "LLM_TUI_CONFIG"
DEFAULT_OLLAMA_HOST = "http://127.0.0.1:11434"


def _empty_mapping() -> Mapping[str, str]:
    return MappingProxyType({})


def _no_presets() -> Mapping[str, Preset]:
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
    parallel: int = 1
    """Requests a llama.cpp model decodes at once (its slots)."""
    speculative: str | None = None
    """Speculative decoding for llama.cpp models: "prompt-lookup" or None (off)."""
    gpu_memory_fraction: float = 0.9
    telemetry_interval_s: float = 1.0
    theme: str = "textual-dark"
    download_concurrency: int = 2
    download_bandwidth_cap: int | None = None
    """Bytes per second over all downloads; None = no cap."""
    downloads_resume_on_start: bool = False
    """Whether downloads interrupted by a quit or crash start again by themselves (else they wait, paused)."""
    aliases: Mapping[str, str] = field(default_factory=_empty_mapping)
    remote_endpoints: tuple[RemoteEndpoint, ...] = ()
    defaults: Params = field(default_factory=Params)
    serve: ServeConfig = field(default_factory=ServeConfig)
    presets: Mapping[str, Preset] = field(default_factory=_no_presets)
    """[presets.NAME] tables by name: a system prompt, parameters, a model (engines.presets)."""
    mcp_servers: tuple[McpServer, ...] = field(default=(), repr=False)
    """[[mcp_servers]]; kept out of repr: their env values may hold keys (redacted() masks them)."""
    fleet: tuple[FleetMember, ...] = ()
    """[[fleet]]: the other hosts the fleet view polls (engines.config.fleet)."""
    source: Path | None = field(default=None, compare=False)
    """The config file of this user's settings that was read, if any: where the settings screen writes."""
    base_source: Path | None = field(default=None, compare=False)
    """A ./config.toml read underneath `source` (a checkout's documented defaults); never written."""
    warnings: tuple[str, ...] = field(default=(), compare=False)
    """Problems that were not fatal, such as unknown keys."""
    origins: Mapping[str, str] = field(default_factory=_empty_mapping, compare=False, repr=False)
    """Where each top-level key came from: "default", "file PATH", "env NAME" or "flag --NAME"."""
    env: Mapping[str, str] = field(default_factory=_empty_mapping, compare=False, repr=False)
    """The environment the configuration was loaded from, for settings that name a variable (an endpoint's
    `api_key_env`): modules read it here, never os.environ. Not shown by redacted(), never written."""

    def __post_init__(self) -> None:
        # Copy into read-only containers so a caller's dict cannot change a frozen Config.
        object.__setattr__(self, "aliases", MappingProxyType(dict(self.aliases)))
        object.__setattr__(self, "origins", MappingProxyType(dict(self.origins)))
        object.__setattr__(self, "remote_endpoints", tuple(self.remote_endpoints))
        object.__setattr__(self, "presets", MappingProxyType(dict(self.presets)))
        object.__setattr__(self, "mcp_servers", tuple(self.mcp_servers))
        object.__setattr__(self, "fleet", tuple(self.fleet))
        object.__setattr__(self, "warnings", tuple(self.warnings))

    @property
    def config_dir(self) -> Path:
        """The folder of the config file in use (the user's config folder when none): catalog.toml lives there."""
        return self.source.parent if self.source is not None else user_config_path().parent

    @property
    def state_dir(self) -> Path:
        """The per-user state folder (XDG_STATE_HOME on Linux): logs such as crash.log live there."""
        return platformdirs.user_state_path(APP_NAME)

    @property
    def db_path(self) -> Path:
        """The SQLite database file."""
        return self.data_dir / "llm-tui.db"

    def redacted(self) -> dict[str, object]:
        """A JSON-ready dict of every setting with secrets shown as ********."""
        out: dict[str, object] = {f.name: redact(getattr(self, f.name)) for f in fields(self) if f.name != "env"}
        out["presets"] = show_presets(self.presets)
        out["mcp_servers"] = [shown_server(s) for s in self.mcp_servers]
        out["fleet"] = [fleet_table(m) for m in self.fleet]
        out["db_path"] = str(self.db_path)
        return out


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
    "parallel": _Key(parse_parallel, ("LLM_TUI_PARALLEL",)),
    "speculative": _Key(parse_speculative, ("LLM_TUI_SPECULATIVE",)),
    "gpu_memory_fraction": _Key(
        parse_float(lambda v: 0 < v <= 1, "a number above 0 and at most 1"), ("LLM_TUI_GPU_MEMORY_FRACTION",)
    ),
    "telemetry_interval_s": _Key(
        parse_float(lambda v: v > 0, "a positive number of seconds"), ("LLM_TUI_TELEMETRY_INTERVAL_S",)
    ),
    "theme": _Key(parse_text, ("LLM_TUI_THEME",)),
    "download_concurrency": _Key(parse_int(1, "an integer of at least 1"), ("LLM_TUI_DOWNLOAD_CONCURRENCY",)),
    "download_bandwidth_cap": _Key(parse_rate, ("LLM_TUI_DOWNLOAD_BANDWIDTH_CAP",)),
    "downloads_resume_on_start": _Key(parse_bool, ("LLM_TUI_DOWNLOADS_RESUME_ON_START",)),
}
SCALAR_KEYS: tuple[str, ...] = tuple(_KEYS)
ENV_VARS: tuple[str, ...] = (CONFIG_ENV, *(name for key in _KEYS.values() for name in key.env))


def flag_name(key: str) -> str:
    """The command-line option that sets a config key, as named in error messages."""
    return _KEYS[key].flag or "--" + key.replace("_", "-")


def _text_value(parse: Parse, raw: object, base: Path, source: str) -> Any:
    """Parse one value from the environment or a flag; `source` names the variable or option."""
    try:
        return parse(raw, base)
    except Invalid as exc:
        got = f", got {raw!r}" if exc.show else ""
        raise ConfigError(f"{source}: must be {exc.expected}{got}") from None


# --- the file schema: scalars, [aliases], [[remote_endpoints]], [defaults], [serve], [[fleet]] ---


def _parse_document(doc: Mapping[str, object], label: str, base: Path, warnings: list[str]) -> dict[str, Any]:
    """Validate a parsed TOML document; return values by key and add non-fatal problems to `warnings`."""
    values: dict[str, Any] = {}
    for key, raw in doc.items():
        if key in _KEYS:
            values[key] = file_value(_KEYS[key].parse, raw, base, f"{label}: {key}")
        elif key == "aliases":
            values[key] = parse_aliases(raw, label)
        elif key == "remote_endpoints":
            values[key] = parse_endpoints(raw, label, warnings)
        elif key == "defaults":
            values[key] = parse_defaults(raw, label, warnings)
        elif key == "serve":
            values[key] = parse_serve(raw, label, warnings)
        elif key == "presets":
            values[key] = parse_presets(raw, label, warnings)
        elif key == "mcp_servers":
            values[key] = parse_mcp_servers(raw, label, warnings)
        elif key == "fleet":
            values[key] = parse_fleet(raw, label, warnings)
        else:
            warnings.append(f"{label}: unknown key {key!r} ignored")
    return values


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


class ConfigFiles(NamedTuple):
    """The files a configuration is read from: the user's settings (`own`) over read-only defaults (`base`)."""

    own: Path | None
    """--config, else $LLM_TUI_CONFIG, else the user's file when it exists: where changes are written."""
    base: Path | None
    """./config.toml when no file was named: read underneath `own`, never written (a checkout's defaults)."""


def find_config_files(path: str | os.PathLike[str] | None, *, env: Mapping[str, str], cwd: Path) -> ConfigFiles:
    """The config files to read: the one --config or $LLM_TUI_CONFIG names alone, else the user's over ./config.toml.

    Raises ConfigError when a named file does not exist.
    """
    if path is not None:
        given = resolve_path(os.fspath(path), cwd)
        if not given.exists():
            raise ConfigError(f"--config: config file not found: {given}")
        return ConfigFiles(given, None)
    from_env = env.get(CONFIG_ENV, "").strip()
    if from_env:
        named = resolve_path(from_env, cwd)
        if not named.exists():
            raise ConfigError(f"{CONFIG_ENV}: config file not found: {named}")
        return ConfigFiles(named, None)
    user = Path(os.path.abspath(user_config_path()))
    local = Path(os.path.abspath(cwd / "config.toml"))
    return ConfigFiles(user if user.is_file() else None, local if local.is_file() and local != user else None)


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str],
    overrides: Mapping[str, object] | None = None,
    cwd: Path | None = None,
    base: Path | None = None,
) -> Config:
    """Merge defaults, the config files, `env` and flag `overrides` (None = not given) into a Config.

    `base` is read underneath `path` (a reload keeps the files the first load found); without `path`
    both are found by find_config_files. Raises ConfigError naming the file and key, variable or option at fault.
    """
    here = Path(os.path.abspath(cwd if cwd is not None else Path.cwd()))
    files = find_config_files(path, env=env, cwd=here)
    source, below = files.own, base if path is not None else files.base
    warnings: list[str] = []
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for file in (below, source):
        if file is not None:
            document = _read_toml(file)
            layer = _parse_document(document, str(file), file.parent, warnings)
            values = _layered(values, layer, document)
            origins.update(dict.fromkeys(layer, f"file {file}"))
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
    all_keys = (*_KEYS, "aliases", "remote_endpoints", "defaults", "serve", "presets", "mcp_servers", "fleet")
    return Config(
        models_dir=models_dir,
        data_dir=data_dir,
        cache_dir=cache_dir,
        source=source,
        base_source=below,
        warnings=tuple(warnings),
        origins={key: origins.get(key, "default") for key in all_keys},
        env=env,
        **values,
    )


def _layered(below: dict[str, Any], top: dict[str, Any], document: Mapping[str, object]) -> dict[str, Any]:
    """`top`'s values over `below`'s: the aliases and presets merge by name, [defaults] and [serve] key by key, the
    rest is replaced."""
    merged = dict(below)
    for key, value in top.items():
        under = below.get(key)
        table = document.get(key)
        if key in ("aliases", "presets") and under:
            merged[key] = {**under, **value}
        elif key in ("defaults", "serve") and under is not None and isinstance(table, Mapping):
            names = {f.name for f in fields(value)}
            merged[key] = replace(under, **{name: getattr(value, name) for name in table if name in names})
        else:
            merged[key] = value
    return merged


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
        out[key] = plain(value)
    if config.aliases or include_defaults:
        out["aliases"] = dict(config.aliases)
    if config.remote_endpoints:
        out["remote_endpoints"] = [plain(e) for e in config.remote_endpoints]
    if config.defaults != Params() or include_defaults:
        out["defaults"] = plain(config.defaults)
    if serve := serve_table(config.serve):
        out["serve"] = serve
    if config.presets:
        out["presets"] = presets_doc(config.presets)
    if config.mcp_servers:
        out["mcp_servers"] = [server_table(s) for s in config.mcp_servers]
    if config.fleet:
        out["fleet"] = [fleet_table(m) for m in config.fleet]
    return out


def check_document(document: Mapping[str, object], path: Path) -> None:
    """Raise ConfigError naming the key when `document` (a parsed config file) holds an invalid value."""
    _parse_document(plain(document), str(path), Path(os.path.abspath(path)).parent, [])


def save_config(values: Mapping[str, object], path: Path) -> None:
    """Validate `values` and write them to `path` as TOML, atomically; mode 0600 when a secret is in them.

    Raises ConfigError for an invalid value (nothing is written then).
    """
    check_document(values, path)
    atomic_write(path, tomli_w.dumps(plain(values)).encode(), private=holds_secret(values))
