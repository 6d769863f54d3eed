"""The Evaluate screen's saved runs: compare two item by item, export one (.md, .json or .csv by the name's
suffix), delete one after asking. Each failure is said in a notification; nothing is half written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from engines.errors import LlmTuiError
from engines.evaluate.types import EvalReport

if TYPE_CHECKING:
    from tui.screens.app_screen import AppScreen


def compare_runs(screen: AppScreen, a_id: int, b_id: int) -> None:
    """Show runs A and B side by side with McNemar's test on the items both answered."""
    from engines.evaluate.stats import mcnemar
    from tui.screens.modals.eval_compare import EvalCompareModal

    try:
        a = screen.runtime.store.evals.get(a_id)
        b = screen.runtime.store.evals.get(b_id)
    except LlmTuiError as exc:
        screen.notify(str(exc), title="Cannot compare", severity="error", timeout=10)
        return
    screen.app.push_screen(EvalCompareModal(a, b, mcnemar(a, b)))


def default_export_path(run_id: int) -> Path:
    """`eval-<id>.md` in the working folder."""
    return Path.cwd() / f"eval-{run_id}.md"


def ask_export(screen: AppScreen, run_id: int) -> None:
    """Ask where (the suffix picks the format), then write the run with its items."""
    from tui.screens.modals.text_prompt import TextPromptModal

    def done(text: str | None) -> None:
        if text:
            export_run(screen, run_id, Path(text).expanduser())

    prompt = TextPromptModal("Export the run to (.md, .json or .csv)", str(default_export_path(run_id)))
    screen.app.push_screen(prompt, done)


def export_run(screen: AppScreen, run_id: int, path: Path) -> Path | None:
    """Write the run with its items to `path`; the file written, or None (said in a notification)."""
    from engines.evaluate.export import write_export

    try:
        written = write_export(screen.runtime.store.evals.get(run_id), path)
    except (OSError, LlmTuiError) as exc:
        screen.notify(str(exc), title="Export failed", severity="error", timeout=10, markup=False)
        return None
    where = written.absolute()  # name and folder on lines of their own: a toast breaks a long path anywhere
    screen.notify(f"Saved {where.name}\nin {where.parent}", title="Exported", timeout=8, markup=False)
    return written


def ask_delete(screen: AppScreen, report: EvalReport, deleted: Callable[[], None]) -> None:
    """Ask, then delete the saved run and its items; `deleted` is called after."""
    from tui.screens.modals.confirm import ConfirmModal

    run_id = report.id
    if run_id is None:
        return

    def answered(yes: bool | None) -> None:
        if not yes:
            return
        try:
            screen.runtime.store.evals.delete(run_id)
        except LlmTuiError as exc:
            screen.notify(str(exc), title="Not deleted", severity="error", timeout=10)
            return
        screen.notify(f"Deleted run #{run_id}.")
        deleted()

    question = f"Delete run #{run_id} ({report.model} on {report.data_name}, {report.overall.items} items)?"
    screen.app.push_screen(ConfirmModal(question, danger=True), answered)
