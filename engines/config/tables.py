"""The tables of a config file: [aliases], [[remote_endpoints]], [defaults]; and how a bad value is reported.

[presets.NAME] is in engines.config.presets, [[mcp_servers]] in engines.config.mcp, [serve] in engines.config.serve.

`engines.config.load` merges the scalar keys and calls these for the tables; each
raises ConfigError naming the file and the key at fault.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engines.config.values import Invalid, Parse, parse_float, parse_int, parse_secret, parse_text, parse_url
from engines.errors import BadRequest, ConfigError
from engines.secret import Secret
from engines.types import Params


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


def show_value(raw: object) -> str:
    text = json.dumps(raw) if isinstance(raw, str | bool) else repr(raw)
    return text if len(text) <= 80 else text[:77] + "..."


def file_value(parse: Parse, raw: object, base: Path, where: str) -> Any:
    """Parse one value from a file; `where` is "PATH: key"."""
    try:
        return parse(raw, base)
    except Invalid as exc:
        got = f", got {show_value(raw)}" if exc.show else ""
        raise ConfigError(f"{where} must be {exc.expected}{got}") from None


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PARAMS: dict[str, Parse] = {
    "temperature": parse_float(lambda v: True, "a number"),
    "top_p": parse_float(lambda v: True, "a number"),
    "top_k": parse_int(None, "an integer"),
    "repetition_penalty": parse_float(lambda v: True, "a number"),
    "max_tokens": parse_int(None, "an integer"),
    "seed": parse_int(None, "an integer"),
}


def as_table(raw: object, where: str, what: str) -> Mapping[str, object]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a table ({what}), got {show_value(raw)}")
    return raw


def parse_aliases(raw: object, label: str) -> dict[str, str]:
    table = as_table(raw, f"{label}: aliases", 'name = "model reference"')
    out: dict[str, str] = {}
    for name, ref in table.items():
        if not name.strip():
            raise ConfigError(f"{label}: aliases: an alias name must not be empty")
        out[name] = file_value(parse_text, ref, Path(), f"{label}: aliases.{name}")
    return out


def parse_endpoints(raw: object, label: str, warnings: list[str]) -> tuple[RemoteEndpoint, ...]:
    if not isinstance(raw, list | tuple):
        raise ConfigError(f"{label}: remote_endpoints must be an array of tables ([[remote_endpoints]])")
    out: list[RemoteEndpoint] = []
    for i, item in enumerate(raw):
        where = f"{label}: remote_endpoints[{i}]"
        table = as_table(item, where, "name, url, api_key_env, api_key")
        for key in table:
            if key not in ("name", "url", "api_key_env", "api_key"):
                warnings.append(f"{where}: unknown key {key!r} ignored")
        for key in ("name", "url"):
            if key not in table:
                raise ConfigError(f"{where}: {key} is required")
        name = file_value(parse_text, table["name"], Path(), f"{where}.name")
        if any(e.name == name for e in out):
            raise ConfigError(f"{where}.name: {name!r} is used by another endpoint; names must be unique")
        env_name = table.get("api_key_env")
        if env_name is not None and (not isinstance(env_name, str) or not _ENV_NAME.match(env_name)):
            raise ConfigError(f"{where}.api_key_env must be an environment variable name, got {show_value(env_name)}")
        api_key = table.get("api_key")
        out.append(
            RemoteEndpoint(
                name=name,
                url=file_value(parse_url, table["url"], Path(), f"{where}.url"),
                api_key_env=env_name,
                api_key=None if api_key is None else file_value(parse_secret, api_key, Path(), f"{where}.api_key"),
            )
        )
    return tuple(out)


PARAM_KEYS: tuple[str, ...] = (*_PARAMS, "stop")
"""The sampling parameters a table of the file may set ([defaults], [presets.NAME])."""


def param_value(key: str, value: object, where: str) -> Any:
    """One sampling parameter (a key of PARAM_KEYS) from the file; `where` is "PATH: table.key"."""
    if key != "stop":
        return file_value(_PARAMS[key], value, Path(), where)
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list | tuple) or not all(isinstance(s, str) for s in stops):
        raise ConfigError(f"{where} must be a list of strings, got {show_value(value)}")
    return tuple(stops)


def checked_params(kwargs: Mapping[str, Any], where: str) -> Params:
    """Params from parsed values, checked as a request's would be; ConfigError names `where` ("PATH: table")."""
    params = Params(**kwargs)
    try:
        params.validate()
    except BadRequest as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return params


def parse_defaults(raw: object, label: str, warnings: list[str]) -> Params:
    table = as_table(raw, f"{label}: defaults", "default sampling parameters")
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        if key in PARAM_KEYS:
            kwargs[key] = param_value(key, value, f"{label}: defaults.{key}")
        else:
            warnings.append(f"{label}: defaults: unknown key {key!r} ignored")
    return checked_params(kwargs, f"{label}: defaults")
