"""Change settings in the user's config.toml and keep everything else of theirs: comments, order, unknown keys.

tomlkit parses the file into a document that writes back byte for byte
except where we change it; the result is validated like a loaded config
before it atomically replaces the file. `apply_changes` makes every edit of
the settings screen in one write; `reload_config` reads the result back with
the environment and flags still on top.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from engines.atomic import atomic_write
from engines.config.load import Config, check_document, holds_secret, load_config
from engines.errors import ConfigError
from engines.secret import Secret

if TYPE_CHECKING:
    from tomlkit import TOMLDocument
    from tomlkit.items import AbstractTable

Key = tuple[str, ...]
"""A place in the file: ("theme",), ("defaults", "temperature"), ("aliases", "tiny")."""

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


def _save(document: TOMLDocument, path: Path, *, before: str | None = None) -> dict[str, Any]:
    """Validate and write `document`; `before` is the file's text when tables were appended to it."""
    import tomlkit

    plain = document.unwrap()
    check_document(plain, path)
    text = tomlkit.dumps(document)
    if before is not None and text.endswith("\n\n") and not before.endswith("\n\n"):
        text = text.rstrip("\n") + "\n"  # an appended table's blank line, when nothing follows it
    atomic_write(path, text.encode(), private=holds_secret(plain))
    return plain


def check_alias_name(name: str) -> str:
    """The alias name stripped, or ConfigError saying what a name may hold."""
    name = name.strip()
    if not _ALIAS_NAME.fullmatch(name):
        raise ConfigError(
            f"alias {name!r}: use letters, digits and . _ : + - (starting with a letter or digit), no spaces"
        )
    return name


def check_aliases(aliases: Mapping[str, str]) -> None:
    """Raise ConfigError naming the first alias whose chain of targets comes back to itself."""
    for name in aliases:
        _check_no_loop(aliases, name)


def parse_alias_line(text: str, aliases: Mapping[str, str], old: str | None = None) -> tuple[str, str]:
    """`name = model reference` as typed, checked beside `aliases` (less `old`, the alias being edited).

    Raises ConfigError saying what is wrong: the form, the name, an empty reference, a clash or a loop.
    """
    name, sep, ref = text.partition("=")
    if not sep:
        raise ConfigError("write it as name = model reference, e.g. tiny = gemma-3-270m")
    name, ref = check_alias_name(name), ref.strip()
    if not ref:
        raise ConfigError(f"alias {name!r}: the model reference is empty")
    others = {k: v for k, v in aliases.items() if k != old}
    if name in others:
        raise ConfigError(f"alias {name!r} exists already; edit that one instead")
    _check_no_loop({**others, name: ref}, name)
    return name, ref


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


def _empty() -> Mapping[Key, object]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class EndpointChange:
    """Add or update one [[remote_endpoints]] entry; a value of None removes that key from it."""

    name: str
    values: Mapping[str, object | None] = field(default_factory=dict)
    """url, api_key_env, api_key (a Secret or text): only those that change."""
    old_name: str | None = None
    """The entry to update (by its name in the file); None adds a new one."""


@dataclass(frozen=True, slots=True)
class ConfigChanges:
    """Edits to config.toml that are written together, in one atomic replace."""

    set: Mapping[Key, object] = field(default_factory=_empty)
    """Values by place; a Secret is written revealed. Tables on the way are created."""
    remove: tuple[Key, ...] = ()
    endpoints: tuple[EndpointChange, ...] = ()
    remove_endpoints: tuple[str, ...] = ()
    """Names of [[remote_endpoints]] entries to drop."""

    def __bool__(self) -> bool:
        return bool(self.set or self.remove or self.endpoints or self.remove_endpoints)


def _table(document: TOMLDocument, name: str, path: Path, *, create: bool) -> AbstractTable | None:
    """The table `name` of the document (a [table] or an inline one), made when missing and `create`."""
    import tomlkit
    from tomlkit.items import AbstractTable

    found = document.get(name)
    if found is None:
        if not create:
            return None
        made = tomlkit.table()
        document[name] = made
        return made
    if not isinstance(found, AbstractTable):
        raise ConfigError(f"{path}: {name} must be a table, not {type(found.unwrap()).__name__}")
    return found


def _toml(value: object) -> object:
    if isinstance(value, Secret):
        return value.reveal()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_toml(v) for v in value]
    return value


