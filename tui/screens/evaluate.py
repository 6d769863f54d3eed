"""The Evaluate screen: multiple-choice evaluations of running instances, saved, compared and exported.

The saved runs are listed newest first (store.evals); the selected one's subjects show below with the overall row,
the method it used and its data's hash. `n` asks for an instance and data (read and checked first) and runs
`engines.evaluate.runner.run_eval` in a thread worker, whose progress comes back as messages: the bar, items/s, the
running accuracy and the subjects' counts as they fill. `s` (or Esc) stops it: the items done are kept and the run
is saved as "cancelled". Space marks a run and `c` on another compares the two item by item (McNemar); `x` exports
the selected run (.md, .json or .csv by the name's suffix), `d` deletes it, `t` goes back to the Tune screen.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, ProgressBar, Static

from engines.errors import LlmTuiError
from engines.evaluate.types import EvalProgress, EvalReport
from engines.types import InstanceState
from tui.screen_list import INSTANCES, TUNE
from tui.screens.app_screen import AppScreen
from tui.screens.eval_saved import ask_delete, ask_export, compare_runs
from tui.screens.modals.eval_new import EvalRequest
from tui.widgets.eval_tables import (
    RUN_COLUMNS,
    SUBJECT_COLUMNS,
    done_by_subject,
    percent,
    run_cells,
    run_columns,
    run_summary,
    running_scores,
    share_correct,
    subject_cells,
    subject_rows,
    when_text,
)
from tui.widgets.live_table import LiveTable
from tui.widgets.screen_bar import ScreenBar

EVALUABLE = (InstanceState.READY, InstanceState.BUSY)


@dataclass
class Running:
    """The run under way: what was asked, how to stop it, and its counts per subject so far."""

    request: EvalRequest
    cancel: threading.Event
    order: list[tuple[str, int]]
    """(subject, items) in the order the runner asks them."""
    done: dict[str, int] = field(default_factory=dict)
    correct: dict[str, int] = field(default_factory=dict)
    last: EvalProgress | None = None

    @property
    def total(self) -> int:
        return sum(items for _, items in self.order)


def subject_order(request: EvalRequest) -> list[tuple[str, int]]:
    """(subject, items) the run will ask, in its order: the data's test items, at most the limit of each."""
    from engines.evaluate.runner import select_items

    counts = Counter(item.subject for item in select_items(request.data, request.options))
    return list(counts.items())


