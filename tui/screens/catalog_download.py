"""What `d` and `o` on a catalog row queue: the model's GGUF file, its whole Hub repo, or an Ollama pull.

A single file the catalog pins (its sha256 and exact size) is queued at
once. Any other curated size is an estimate, for display and the fit check:
the Hub is asked first (from a worker) for the file's size, LFS sha256 and
commit, which become what the download must match, and the catalog shows the
real size. A whole repo (safetensors models) needs the Hub's file listing
first too; its files go to `models_dir/<repo name>/`, all pinned to one commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from textual.message import Message

from engines.errors import LlmTuiError

if TYPE_CHECKING:
    from engines.catalog.listing import CatalogRow
    from tui.screens.app_screen import AppScreen

QUEUED = "Download queued (F3 to watch)"


class HubSize(Message):
    """The Hub said how big a curated file is (the catalog's figure was an estimate)."""

    def __init__(self, repo: str, file: str, size: int) -> None:
        super().__init__()
        self.repo = repo
        self.file = file
        self.size = size


def download_row(screen: AppScreen, row: CatalogRow) -> None:
    """`d`: queue the row's file, or its whole repo; say why not for rows that are already here."""
    if row.source != "catalog":
        screen.notify(f"{row.id} is already here ({row.source}).", title="Nothing to download", markup=False)
        return
    if not row.repo:
        hint = f"; o pulls it with Ollama ({row.ollama})" if row.ollama else ""
        screen.notify(
            f"{row.id} names no Hugging Face repo{hint}.", title="Not queued", severity="warning", markup=False
        )
        return
    if not row.file:
        screen.notify(f"Asking the Hub which files {row.repo} holds…", title="Whole repo", markup=False)
        screen.run_worker(lambda: queue_repo(screen, row.repo or ""), thread=True, group="catalog-download")
        return
    if row.sha256 and row.size_bytes:  # pinned by the catalog: exactly this file, whatever the Hub says
        queue_file(screen, row.repo, row.file, {"total_bytes": row.size_bytes, "sha256": row.sha256})
        return
    screen.run_worker(lambda: _ask_hub_then_queue(screen, row), thread=True, group="catalog-download")


def _ask_hub_then_queue(screen: AppScreen, row: CatalogRow) -> None:
    """In a worker: the Hub's size, sha256 and commit for the row's file, then queue it with those. When the Hub
    cannot be asked now, the file is queued without them: the queue asks again when it starts the transfer."""
    repo, file = row.repo or "", row.file or ""
    fields: dict[str, Any] = {}
    try:
        info = screen.runtime.downloads.describe(repo, file)
    except LlmTuiError:
        pass  # the queue's own attempt will fail with this reason, shown on F3
    else:
        fields = {"total_bytes": info.size, "sha256": info.sha256, "revision": info.commit}
        if info.size:
            screen.post_message(HubSize(repo, file, info.size))
    screen.app.call_from_thread(queue_file, screen, repo, file, fields)


def queue_file(screen: AppScreen, repo: str, file: str, fields: dict[str, Any]) -> None:
    """Queue one Hub file into the models directory with what is known of it (size, sha256, commit)."""
    from engines.catalog.fit import human_bytes
    from engines.downloads.names import safe_join

    runtime = screen.runtime
    try:
        target = safe_join(runtime.config.models_dir, file)
        runtime.downloads.add("hf", target, repo=repo, file=file, **fields)
    except LlmTuiError as exc:
        screen.notify(str(exc), title="Not queued", severity="error", markup=False)
        return
    size = f" ({human_bytes(fields['total_bytes'])})" if fields.get("total_bytes") else ""
    screen.notify(f"{repo}/{file}{size} → {target}", title=QUEUED, markup=False)


def queue_repo(screen: AppScreen, repo: str, patterns: Sequence[str] = (), *, to_cache: bool = False) -> None:
    """In a worker: list the repo on the Hub and queue its files (or those matching `patterns`), under
    `models_dir/<repo name>/` or into the Hugging Face cache."""
    runtime = screen.runtime
    folder = None if to_cache else runtime.config.models_dir / repo.split("/")[-1]
    try:
        tasks = runtime.downloads.add_repo(repo, folder, patterns=patterns)
    except LlmTuiError as exc:
        screen.app.call_from_thread(
            screen.notify, str(exc), title="Not queued", severity="error", timeout=15, markup=False
        )
        return
    where = "the Hugging Face cache" if folder is None else str(folder)
    what = f"{len(tasks)} file{'s' if len(tasks) != 1 else ''} of {repo} → {where}"
    if not tasks:
        what = f"those files of {repo} are already in the queue"
    screen.app.call_from_thread(screen.notify, what, title=QUEUED, markup=False)


def pull_row_with_ollama(screen: AppScreen, row: CatalogRow) -> None:
    """`o`: have the Ollama daemon pull the curated model's Ollama build."""
    if row.source != "catalog" or not row.ollama:
        why = "it is already here" if row.source != "catalog" else "the catalog names no Ollama build of it"
        screen.notify(
            f"{row.id} cannot be pulled with Ollama: {why}.", title="Not queued", severity="warning", markup=False
        )
        return
    from engines.downloads.ollama_source import normalise_name
    from engines.downloads.queue import ollama_target

    try:
        name = normalise_name(row.ollama)
        screen.runtime.downloads.add("ollama", ollama_target(name), repo=name)
    except LlmTuiError as exc:
        screen.notify(str(exc), title="Not queued", severity="error", markup=False)
        return
    screen.notify(f"ollama:{name} → Ollama at {screen.runtime.config.ollama_host}", title=QUEUED, markup=False)