def _assign(table: AbstractTable | TOMLDocument, key: str, value: object) -> None:
    """Set `key` unless it already holds that value: an untouched line keeps its formatting."""
    value = _toml(value)
    current = table.get(key)
    if current is not None and current.unwrap() == value and type(current.unwrap()) is type(value):
        return
    table[key] = value


def _endpoint_list(document: TOMLDocument, path: Path, *, create: bool) -> Any:
    import tomlkit
    from tomlkit.items import AoT, Array

    found = document.get("remote_endpoints")
    if found is None and create:
        found = tomlkit.aot()
        if document.body and not tomlkit.dumps(document).endswith("\n\n"):
            document.add(tomlkit.nl())  # a blank line between the user's last line and the new table
        document["remote_endpoints"] = found
    if found is not None and not isinstance(found, AoT | Array):
        raise ConfigError(f"{path}: remote_endpoints must be an array of tables ([[remote_endpoints]])")
    return found


def _find_endpoint(entries: Any, name: str) -> int | None:
    for i, entry in enumerate(entries):
        if isinstance(entry, Mapping) and entry.get("name") == name:
            return i
    return None


def _apply_endpoints(document: TOMLDocument, changes: ConfigChanges, path: Path) -> bool:
    """Apply the endpoint edits; True when a table was appended."""
    import tomlkit
    from tomlkit.items import AoT

    entries = _endpoint_list(document, path, create=bool(changes.endpoints))
    appended = False
    for name in changes.remove_endpoints:
        index = _find_endpoint(entries or [], name)
        if index is None:
            raise ConfigError(f"{path}: no remote endpoint named {name!r} to remove")
        del entries[index]
    for change in changes.endpoints:
        index = None if change.old_name is None else _find_endpoint(entries, change.old_name)
        if change.old_name is not None and index is None:
            raise ConfigError(f"{path}: no remote endpoint named {change.old_name!r} to change")
        if index is None:
            entry: Any = tomlkit.table() if isinstance(entries, AoT) else tomlkit.inline_table()
            entry["name"] = change.name
            for key, value in change.values.items():
                if value is not None:
                    entry[key] = _toml(value)
            if isinstance(entries, AoT):
                entry.add(tomlkit.nl())  # a blank line before whatever follows in the file
            entries.append(entry)
            appended = True
            continue
        entry = entries[index]
        _assign(entry, "name", change.name)
        for key, value in change.values.items():
            if value is None:
                entry.pop(key, None)
            else:
                _assign(entry, key, value)
    return appended


def apply_changes(path: Path, changes: ConfigChanges) -> dict[str, Any]:
    """Make `changes` in the config file at `path` (created when missing) in one atomic write; returns the saved
    document as plain values.

    Everything not changed stays byte for byte. The result is checked as loading would check it (and aliases
    for loops) before it replaces the file, which is 0600 when it holds a token or key. Raises ConfigError
    naming the key at fault; the file is then left as it was.
    """
    document = _load(path)
    before = path.read_text(encoding="utf-8") if path.exists() else ""
    for key in changes.remove:
        if len(key) == 1:
            document.pop(key[0], None)
        elif (table := _table(document, key[0], path, create=False)) is not None:
            table.pop(key[1], None)
    for key, value in changes.set.items():
        if len(key) == 1:
            _assign(document, key[0], value)
        else:
            table = _table(document, key[0], path, create=True)
            assert table is not None
            _assign(table, key[1], value)
    appended = _apply_endpoints(document, changes, path)
    for key in changes.set:
        if key[0] == "aliases":
            check_alias_name(key[1])
    aliases = _table(document, "aliases", path, create=False)
    if aliases is not None and any(k[0] == "aliases" for k in (*changes.set, *changes.remove)):
        check_aliases({str(k): str(v) for k, v in aliases.unwrap().items()})
    return _save(document, path, before=before if appended else None)


def reload_config(path: Path, current: Config) -> Config:
    """The config file at `path` loaded again, over the read-only defaults `current` read under it, with what the
    environment or flags set in `current` still on top.

    Raises ConfigError as load_config does.
    """
    fresh = load_config(path, env={}, base=current.base_source)
    values: dict[str, object] = {}
    origins = dict(fresh.origins)
    for key, origin in current.origins.items():
        if origin.startswith(("env ", "flag ")):
            values[key] = getattr(current, key)
            origins[key] = origin
    if origins.get("models_dir") == "default":  # the default follows data_dir, which may be overridden
        data_dir = current.data_dir if "data_dir" in values else fresh.data_dir
        values["models_dir"] = data_dir / "models"
    return replace(fresh, origins=origins, env=current.env, **values)  # type: ignore[arg-type]
