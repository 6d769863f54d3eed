"""The [[mcp_servers]] entries of config.toml: MCP servers whose tools the chat may offer the model.

```toml
[[mcp_servers]]
name = "files"                                  # unique; the model sees its tools as files__TOOL
command = "npx"                                 # a program run over stdio ...
args = ["-y", "@modelcontextprotocol/server-filesystem", "/home/me/notes"]
env = { NOTES_TOKEN = "..." }                   # added to the server's environment (the file is then 0600)
trusted = ["read_file", "list_directory"]       # tools that run without asking; "*" = all of them
timeout_s = 30                                  # one tool call (and the start) at most

[[mcp_servers]]
name = "search"
url = "http://127.0.0.1:8000/mcp"               # ... or a streamable-HTTP endpoint (exactly one of the two)
```
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from engines.config.tables import as_table, file_value, show_value
from engines.config.values import Invalid, parse_float, parse_text, parse_url
from engines.errors import ConfigError
from engines.mcp.types import McpServer
from engines.secret import MASK

KEYS = ("name", "command", "url", "args", "env", "trusted", "timeout_s")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SERVER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
"""Letters, digits, _ and - : the name prefixes its tools' names (`files__read_file`), which models accept."""
_timeout = parse_float(lambda v: v > 0, "a positive number of seconds")
_DEFAULT_TIMEOUT_S = McpServer(name="-").timeout_s


def _strings(raw: object, base: Path) -> tuple[str, ...]:
    if not isinstance(raw, list | tuple) or not all(isinstance(s, str) for s in raw):
        raise Invalid("a list of strings")
    return tuple(raw)


def _trusted(raw: object, base: Path) -> tuple[str, ...]:
    items = [raw] if raw == "*" else raw
    if not isinstance(items, list | tuple) or not all(isinstance(s, str) and s.strip() for s in items):
        raise Invalid('a list of tool names, or "*" for all of the server\'s tools')
    return tuple(s.strip() for s in items)


def _env(raw: object, where: str) -> dict[str, str]:
    # Values may be secrets: never shown in the error (show_value is not used on them).
    table = as_table(raw, where, 'NAME = "value"')
    out: dict[str, str] = {}
    for name, value in table.items():
        if not _ENV_NAME.fullmatch(name):
            raise ConfigError(f"{where}: {show_value(name)} is not an environment variable name")
        if not isinstance(value, str):
            raise ConfigError(f"{where}.{name} must be a string")
        out[name] = value
    return out


def parse_mcp_servers(raw: object, label: str, warnings: list[str]) -> tuple[McpServer, ...]:
    """The [[mcp_servers]] array; ConfigError names the entry and key at fault, unknown keys become warnings."""
    if not isinstance(raw, list | tuple):
        raise ConfigError(f"{label}: mcp_servers must be an array of tables ([[mcp_servers]])")
    out: list[McpServer] = []
    for i, item in enumerate(raw):
        where = f"{label}: mcp_servers[{i}]"
        out.append(_server(as_table(item, where, ", ".join(KEYS)), where, warnings))
        if any(s.name == out[-1].name for s in out[:-1]):
            raise ConfigError(f"{where}.name: {out[-1].name!r} is used by another server; names must be unique")
    return tuple(out)


def _server(table: Mapping[str, object], where: str, warnings: list[str]) -> McpServer:
    for key in table:
        if key not in KEYS:
            warnings.append(f"{where}: unknown key {key!r} ignored (known keys: {', '.join(KEYS)})")
    if "name" not in table:
        raise ConfigError(f"{where}: name is required")
    name = file_value(parse_text, table["name"], Path(), f"{where}.name")
    if not _SERVER_NAME.fullmatch(name):
        raise ConfigError(f"{where}.name: use letters, digits, _ and - (starting with a letter or digit), got {name!r}")
    if ("command" in table) == ("url" in table):
        raise ConfigError(f"{where} ({name}): give exactly one of command (a program run over stdio) and url")
    values: dict[str, Any] = {"name": name}
    if "command" in table:
        values["command"] = file_value(parse_text, table["command"], Path(), f"{where}.command")
    else:
        values["url"] = file_value(parse_url, table["url"], Path(), f"{where}.url")
    if "args" in table:
        args = file_value(_strings, table["args"], Path(), f"{where}.args")
        if "url" in values and args:
            warnings.append(f"{where} ({name}): args are for a command; ignored with url")
        elif "command" in values:
            values["args"] = args
    if "env" in table:
        values["env"] = MappingProxyType(_env(table["env"], f"{where}.env"))
    if "trusted" in table:
        values["trusted"] = file_value(_trusted, table["trusted"], Path(), f"{where}.trusted")
    if "timeout_s" in table:
        values["timeout_s"] = file_value(_timeout, table["timeout_s"], Path(), f"{where}.timeout_s")
    return McpServer(**values)


def server_table(server: McpServer) -> dict[str, object]:
    """The [[mcp_servers]] entry that loads back into `server` (env values revealed: this is for the file)."""
    out: dict[str, object] = {"name": server.name}
    if server.command is not None:
        out["command"] = server.command
    if server.url is not None:
        out["url"] = server.url
    if server.args:
        out["args"] = list(server.args)
    if server.env:
        out["env"] = dict(server.env)
    if server.trusted:
        out["trusted"] = list(server.trusted)
    if server.timeout_s != _DEFAULT_TIMEOUT_S:
        out["timeout_s"] = server.timeout_s
    return out


def shown_server(server: McpServer) -> dict[str, object]:
    """A JSON-ready view for Config.redacted(): env values, which may hold keys, are masked."""
    out = server_table(server)
    if server.env:
        out["env"] = dict.fromkeys(server.env, MASK)
    return out
