"""Config values shown (secrets masked), written (secrets revealed), and whether a file of them must be private."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from engines.config.serve import ServeConfig
from engines.config.serve_keys import ApiKey, shown_key
from engines.config.tables import RemoteEndpoint
from engines.mcp.types import McpServer
from engines.secret import MASK, Secret
from engines.types import Params


def redact(value: object) -> object:
    """A JSON-ready form of a config value with every secret shown as ********."""
    if isinstance(value, Secret):
        return MASK
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, ApiKey):
        return shown_key(value)
    if isinstance(value, Mapping):  # in a document, a named key's `key` ([[serve.keys]]) is its secret
        return {str(k): MASK if k == "key" and isinstance(v, str) else redact(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [redact(v) for v in value]
    if isinstance(value, RemoteEndpoint | Params | ServeConfig):
        return {f.name: redact(getattr(value, f.name)) for f in fields(value)}
    return value


def plain(value: object) -> Any:
    """TOML-ready form: secrets revealed, paths as text, None dropped."""
    if isinstance(value, Secret):
        return value.reveal()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, RemoteEndpoint | Params):
        value = {f.name: getattr(value, f.name) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items() if v is not None and v != ()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def holds_secret(value: object, key: str = "") -> bool:
    """Whether a config value or document holds a token or key (its file must then be 0600)."""
    # An MCP server's `env` values may be keys: a file that sets any is private.
    if isinstance(value, Secret) or (key in ("hf_token", "api_key", "api_keys", "env", "key") and value):
        return True
    if isinstance(value, ApiKey):
        return value.key_env is None and value.keys_file is None
    if isinstance(value, RemoteEndpoint):
        return value.api_key is not None
    if isinstance(value, McpServer):
        return bool(value.env)
    if isinstance(value, Mapping):
        return any(holds_secret(v, str(k)) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(holds_secret(v) for v in value)
    return False