class EvaluateScreen(AppScreen):
    """Saved evaluation runs and their subjects; start, stop, compare, export and delete runs."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "new_run", "New…"),
        Binding("enter", "open_run", "Subjects", show=False, priority=True),
        Binding("s", "stop_run", "Stop"),
        Binding("escape", "stop_run(True)", "Stop", show=False),
        Binding("space", "mark", "Mark"),
        Binding("c", "compare", "Compare"),
        Binding("x", "export", "Export…"),
        Binding("d,delete", "delete", "Delete"),
        Binding("t", "tune", "Tune"),
    ]
    DEFAULT_CSS = """
    #eval-status { height: auto; max-height: 2; padding: 0 1; color: $text-muted; background: $boost; }
    #eval-progress { height: 1; padding: 0 1; display: none; }
    #eval-progress.-running { display: block; }
    #eval-runs { height: 1fr; min-height: 4; }
    #eval-detail { height: auto; max-height: 4; padding: 0 1; border-top: solid $primary-muted; }
    #eval-subjects { height: 1fr; min-height: 4; }
    """
    when: Callable[[float | None], str] = staticmethod(when_text)
    """How a run's time shows (tests fix it)."""

    class Progressed(Message):
        """Items of the run under way finished."""

        def __init__(self, progress: EvalProgress) -> None:
            super().__init__()
            self.progress = progress

    class Ended(Message):
        """The run under way returned its report (finished or cancelled), or failed before it had one."""

        def __init__(self, report: EvalReport | None, error: str | None = None) -> None:
            super().__init__()
            self.report = report
            self.error = error

    def __init__(self) -> None:
        super().__init__(name="evaluate")
        self.reports: list[EvalReport] = []
        self.marked: int | None = None
        self.running: Running | None = None
        self.last_data_path = ""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="eval-status")
        yield ProgressBar(id="eval-progress", show_eta=False)
        yield LiveTable(RUN_COLUMNS, id="eval-runs")
        yield Static("", id="eval-detail", markup=False)
        yield DataTable(id="eval-subjects", cursor_type="row", zebra_stripes=True)
        yield ScreenBar("evaluate")
        yield Footer()

    def on_mount(self) -> None:
        subjects = self.query_one("#eval-subjects", DataTable)
        subjects.add_columns(*SUBJECT_COLUMNS)
        self.runs_table.focus()
        self.reload()

    def on_screen_resume(self) -> None:
        self.reload()

    def on_unmount(self) -> None:
        if self.running is not None:  # the app is closing: the worker's thread ends after the item under way
            self.running.cancel.set()

    def on_resize(self, _event: events.Resize) -> None:
        self.call_after_refresh(self.show_runs)

    @property
    def runs_table(self) -> LiveTable:
        return self.query_one("#eval-runs", LiveTable)

    @property
    def selected(self) -> EvalReport | None:
        row = self.runs_table.cursor_row
        return self.reports[row] if 0 <= row < len(self.reports) and self.reports else None

    # -- drawing ------------------------------------------------------------------------------------------------

    def reload(self) -> None:
        """Read the saved runs again and redraw."""
        try:
            self.reports = self.runtime.store.evals.list()
        except LlmTuiError as exc:
            self.notify(str(exc), title="Cannot read the saved runs", severity="error", timeout=10)
            self.reports = []
        if self.marked is not None and all(r.id != self.marked for r in self.reports):
            self.marked = None
        self.show_runs()

    def show_runs(self) -> None:
        cells = [run_cells(r, marked=r.id == self.marked, when=self.when) for r in self.reports]
        table = self.runs_table
        # Columns go (RUN_DROPS) before a model's name is cut; the table shortens it only when still too narrow.
        shown = run_columns(cells, table.scrollable_content_region.width)
        picks = [RUN_COLUMNS.index(t) for t in shown]
        rows = [(f"r:{r.id}", [c[i] for i in picks]) for r, c in zip(self.reports, cells, strict=True)]
        table.show_fitted(rows, shown, ())
        self._show_status()
        self._show_subjects()

    def _show_status(self) -> None:
        status = self.query_one("#eval-status", Static)
        running = self.running
        if running is not None:
            last = running.last
            total = running.total
            if last is None:
                status.update(f"Evaluating {running.request.model} on {running.request.data.name}… · s stops")
                return
            accuracy = percent(last.correct / last.done) if last.done else "–"
            status.update(
                f"Evaluating {running.request.model}: {last.done}/{last.total or total} · "
                f"{last.items_per_s:.1f} items/s · accuracy so far {accuracy} · s stops"
            )
            return
        if not self.reports:
            status.update("No evaluation saved yet: n evaluates a running instance on a multiple-choice set.")
            return
        count = len(self.reports)
        mark = f" · #{self.marked} marked: c on another compares" if self.marked is not None else " · space marks one"
        status.update(f"{count} saved run{'s' if count != 1 else ''}{mark} · n starts a new one")

    def _show_subjects(self) -> None:
        table = self.query_one("#eval-subjects", DataTable)
        detail = self.query_one("#eval-detail", Static)
        table.clear()
        running = self.running
        if running is not None:
            from engines.evaluate.stats import wilson

            for score, total in running_scores(running.order, running.done, running.correct, wilson):
                table.add_row(*subject_cells(score, total=total), key=score.subject)
            data = running.request.data
            options = running.request.options
            limit = "all items" if options.limit is None else f"at most {options.limit} a subject"
            detail.update(
                f"Running on {running.request.model} ({running.request.run_id}) · {options.shots}-shot · {limit}\n"
                f"data {data.name} · sha256 {data.sha256[:12] or '–'}"
            )
            return
        report = self.selected
        if report is None:
            detail.update("")
            return
        for key, cells in subject_rows(report):
            table.add_row(*cells, key=key)
        detail.update(run_summary(report))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "eval-runs" and self.running is None:
            self._show_subjects()

    # -- running ------------------------------------------------------------------------------------------------

    def action_new_run(self) -> None:
        if self.running is not None:
            self.notify("An evaluation is under way: s stops it first.", severity="warning")
            return
        instances = [i for i in self.runtime.manager.instances() if i.state in EVALUABLE]
        if not instances:
            self.notify(
                f"No instance is running: launch a model on the Instances screen ({INSTANCES.key.upper()}), "
                "then evaluate it here.",
                title="Nothing to evaluate",
                severity="warning",
                timeout=8,
            )
            return
        from tui.screens.modals.eval_new import NewEvalModal

        def chosen(request: EvalRequest | None) -> None:
            if request is not None:
                self.start(request)

        self.app.push_screen(NewEvalModal(instances, self.last_data_path), chosen)

    def start(self, request: EvalRequest) -> None:
        """Run `request` in a worker; the screen shows its progress and saves its report."""
        self.last_data_path = str(request.path)
        try:
            order = subject_order(request)
        except LlmTuiError as exc:
            self.notify(str(exc), title="Cannot evaluate", severity="error", timeout=10)
            return
        running = Running(request, threading.Event(), order)
        self.running = running
        bar = self.query_one("#eval-progress", ProgressBar)
        bar.update(total=max(1, running.total), progress=0)
        bar.add_class("-running")
        self.show_runs()
        self._run(running)

    @work(thread=True, exclusive=True, group="eval-run")
    def _run(self, running: Running) -> None:
        from engines.evaluate.runner import run_eval

        request = running.request
        try:
            report = run_eval(
                self.runtime.manager,
                request.run_id,
                request.data,
                request.options,
                progress=self._progressed,
                cancel=running.cancel,
            )
        except LlmTuiError as exc:
            self.post_message(self.Ended(None, str(exc)))
            return
        except Exception as exc:  # a bug in a run must not take the app down: say it, keep the screen
            self.post_message(self.Ended(None, f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(self.Ended(report))

    def _progressed(self, progress: EvalProgress) -> None:
        """Called on the worker's thread: hand the progress to the screen."""
        self.post_message(self.Progressed(progress))

    def on_evaluate_screen_progressed(self, message: Progressed) -> None:
        running = self.running
        if running is None:
            return
        progress = message.progress
        gained = progress.correct - (running.last.correct if running.last else 0)
        running.done = done_by_subject(running.order, progress.done)
        running.correct = share_correct(running.correct, running.done, running.order, gained)
        running.last = progress
        bar = self.query_one("#eval-progress", ProgressBar)
        bar.update(total=max(1, progress.total), progress=progress.done)
        self._show_status()
        self._show_subjects()

    def on_evaluate_screen_ended(self, message: Ended) -> None:
        running, self.running = self.running, None
        self.query_one("#eval-progress", ProgressBar).remove_class("-running")
        if message.report is None:
            self.notify(message.error or "the run failed", title="Evaluation failed", severity="error", timeout=10)
            self.show_runs()
            return
        try:
            saved = self.runtime.store.evals.save(message.report)
        except LlmTuiError as exc:
            self.notify(str(exc), title="Evaluation not saved", severity="error", timeout=10)
            self.show_runs()
            return
        stopped = " (stopped: the items done are kept)" if saved.state == "cancelled" else ""
        self.notify(
            f"#{saved.id}: {percent(saved.overall.accuracy)} of {saved.overall.items} items{stopped}.",
            title="Evaluation saved",
            timeout=6,
        )
        self.reload()
        if saved.id is not None and f"r:{saved.id}" in self.runs_table.keys:
            self.runs_table.move_cursor(row=self.runs_table.keys.index(f"r:{saved.id}"))
        if running is not None:
            self._log_mlflow(saved)

    @work(thread=True, group="eval-mlflow")
    def _log_mlflow(self, report: EvalReport) -> None:
        from engines.evaluate.mlflow_log import log_eval

        try:
            mlflow_run = log_eval(report, self.runtime.config)
        except Exception as exc:  # tracking is optional: a failure to log never loses the saved run
            self.app.call_from_thread(
                self.notify, f"#{report.id} is saved, not logged: {exc}", title="MLflow", severity="warning"
            )
            return
        if mlflow_run is not None:
            self.app.call_from_thread(self.notify, f"#{report.id} logged as run {mlflow_run}.", title="MLflow")

    def action_stop_run(self, quiet: bool = False) -> None:
        """Stop the run under way (Esc says nothing when there is none)."""
        running = self.running
        if running is None:
            if not quiet:
                self.notify("No evaluation is running: n starts one.")
            return
        if running.cancel.is_set():
            self.notify("Stopping: the item under way finishes first.")
            return
        running.cancel.set()
        self.notify("Stopping: the items done are kept and saved as a cancelled run.", title="Evaluation")

    # -- saved runs ---------------------------------------------------------------------------------------------

    def _chosen(self, doing: str) -> EvalReport | None:
        report = self.selected
        if report is None or report.id is None:
            self.notify(f"No saved run to {doing}: n starts an evaluation.")
            return None
        return report

    def action_open_run(self) -> None:
        """Enter: from the runs to the selected run's subjects, and back."""
        subjects = self.query_one("#eval-subjects", DataTable)
        if subjects.has_focus:
            self.runs_table.focus()
            return
        if self.running is None and self._chosen("show") is None:
            return
        subjects.focus()

    def action_mark(self) -> None:
        report = self._chosen("mark")
        if report is None:
            return
        self.marked = None if self.marked == report.id else report.id
        self.show_runs()

    def action_compare(self) -> None:
        report = self._chosen("compare")
        if report is None or report.id is None:
            return
        if self.marked is None:
            self.notify("Mark a run with space first, then press c on the run to compare it with.")
            return
        if self.marked == report.id:
            self.notify(f"#{report.id} is the marked run: select another one to compare it with.")
            return
        compare_runs(self, self.marked, report.id)

    def action_export(self) -> None:
        report = self._chosen("export")
        if report is not None and report.id is not None:
            ask_export(self, report.id)

    def action_delete(self) -> None:
        report = self._chosen("delete")
        if report is not None:
            ask_delete(self, report, self.reload)

    def action_tune(self) -> None:
        self.shell.switch_mode(TUNE.mode)
