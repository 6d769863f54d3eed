"""What `d` and `o` on a catalog row queue: the model's GGUF file, its whole Hub repo, or an Ollama pull.

A single file is queued at once (the catalog knows its repo, file, size and
sha256). A whole repo (safetensors models) needs the Hub's file listing
first, so it is queued from a worker thread; its files go to
`models_dir/<repo name>/`, all pinned to one commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from engines.errors import LlmTuiError

if TYPE_CHECKING:
    from engines.catalog.listing import CatalogRow
    from tui.screens.app_screen import AppScreen

QUEUED = "Download queued (F3 to watch)"


def download_row(screen: AppScreen, row: CatalogRow) -> None:
    """`d`: queue the row's file, or its whole repo; say why not for rows that are already here."""
    if row.source != "catalog":
        screen.notify(f"{row.id} is already here ({row.source}).", title="Nothing to download")
        return
    if not row.repo:
        hint = f"; `o` pulls it with Ollama ({row.ollama})" if row.ollama else ""
        screen.notify(f"{row.id} names no Hugging Face repo{hint}.", title="Not queued", severity="warning")
        return
    if not row.file:
        screen.notify(f"Asking the Hub which files {row.repo} holds…", title="Whole repo")
        screen.run_worker(lambda: queue_repo(screen, row.repo or ""), thread=True, group="catalog-download")
        return
    from engines.downloads.names import safe_join

    runtime = screen.runtime
    try:
        target = safe_join(runtime.config.models_dir, row.file)
        fields = {"repo": row.repo, "file": row.file, "total_bytes": row.size_bytes, "sha256": row.sha256}
        runtime.downloads.add("hf", target, **fields)
    except LlmTuiError as exc:
        screen.notify(str(exc), title="Not queued", severity="error")
        return
    screen.notify(f"{row.repo}/{row.file} → {target}", title=QUEUED)


def queue_repo(screen: AppScreen, repo: str, patterns: Sequence[str] = (), *, to_cache: bool = False) -> None:
    """In a worker: list the repo on the Hub and queue its files (or those matching `patterns`), under
    `models_dir/<repo name>/` or into the Hugging Face cache."""
    runtime = screen.runtime
    folder = None if to_cache else runtime.config.models_dir / repo.split("/")[-1]
    try:
        tasks = runtime.downloads.add_repo(repo, folder, patterns=patterns)
    except LlmTuiError as exc:
        screen.app.call_from_thread(screen.notify, str(exc), title="Not queued", severity="error", timeout=15)
        return
    where = "the Hugging Face cache" if folder is None else str(folder)
    what = f"{len(tasks)} file{'s' if len(tasks) != 1 else ''} of {repo} → {where}"
    if not tasks:
        what = f"those files of {repo} are already in the queue"
    screen.app.call_from_thread(screen.notify, what, title=QUEUED)


def pull_row_with_ollama(screen: AppScreen, row: CatalogRow) -> None:
    """`o`: have the Ollama daemon pull the curated model's Ollama build."""
    if row.source != "catalog" or not row.ollama:
        why = "it is already here" if row.source != "catalog" else "the catalog names no Ollama build of it"
        screen.notify(f"{row.id} cannot be pulled with Ollama: {why}.", title="Not queued", severity="warning")
        return
    from engines.downloads.ollama_source import normalise_name
    from engines.downloads.queue import ollama_target

    try:
        name = normalise_name(row.ollama)
        screen.runtime.downloads.add("ollama", ollama_target(name), repo=name)
    except LlmTuiError as exc:
        screen.notify(str(exc), title="Not queued", severity="error")
        return
    screen.notify(f"ollama:{name} → Ollama at {screen.runtime.config.ollama_host}", title=QUEUED)
