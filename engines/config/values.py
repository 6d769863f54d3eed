"""Parsers for configuration values: each takes the raw value and the base folder for relative paths."""

from __future__ import annotations

import contextlib
import ipaddress
import math
import os
import re
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engines.secret import Secret


class Invalid(ValueError):
    """A value does not fit; the text says what was expected."""

    def __init__(self, expected: str, *, show: bool = True) -> None:
        super().__init__(expected)
        self.expected = expected
        self.show = show


Parse = Callable[[object, Path], Any]


def as_int(raw: object) -> int | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str):
        with contextlib.suppress(ValueError):
            return int(raw.strip())
    return None


def as_float(raw: object) -> float | None:
    if isinstance(raw, bool):
        return None
    value: float | None = None
    if isinstance(raw, int | float):
        value = float(raw)
    elif isinstance(raw, str):
        with contextlib.suppress(ValueError):
            value = float(raw.strip())
    return value if value is not None and math.isfinite(value) else None


def parse_int(minimum: int | None, expected: str, *, auto: bool = False) -> Parse:
    def parse(raw: object, base: Path) -> int | None:
        if auto and isinstance(raw, str) and raw.strip().lower() == "auto":
            return None
        value = as_int(raw)
        if value is None or (minimum is not None and value < minimum):
            raise Invalid(expected)
        return value

    return parse


def parse_float(ok: Callable[[float], bool], expected: str) -> Parse:
    def parse(raw: object, base: Path) -> float:
        value = as_float(raw)
        if value is None or not ok(value):
            raise Invalid(expected)
        return value

    return parse


def parse_text(raw: object, base: Path) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise Invalid("a non-empty string")
    return raw.strip()


def parse_secret(raw: object, base: Path) -> Secret:
    if not isinstance(raw, str) or not raw.strip():
        raise Invalid("a non-empty string", show=False)
    return Secret(raw.strip())


def parse_path(raw: object, base: Path) -> Path:
    if isinstance(raw, os.PathLike):
        raw = os.fspath(raw)
    if not isinstance(raw, str) or not raw.strip():
        raise Invalid("a folder path (a non-empty string)")
    return resolve_path(raw.strip(), base)


def resolve_path(text: str, base: Path) -> Path:
    return Path(os.path.abspath(base / Path(text).expanduser()))


def parse_url(raw: object, base: Path) -> str:
    expected = "an http:// or https:// URL"
    if not isinstance(raw, str) or not raw.strip() or any(c.isspace() for c in raw.strip()):
        raise Invalid(expected)
    try:
        split = urllib.parse.urlsplit(raw.strip())
        split.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise Invalid(f"{expected} with a valid port") from None
    if split.scheme.lower() not in ("http", "https") or not split.hostname:
        raise Invalid(expected)
    if split.username is not None or split.password is not None:
        raise Invalid(f"{expected} without user:password in it (put a key in api_key_env)", show=False)
    return raw.strip().rstrip("/")


def normalize_ollama_host(value: str) -> str:
    """Turn an OLLAMA_HOST value (`host`, `host:port`, `0.0.0.0`, a URL) into a URL, the way ollama does.

    The default scheme is http and the default port 11434 (80 or 443 when a
    scheme is given without a port). An unspecified bind address (0.0.0.0, ::)
    becomes loopback, since we connect to it. Raises ValueError when unusable.
    """
    text = value.strip()
    if not text or any(c.isspace() for c in text):
        raise ValueError("empty or contains spaces")
    scheme, sep, hostport = text.partition("://")
    scheme, port = scheme.lower(), 11434
    if not sep:
        scheme, hostport = "http", text
    elif scheme in ("http", "https"):
        port = 80 if scheme == "http" else 443
    else:
        raise ValueError(f"scheme must be http or https, not {scheme!r}")
    split = urllib.parse.urlsplit(f"{scheme}://{hostport}")
    host = split.hostname or "127.0.0.1"
    port = split.port or port  # raises ValueError for a port that is not a number in 0..65535
    with contextlib.suppress(ValueError):
        address = ipaddress.ip_address(host)
        if address.is_unspecified:
            address = ipaddress.ip_address("::1" if address.version == 6 else "127.0.0.1")
        host = f"[{address}]" if address.version == 6 else str(address)
    path = split.path.strip("/")
    return f"{scheme}://{host}:{port}/{path}" if path else f"{scheme}://{host}:{port}"


def parse_ollama(raw: object, base: Path) -> str:
    try:
        return normalize_ollama_host(raw if isinstance(raw, str) else "")
    except ValueError:
        raise Invalid("an Ollama address such as http://127.0.0.1:11434, host:port or host") from None


MAX_PARALLEL = 64
SPECULATIVE_MODES = ("prompt-lookup",)


def parse_parallel(raw: object, base: Path) -> int:
    value = as_int(raw)
    if value is None or not 1 <= value <= MAX_PARALLEL:
        raise Invalid(f"a whole number of slots from 1 to {MAX_PARALLEL}")
    return value


def parse_speculative(raw: object, base: Path) -> str | None:
    text = raw.strip().lower() if isinstance(raw, str) else None
    if text in ("off", "none", ""):
        return None
    if text not in SPECULATIVE_MODES:
        raise Invalid('"prompt-lookup" or "off"')
    return text


def parse_bool(raw: object, base: Path) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in _BOOLS:
        return _BOOLS[raw.strip().lower()]
    raise Invalid("true or false")


_BOOLS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}
_RATE_UNITS = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "ki": 1024, "mi": 1024**2, "gi": 1024**3}
_RATE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmg]i?)?b?(?:/s)?$")


def parse_rate(raw: object, base: Path) -> int | None:
    """A bandwidth cap in bytes per second: 5000000, "5M", "5MB/s", "512KiB/s"; 0, "off" or "none" = no cap."""
    expected = 'bytes per second, such as 5000000, "5MB/s" or "512KiB/s" (0 or "off" for no cap)'
    if isinstance(raw, bool):
        raise Invalid(expected)
    text = str(raw).strip().lower() if isinstance(raw, int | float | str) else ""
    if text in ("off", "none"):
        return None
    match = _RATE.match(text)
    if match is None:
        raise Invalid(expected)
    rate = int(float(match.group(1)) * _RATE_UNITS[match.group(2) or ""])
    return rate or None
