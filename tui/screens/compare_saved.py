"""The compare screen's saved runs: Ctrl+S saves the run on screen, Ctrl+O lists the saved ones to reopen (or
delete), Ctrl+T exports the run on screen to Markdown, named like the chat's exports."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from typing import TYPE_CHECKING

from engines.compare.types import CompareModel, CompareRun
from engines.errors import LlmTuiError

if TYPE_CHECKING:
    from tui.screens.app_screen import AppScreen


def saved_models(run: CompareRun, running: Collection[str]) -> list[CompareModel]:
    """The models a reopened run compares next time: the user's instance if it still runs, else what was launched
    (its ref, engine and options; an instance gone since is launched again by its model id)."""
    models = []
    for result in run.panes:
        label = f"{result.model_id} · {result.engine}"
        if result.run_id is not None and result.run_id in running:
            models.append(CompareModel(run_id=result.run_id, label=f"{label} ({result.run_id})"))
        else:
            ref = result.ref or result.model_id
            models.append(CompareModel(ref=ref, engine=result.engine, options=result.options, label=label))
    return models


def save_run(screen: AppScreen, run: CompareRun | None) -> CompareRun | None:
    """Store `run` (prompt, models, options, replies, metrics); the saved run, or None when nothing was saved."""
    if run is None:
        screen.notify("Nothing to save yet: run a comparison first (Ctrl+R).")
        return None
    if run.id is not None:
        screen.notify(f"Already saved as #{run.id}.")
        return None
    try:
        saved = screen.runtime.store.compares.save(run)
    except LlmTuiError as exc:
        screen.notify(str(exc), title="Not saved", severity="error", timeout=10)
        return None
    screen.notify(f"Saved as #{saved.id}; Ctrl+O reopens it.", title="Comparison saved", timeout=5)
    return saved


def choose_saved(screen: AppScreen, show: Callable[[CompareRun], Awaitable[None]]) -> None:
    """List the saved runs (newest first; Delete removes one) and `show` the one chosen."""
    from tui.screens.modals.compare_runs import CompareRunsModal

    compares = screen.runtime.store.compares

    def done(compare_id: int | None) -> None:
        if compare_id is None:
            return
        try:
            run = compares.get(compare_id)
        except LlmTuiError as exc:
            screen.notify(str(exc), severity="error")
            return
        screen.call_later(show, run)

    screen.app.push_screen(CompareRunsModal(compares.list_runs(), compares.delete), done)


def export_run(screen: AppScreen, run: CompareRun | None) -> None:
    """Ask where (by default where chat exports go: exports/ in the data folder), then write the Markdown."""
    if run is None:
        screen.notify("Nothing to export yet: run or open a comparison first.")
        return
    from engines.store.export import default_compare_name, export_compare, export_target, exports_dir
    from tui.screens.modals.text_prompt import TextPromptModal

    folder = exports_dir(screen.runtime.config.data_dir)

    def done(path: str | None) -> None:
        if not path or not path.strip():
            return
        try:
            written = export_compare(run, export_target(path, folder))
        except (OSError, LlmTuiError) as exc:
            screen.notify(str(exc), title="Export failed", severity="error", timeout=10, markup=False)
            return
        where = written.absolute()  # name and folder on lines of their own: a toast breaks a long path anywhere
        screen.notify(f"Saved {where.name}\nin {where.parent}", title="Exported", timeout=8, markup=False)

    name = str(folder / default_compare_name(run))
    screen.app.push_screen(TextPromptModal("Export comparison to (.md)", name), done)
