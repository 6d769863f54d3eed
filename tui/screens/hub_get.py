"""What Enter and `d` do with a model on the Hub files screen: find its files here, launch it with the split its
fit check chose, or queue every file it needs pinned to the listing's commit."""

from __future__ import annotations

import glob
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from engines.catalog.fit import Resources, fit, human_bytes
from engines.catalog.listing import CatalogRow, row_shape
from engines.errors import LlmTuiError
from engines.hub.model_files import ModelFile
from engines.hub.remote_fit import FileFit
from tui.screens.catalog_download import QUEUED
from tui.screens.hub_files_text import model_label, plural

if TYPE_CHECKING:
    from engines.downloads.hf_repo import RepoListing
    from tui.screens.app_screen import AppScreen
    from tui.screens.modals.launch import LaunchTarget


def repo_folder(models_dir: Path, repo: str) -> Path:
    """Where `d` puts a repo's files: `models_dir/<repo name>/` (a safetensors set is then one model folder)."""
    return models_dir / repo.split("/")[-1]


def local_files(models_dir: Path, repo: str, model: ModelFile) -> Path | None:
    """Where the model is when all its files are here at their listed sizes (in the folder `d` queues into, or in
    the models directory itself, where the catalog's `d` puts a single file): its first weights file, or its
    safetensors folder."""
    from engines.downloads.names import safe_join

    for root in (repo_folder(models_dir, repo), models_dir):
        try:
            paths = {f.path: safe_join(root, f.path) for f in model.files}
        except LlmTuiError:
            continue
        here = all(
            paths[f.path].is_file() and (f.size is None or paths[f.path].stat().st_size == f.size) for f in model.files
        )
        if here:
            first = paths[model.parts[0].path]
            return first.parent if model.kind == "safetensors" else first
    return None


def gpu_layers(row: CatalogRow, resources: Resources, n_ctx: int) -> int | None:
    """The GPU layers the fit check chose: -1 (all) on a GPU, the split of a partial offload, 0 in RAM."""
    shape = row_shape(row)
    if shape is None:
        return None
    result = fit(shape, resources, n_ctx=n_ctx)
    if result.verdict.startswith("fits on GPU"):
        return -1
    return result.estimate.gpu_layers if result.verdict.startswith("partial") else 0


def launch_target(
    model: ModelFile, result: FileFit | None, path: Path, resources: Resources | None, n_ctx: int
) -> LaunchTarget:
    """The launch dialog's target for the model's files here, with the context and GPU layers of its fit."""
    from tui.screens.modals.launch import LaunchTarget, target_for_row

    row = result.row if result is not None else None
    if row is None:  # the header was not read: the dialog reads what it can from the file
        fmt = "hf" if model.kind == "safetensors" else "gguf"
        engines = ("transformers",) if fmt == "hf" else ("llama.cpp", "transformers")
        return LaunchTarget(str(path), path.name, fmt, engines, n_ctx=n_ctx)
    layers = gpu_layers(row, resources, n_ctx) if resources is not None else None
    return replace(target_for_row(replace(row, path=path, source="local"), n_ctx=n_ctx), n_gpu_layers=layers)


def queue_model(screen: AppScreen, listing: RepoListing, model: ModelFile) -> None:
    """In a worker: queue every file of the model (weights, parts, projector, config, tokenizer) into its repo's
    folder, pinned to the listing's commit, and say what was queued."""
    folder = repo_folder(screen.runtime.config.models_dir, listing.repo)
    patterns = [glob.escape(f.path) for f in model.files]  # names, not globs: a `[` in a name is literal
    try:
        tasks = screen.runtime.downloads.add_repo(listing.repo, folder, revision=listing.commit, patterns=patterns)
    except LlmTuiError as exc:
        screen.app.call_from_thread(screen.notify, str(exc), title="Not queued", severity="error", markup=False)
        return
    size = f" ({human_bytes(model.download_bytes)})" if model.download_bytes else ""
    what = f"{plural(len(tasks), 'file')}{size} of {listing.repo} → {folder}"
    if not tasks:
        what = f"{model_label(model)} is in the download queue already"
    screen.app.call_from_thread(screen.notify, what, title=QUEUED, markup=False)
