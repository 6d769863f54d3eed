"""A model found on this machine or offered by a server: what the catalog lists besides its own entries."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from engines.catalog.builtin import CatalogEntry, builtin_catalog

log = logging.getLogger(__name__)

Source = Literal["local", "hf-cache", "ollama", "remote", "hub"]
Format = Literal["gguf", "hf", "ollama", "remote", "unknown"]


@dataclass(frozen=True, slots=True)
class LocalModel:
    """One model found on this machine or offered by a server; fields a source does not know are None."""

    id: str
    """Stable: path below models_dir, "hf:org/name[/file]", "ollama:name" or "remote:endpoint/name"."""
    source: Source
    format: Format
    name: str
    path: Path | None = None
    size_bytes: int | None = None
    params: int | None = None
    quantization: str | None = None
    context_length: int | None = None
    architecture: str | None = None
    layers: int | None = None
    heads: int | None = None
    kv_heads: int | None = None
    embedding_length: int | None = None
    head_dim: int | None = None
    weights_bytes: int | None = None
    """Bytes of tensor data (GGUF): with the shape fields, what the fit check needs without reading the file again."""
    has_chat_template: bool | None = None
    dtype: str | None = None
    """The dominant safetensors dtype, e.g. "BF16"."""
    status: Literal["ok", "broken"] = "ok"
    error: str | None = None
    catalog_id: str | None = None
    parts: int = 1
    """Files that make up the model (split GGUF parts, safetensors shards)."""
    files: tuple[Path, ...] = ()
    repo_id: str | None = None
    revision: str | None = None
    family: str | None = None
    parameter_size: str | None = None
    """Ollama's own label, e.g. "268.10M"."""
    endpoint: str | None = None
    """The remote endpoint's name, for remote models."""
    origin: str | None = None
    """Where the model came from when llm-tui made it, e.g. "tuned: run NAME from BASE" (engines.tune.provenance)."""


def finish_models(models: list[LocalModel], entries: Iterable[CatalogEntry] | None = None) -> list[LocalModel]:
    """Make ids unique, fill catalog_id, sort by id."""
    catalog = catalog_or_empty() if entries is None else tuple(entries)
    used: set[str] = set()
    out = []
    for model in models:
        new_id, n = model.id, 1
        while new_id in used:
            n += 1
            new_id = f"{model.id}~{n}"
        used.add(new_id)
        out.append(replace(model, id=new_id, catalog_id=model.catalog_id or match_catalog(model, catalog)))
    return sorted(out, key=lambda m: m.id)


def catalog_or_empty() -> tuple[CatalogEntry, ...]:
    """The built-in catalog, or nothing if it cannot be read (the user's models still show)."""
    try:
        return builtin_catalog()
    except Exception as exc:  # a broken package must not hide the user's models
        log.warning("built-in catalog unavailable: %s", exc)
        return ()


def match_catalog(model: LocalModel, entries: Iterable[CatalogEntry] | None = None) -> str | None:
    """The id of the built-in entry this model is: by GGUF file name, HF repo id or Ollama name."""
    catalog = tuple(catalog_or_empty() if entries is None else entries)
    if model.format == "ollama":
        names = {model.name, model.name.removesuffix(":latest")}
        return next((e.id for e in catalog if e.ollama and e.ollama in names), None)
    if model.format == "gguf":
        file_names = {p.name for p in model.files} | ({model.path.name} if model.path else set())
        by_file = [e for e in catalog if e.file and e.file in file_names]
        exact = [e for e in by_file if model.repo_id and e.repo == model.repo_id]
        best = exact or by_file
        return best[0].id if best else None
    if model.format == "hf" and model.repo_id:
        return next((e.id for e in catalog if e.repo == model.repo_id and e.format != "gguf"), None)
    return None
