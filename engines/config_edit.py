"""Change one setting in the user's config.toml and keep everything else of theirs: comments, order, unknown keys.

tomlkit parses the file into a document that writes back byte for byte
except where we change it; the result is validated like a loaded config
before it atomically replaces the file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from engines.atomic import atomic_write
from engines.config import check_document, holds_secret
from engines.errors import ConfigError

if TYPE_CHECKING:
    from tomlkit import TOMLDocument

_ALIAS_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+-]*")


def _load(path: Path) -> TOMLDocument:
    import tomlkit
    from tomlkit.exceptions import TOMLKitError

    try:
        text = path.read_text(encoding="utf-8") if path.exists() else ""
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    try:
        return tomlkit.parse(text)
    except TOMLKitError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc


def _save(document: TOMLDocument, path: Path) -> None:
    import tomlkit

    plain = document.unwrap()
    check_document(plain, path)
    atomic_write(path, tomlkit.dumps(document).encode(), private=holds_secret(plain))


def check_alias_name(name: str) -> str:
    """The alias name stripped, or ConfigError saying what a name may hold."""
    name = name.strip()
    if not _ALIAS_NAME.fullmatch(name):
        raise ConfigError(
            f"alias {name!r}: use letters, digits and . _ : + - (starting with a letter or digit), no spaces"
        )
    return name


def _check_no_loop(aliases: Mapping[str, str], name: str) -> None:
    seen = [name]
    target = aliases[name]
    while target in aliases:
        if target in seen:
            raise ConfigError(f"alias {name!r} would loop: {' -> '.join([*seen, target])}")
        seen.append(target)
        target = aliases[target]


def set_alias(path: Path, name: str, ref: str | None) -> dict[str, str]:
    """Point alias `name` at model `ref` (None removes it) in the config file at `path`; returns all aliases.

    The file is created when missing. Raises ConfigError for a bad name, a loop, or an unreadable file.
    """
    import tomlkit
    from tomlkit.items import Table

    name = check_alias_name(name)
    document = _load(path)
    table = document.get("aliases")
    if table is None:
        if ref is None:
            return {}
        table = tomlkit.table()
        document["aliases"] = table
    elif not isinstance(table, Table):
        raise ConfigError(f'{path}: aliases must be a table of name = "model reference"')
    if ref is None:
        table.pop(name, None)
    else:
        ref = ref.strip()
        if not ref:
            raise ConfigError(f"alias {name!r}: the model reference is empty")
        _check_no_loop({**{str(k): str(v) for k, v in table.items()}, name: ref}, name)
        table[name] = ref
    _save(document, path)
    return {str(k): str(v) for k, v in table.items()}
