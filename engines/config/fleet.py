"""The [[fleet]] entries of config.toml: the other hosts the fleet view polls.

```toml
[[fleet]]
name = "gpu-box"                        # unique; letters, digits, _ . - (at most 64); "local" is this machine
url = "http://10.0.0.5:8000"            # the server's base URL; a trailing /v1 is dropped
kind = "llm-tui"                        # another `llm-tui serve` (default), or "openai" (vLLM, SGLang, TGI...)
key_env = "GPU_BOX_KEY"                 # the environment variable holding its API key (never the key itself)
timeout_s = 2                           # one poll of this host at most (0.2 to 60 s)
```
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args

from engines.config.tables import as_table, file_value
from engines.config.values import Invalid, parse_float, parse_text, parse_url
from engines.errors import ConfigError
from engines.fleet.types import FleetMember, MemberKind

KEYS = ("name", "url", "kind", "key_env", "timeout_s")
KINDS: tuple[str, ...] = get_args(MemberKind)
MIN_TIMEOUT_S, MAX_TIMEOUT_S = 0.2, 60.0
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_KEY_PREFIXES = ("sk-", "sk_", "hf_", "bearer ", "gsk_", "xai-", "pk-")
_DEFAULT_TIMEOUT_S = FleetMember(name="-", url="-").timeout_s
_timeout = parse_float(
    lambda v: MIN_TIMEOUT_S <= v <= MAX_TIMEOUT_S, f"a number of seconds from {MIN_TIMEOUT_S:g} to {MAX_TIMEOUT_S:g}"
)


def fleet_url(raw: object, base: Path) -> str:
    """An http(s) URL with a host, no query or fragment; a trailing "/" and "/v1" are removed."""
    url = parse_url(raw, base)
    split = urllib.parse.urlsplit(url)
    if split.query or split.fragment or url.endswith(("?", "#")):
        raise Invalid("an http:// or https:// URL without ?query or #fragment")
    url = url.rstrip("/")
    if url.lower().endswith("/v1"):
        url = url[:-3].rstrip("/")
    return url


def looks_like_key(text: str) -> bool:
    """Whether a value looks like an API key rather than the name of a variable holding one."""
    lowered = text.strip().lower()
    if lowered.startswith(_KEY_PREFIXES):
        return True
    # Variable names are words; keys are long runs of mixed letters and digits.
    return len(text) >= 24 and any(c.isdigit() for c in text) and any(c.islower() for c in text) and "_" not in text


def _key_env(raw: object, where: str) -> str:
    # The value may be a key pasted by mistake: it is never shown in the message.
    hint = (
        "key_env names the environment variable that holds the key, not the key itself: export it (for example "
        'export GPU_BOX_KEY=...) and write key_env = "GPU_BOX_KEY"'
    )
    if isinstance(raw, str) and looks_like_key(raw):
        raise ConfigError(f"{where} looks like an API key; {hint}")
    if not isinstance(raw, str) or not _ENV_NAME.fullmatch(raw.strip()):
        raise ConfigError(f"{where} must be an environment variable name (letters, digits and _); {hint}")
    return raw.strip()


def parse_fleet(raw: object, label: str, warnings: list[str]) -> tuple[FleetMember, ...]:
    """The [[fleet]] array; ConfigError names the file, entry and key at fault, unknown keys become warnings."""
    if not isinstance(raw, list | tuple):
        raise ConfigError(f"{label}: fleet must be an array of tables ([[fleet]])")
    out: list[FleetMember] = []
    for i, item in enumerate(raw):
        where = f"{label}: fleet[{i}]"
        member = _member(as_table(item, where, ", ".join(KEYS)), where, warnings)
        if any(m.name == member.name for m in out):
            raise ConfigError(f"{where}.name: {member.name!r} is used by another fleet member; names must be unique")
        out.append(member)
    return tuple(out)


def _member(table: Mapping[str, object], where: str, warnings: list[str]) -> FleetMember:
    for key in table:
        if key not in KEYS:
            warnings.append(f"{where}: unknown key {key!r} ignored (known keys: {', '.join(KEYS)})")
    for key in ("name", "url"):
        if key not in table:
            raise ConfigError(f"{where}: {key} is required")
    name = file_value(parse_text, table["name"], Path(), f"{where}.name")
    if not _NAME.fullmatch(name):
        raise ConfigError(f"{where}.name: use 1 to 64 letters, digits, _, . and -, got {name[:80]!r}")
    if name.lower() == "local":
        raise ConfigError(f"{where}.name: 'local' is this machine's row; give the host another name")
    values: dict[str, Any] = {"name": name, "url": file_value(fleet_url, table["url"], Path(), f"{where}.url")}
    if "kind" in table:
        kind = table["kind"]
        if kind not in KINDS:
            shown = repr(kind)[:80]
            raise ConfigError(
                f'{where}.kind must be "llm-tui" or "openai" (vLLM, SGLang, TGI, llama-server), got {shown}'
            )
        values["kind"] = kind
    if "key_env" in table:
        values["key_env"] = _key_env(table["key_env"], f"{where}.key_env")
    if "timeout_s" in table:
        values["timeout_s"] = file_value(_timeout, table["timeout_s"], Path(), f"{where}.timeout_s")
    return FleetMember(**values)


def fleet_table(member: FleetMember) -> dict[str, object]:
    """The [[fleet]] entry that loads back into `member` (it holds no secret: key_env is a variable's name)."""
    out: dict[str, object] = {"name": member.name, "url": member.url}
    if member.kind != "llm-tui":
        out["kind"] = member.kind
    if member.key_env is not None:
        out["key_env"] = member.key_env
    if member.timeout_s != _DEFAULT_TIMEOUT_S:
        out["timeout_s"] = member.timeout_s
    return out
