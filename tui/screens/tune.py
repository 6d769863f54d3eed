"""The Tune screen (F11): fine-tuning runs (LoRA) and, for the selected one, its loss and learning-rate curves.

The list is the store's (`store.tunes`), re-read every few seconds, so a run started from `llm-tui tune` shows here
too. A run started (n) or resumed (r) from this screen sends its events on the process's reader thread; they come to
the screen as `TuneScreen.EventArrived` messages and change the row, the status line and the plot on the UI thread.
`s` asks the run to save a checkpoint and stop, `e` opens the Evaluate screen, `l` launches the base model with the
run's adapter, `d` deletes the run's record, Enter reads the selected run's whole curve again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Footer, Header, Static

from engines.errors import LlmTuiError
from engines.tune.types import Failed, Finished, Started, Stopped, TuneEvent, TuneRun
from tui.screen_list import EVALUATE
from tui.screens.app_screen import AppScreen
from tui.screens.tune_hooks import (
    OnEvent,
    ResumeRun,
    StartRun,
    TuneHandle,
    lora_unsupported,
    missing_packages,
    total_steps,
)
from tui.widgets.live_table import LiveTable
from tui.widgets.screen_bar import ScreenBar
from tui.widgets.tune_plot import LearningRatePlot, LossPlot
from tui.widgets.tune_runs import COLUMNS, NARROW_DROPS, RESUMABLE, RunView

if TYPE_CHECKING:
    from tui.screens.modals.tune_new import TuneRequest

EMPTY_HINT = "No fine-tuning run yet. n sets one up (a base model and a JSONL file of examples)."
REFRESH_S = 3.0


class TuneScreen(AppScreen):
    """Set up, watch, stop and resume fine-tuning runs; evaluate or launch what they made."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "show_curve", "Curve", key_display="⏎", priority=True),  # also on an empty table
        Binding("n", "new_run", "New…"),
        Binding("s", "stop", "Stop"),
        Binding("r", "resume", "Resume"),
        Binding("e", "evaluate", "Evaluate"),
        Binding("l", "launch", "Launch"),
        Binding("d,delete", "delete", "Delete"),
    ]
    DEFAULT_CSS = """
    #tune-status { height: auto; max-height: 2; padding: 0 1; color: $text-muted; background: $boost; }
    #tune-status.-failed { color: $text-error; }
    #tune-table { height: auto; max-height: 7; }
    #tune-plots { height: 1fr; min-height: 8; }
    #tune-loss { width: 2fr; }
    #tune-lr { width: 1fr; }
    #tune-detail { height: auto; max-height: 2; padding: 0 1; color: $text-muted; }
    """

    starter: ClassVar[StartRun | None] = None
    """Starts a run (TuneProcess.start when None; tests hand in a fake process)."""
    resumer: ClassVar[ResumeRun | None] = None
    """Resumes a run (TuneProcess.resume when None)."""
    missing: ClassVar[Callable[[], str | None]] = missing_packages
    """Why training is not possible here (tests pretend either way)."""
    lora_check: ClassVar[Callable[[], str | None]] = lora_unsupported

    class EventArrived(Message):
        """A run's process sent an event (posted from its reader thread)."""

        def __init__(self, name: str, event: TuneEvent) -> None:
            super().__init__()
            self.name = name
            self.event = event

    class StartFailed(Message):
        def __init__(self, name: str, message: str) -> None:
            super().__init__()
            self.name = name
            self.message = message

    def __init__(self) -> None:
        super().__init__(name="tune")
        self.views: dict[str, RunView] = {}
        """Every run by name, in the store's order (newest first)."""
        self.handles: dict[str, TuneHandle] = {}
        self._reconciled = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="tune-status", markup=False)
        yield LiveTable(COLUMNS, id="tune-table")
        with Horizontal(id="tune-plots"):
            yield LossPlot(id="tune-loss")
            yield LearningRatePlot(id="tune-lr")
        yield Static("", id="tune-detail", markup=False)
        yield ScreenBar("tune")
        yield Footer()

    def on_mount(self) -> None:
        # The app's own list: it stops these children (with a checkpoint) when it closes.
        self.handles = self.runtime.tune_handles
        self.table.focus()
        self.reload()
        self.call_after_refresh(self.show_rows)  # again once the table knows its width
        self.set_interval(REFRESH_S, self.reload)

    def on_resize(self, _event: events.Resize) -> None:
        self.call_after_refresh(self.show_rows)

    @property
    def table(self) -> LiveTable:
        return self.query_one(LiveTable)

    @property
    def selected(self) -> RunView | None:
        key = self.table.current_key
        return self.views.get(key) if key else None

    # -- reading the store ---------------------------------------------------------------------------------------

    def reload(self) -> None:
        """Re-read the list of runs; a run whose record changed (and is not live here) has its curve read again."""
        tunes = self.runtime.store.tunes
        self._reap()
        if not self._reconciled:
            self._reconciled = True
            self._reconcile()
        try:
            runs = tunes.list()
        except LlmTuiError as exc:
            self.query_one("#tune-status", Static).update(f"Cannot read the runs: {exc}")
            return
        # Runs started here whose record is not written yet (or whose start was refused: kept with the reason
        # until deleted) stay on top, newest first as the store's are.
        views = {name: view for name, view in self.views.items() if view.report is not None}
        stored = {run.name for run in runs}
        views = {name: view for name, view in views.items() if name not in stored}
        for run in runs:
            view = self.views.get(run.name)
            if view is None:
                view = RunView(run)
            elif not view.live:
                view.run, view.state = run, run.state
            views[run.name] = view
        self.views = views
        for view in views.values():  # each row shows its last step and losses (read again only when changed)
            self.load_curve(view)
        self.show_rows()

    def _reap(self) -> None:
        """A process that ended without a last event (killed, crashed): its record (interrupted, with the reason)
        is read again, and the row stops being live."""
        for name, handle in list(self.handles.items()):
            if handle.wait(0) is None:  # still running, or its events not all handled yet
                continue
            del self.handles[name]
            view = self.views.get(name)
            if view is not None and view.live:
                view.live, view.stopping, view.loaded_at = False, False, None

    def _reconcile(self) -> None:
        """Runs marked running whose process is gone become interrupted (resumable)."""
        try:
            from engines.tune.process import reconcile
        except ImportError:
            return
        with contextlib.suppress(LlmTuiError, OSError):  # the list still shows; its states may be stale
            reconcile(self.runtime.config)

    def load_curve(self, view: RunView, *, force: bool = False) -> None:
        """The run's whole curve from the store (a resumed run continues the same one)."""
        if view.live or (not force and view.loaded_at is not None and view.loaded_at == view.run.updated_at):
            return
        try:
            full = self.runtime.store.tunes.get(view.name)
        except LlmTuiError as exc:
            self.notify(str(exc), title=view.name, severity="warning")
            return
        view.run, view.steps, view.validations = full, list(full.steps), list(full.validations)
        view.state = full.state
        view.loaded_at = full.updated_at
        if view.total is None:
            view.total = total_steps(full)

    # -- drawing -------------------------------------------------------------------------------------------------

    def show_rows(self) -> None:
        colours = self.app.theme_variables
        rows = [(name, view.cells(colours)) for name, view in self.views.items()]
        self.table.show_fitted(rows, COLUMNS, NARROW_DROPS)
        self.show_selected()

    def show_selected(self, *, plot: bool = True) -> None:
        view = self.selected
        status = self.query_one("#tune-status", Static)
        detail = self.query_one("#tune-detail", Static)
        if view is None:
            status.update(EMPTY_HINT if not self.views else "")
            status.set_class(False, "-failed")
            detail.update("")
            if plot:
                self.query_one(LossPlot).show((), ())
                self.query_one(LearningRatePlot).show(())
            return
        self.load_curve(view)
        status.update(view.status_line())
        status.set_class(view.state in ("failed", "interrupted") and bool(view.error), "-failed")
        detail.update(view.detail_line())
        if plot:
            self.query_one(LossPlot).show(view.steps, view.validations)
            self.query_one(LearningRatePlot).show(view.steps)

    def _show_row(self, view: RunView) -> None:
        if view.name in self.table.keys:
            self.table.show_fitted(
                [(n, v.cells(self.app.theme_variables)) for n, v in self.views.items()], COLUMNS, NARROW_DROPS
            )
        else:
            self.show_rows()

    def on_data_table_row_highlighted(self) -> None:
        self.show_selected()

    def on_data_table_row_selected(self) -> None:
        self.action_show_curve()  # Enter on a row (the table takes Enter before the screen's binding)

    # -- live events ---------------------------------------------------------------------------------------------

    def _listener(self, name: str) -> OnEvent:
        """on_event for a run's process: runs on its reader thread, so it only posts a message."""

        def on_event(event: TuneEvent) -> None:
            self.post_message(self.EventArrived(name, event))

        return on_event

    def on_tune_screen_event_arrived(self, message: EventArrived) -> None:
        view = self.views.get(message.name)
        if view is None:
            return
        event = message.event
        view.apply(event)
        if isinstance(event, Started):
            view.live = True
        if isinstance(event, Finished | Stopped | Failed):
            self.handles.pop(view.name, None)
            if isinstance(event, Failed):
                self.notify(event.message, title=f"{view.name} failed", severity="error")
            elif isinstance(event, Finished):
                self.notify(f"{view.name} finished; its adapter is in {event.adapter_dir}", title="Tune")
        self._show_row(view)
        if view is self.selected:
            self.show_selected()

    def on_tune_screen_start_failed(self, message: StartFailed) -> None:
        view = self.views.get(message.name)
        if view is not None:
            view.fail(message.message)
            self._show_row(view)
            if view is self.selected:
                self.show_selected()
        self.notify(message.message, title=f"Cannot start {message.name}", severity="error")

    # -- actions -------------------------------------------------------------------------------------------------

    def action_show_curve(self) -> None:
        view = self.selected
        if view is None:
            self.notify("No run is selected; n sets one up.", title="Tune")
            return
        self.load_curve(view, force=True)
        self.show_selected()

    def action_new_run(self) -> None:
        why = type(self).missing()
        if why:
            self.notify(why, title="Cannot fine-tune here", severity="warning", timeout=8)
            return
        from tui.screens.modals.tune_new import TuneNewModal

        config = self.runtime.config
        self.app.push_screen(TuneNewModal(config.models_dir, dict(config.aliases)), self._start)

    def _start(self, request: TuneRequest | None) -> None:
        if request is None:
            return
        if request.name in self.views:
            self.notify(f"A run named {request.name} exists; choose another name.", severity="warning")
            return
        from engines.tune.paths import run_dir

        record = TuneRun(
            request.name,
            request.base,
            request.data,
            request.report.sha256,
            request.options,
            "running",
            run_dir(self.runtime.config, request.name),
        )
        view = RunView(record, live=True, report=request.report, status="starting…")
        self.views = {request.name: view, **self.views}
        self.show_rows()
        self.table.move_cursor(row=0)
        self._spawn(
            request.name,
            lambda on_event: self._starter()(
                self.runtime.config, request.base, request.data, request.name, request.options, on_event
            ),
        )

    def _starter(self) -> StartRun:
        start = type(self).starter
        if start is None:
            from engines.tune.process import TuneProcess

            return TuneProcess.start
        return start

    def _resumer(self) -> ResumeRun:
        resume = type(self).resumer
        if resume is None:
            from engines.tune.process import TuneProcess

            return TuneProcess.resume
        return resume

    @work(thread=True, group="tune-spawn")
    def _spawn(self, name: str, spawn: Callable[[OnEvent], TuneHandle]) -> None:
        """Start or resume off the UI thread (it validates the data and spawns the child)."""
        try:
            handle = spawn(self._listener(name))
        except (LlmTuiError, OSError) as exc:
            self.post_message(self.StartFailed(name, str(exc)))
            return
        self.app.call_from_thread(self.handles.__setitem__, name, handle)

    def action_stop(self) -> None:
        view = self.selected
        if view is None:
            self.notify("No run is selected.", title="Stop")
            return
        handle = self.handles.get(view.name)
        if handle is None or not view.live:
            self.notify(f"{view.name} is {view.state}, not running here: nothing to stop.", title="Stop")
            return
        if view.stopping:
            self.notify(f"{view.name} is already saving a checkpoint to stop.", title="Stop")
            return
        view.stopping = True
        self._show_row(view)
        self.show_selected(plot=False)
        self._stop(handle)

    @work(thread=True, group="tune-stop")
    def _stop(self, handle: TuneHandle) -> None:
        try:
            handle.stop()
        except (LlmTuiError, OSError) as exc:
            self.app.call_from_thread(self.notify, str(exc), title=f"Cannot stop {handle.name}", severity="error")

    def action_resume(self) -> None:
        view = self.selected
        if view is None:
            self.notify("No run is selected.", title="Resume")
            return
        if view.live:
            self.notify(f"{view.name} is running.", title="Resume")
            return
        if view.state not in RESUMABLE:
            self.notify(f"{view.name} is {view.state}: only a stopped or interrupted run resumes.", title="Resume")
            return
        why = type(self).missing()
        if why:
            self.notify(why, title="Cannot fine-tune here", severity="warning", timeout=8)
            return
        name = view.name
        view.live, view.state, view.status = True, "running", "resuming…"
        view.run = _replace_error(view.run)
        self._show_row(view)
        self.show_selected()
        self._spawn(name, lambda on_event: self._resumer()(self.runtime.config, name, on_event))

    def action_evaluate(self) -> None:
        self.shell.switch_mode(EVALUATE.mode)

    def action_launch(self) -> None:
        view = self.selected
        if view is None:
            self.notify("No run is selected.", title="Launch")
            return
        adapter = view.run.adapter_path
        if view.state != "finished" or adapter is None:
            self.notify(f"{view.name} is {view.state}: it has no adapter to launch yet.", title="Launch")
            return
        why = type(self).lora_check()
        if why:
            self.notify(f"Cannot launch {view.run.base} with the adapter: {why}", title="Launch", severity="warning")
            return
        from engines.types import LaunchOptions

        self.shell.launch_model(view.run.base, "transformers", LaunchOptions(lora_path=adapter))
        self.shell.switch_mode("chat")

    def action_delete(self) -> None:
        view = self.selected
        if view is None:
            self.notify("No run is selected.", title="Delete")
            return
        if view.live:
            self.notify(f"{view.name} is running: stop it (s) first.", title="Delete", severity="warning")
            return
        from tui.screens.modals.confirm import ConfirmModal

        name, folder = view.name, view.run.run_dir
        stored = {run.name for run in self.runtime.store.tunes.list()}

        def done(yes: bool | None) -> None:
            if not yes:
                return
            try:
                if name in stored:
                    self.runtime.store.tunes.delete(name)
            except LlmTuiError as exc:
                self.notify(str(exc), title=f"Cannot delete {name}", severity="error")
                return
            self.views.pop(name, None)
            self.show_rows()
            self.notify(f"Deleted the record of {name}; its folder {folder} is kept.", title="Delete")

        question = f"Delete the record of run {name} (its curve and state)? Its folder stays on disk."
        self.app.push_screen(ConfirmModal(question), done)


def _replace_error(run: TuneRun) -> TuneRun:
    from dataclasses import replace

    return replace(run, error=None)
