"""The compare screen (F6): one prompt, two to four models side by side.

Ctrl+L adds a model (a running instance, or a model to launch with the launch dialog's engine and options);
Tab to a pane and Delete removes it. Enter (or Ctrl+R) runs: the compare runner (engines/compare/runner.py, on its
own thread) plans with the memory manager and runs the panes at the same time when the models fit together,
else one after another (load, run, unload), and the status line says which and why. Each reply streams
through the chat's widgets, with live metrics and the instance's RAM/VRAM. Esc stops every pane; Ctrl+S
saves the run, Ctrl+O reopens a saved one, Ctrl+T exports it to Markdown; Ctrl+G sets the system prompt
and shared parameters, F12 takes them from a preset of the config. Models the run launches are stopped when it
ends; instances you had running stay.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid
from textual.message import Message
from textual.widgets import Footer, Header, Static

from engines.compare.runner import CompareRunner
from engines.compare.types import (
    MAX_MODELS,
    CompareEvent,
    CompareModel,
    ComparePlan,
    CompareRequest,
    CompareRun,
    PaneStatus,
    PaneStream,
    Planned,
    RunEnded,
    rank,
)
from engines.errors import LlmTuiError
from engines.presets import Preset
from engines.store.records import params_to_dict
from engines.types import Params
from tui.screens.app_screen import AppScreen
from tui.screens.compare_models import pick_model
from tui.screens.compare_preset import PRESET_KEY, PresetApplied, applied, pick_preset
from tui.screens.compare_saved import choose_saved, export_run, save_run, saved_models
from tui.widgets.compare_pane import ComparePane
from tui.widgets.prompt import PromptInput
from tui.widgets.screen_bar import ScreenBar

if TYPE_CHECKING:
    from engines.adapters.base import Engine
    from tui.screens.modals.params import SessionSettings

PANE_MIN_WIDTH = 38
"""Panes go side by side while each gets at least this many columns; otherwise two per row."""


class CompareUpdate(Message):
    """An event of compare run number `run`, posted from the runner's or an instance's thread."""

    def __init__(self, run: int, event: CompareEvent) -> None:
        super().__init__()
        self.run = run
        self.event = event


def options_text(
    system_prompt: str | None, params: Params, preset: PresetApplied | None = None, *, presets: bool = False
) -> str:
    """The line under the prompt: the preset chosen (first, so that a cut line keeps it), the system prompt and the
    parameters every pane shares; the preset key is named when the config has presets."""
    parts = [preset.label(system_prompt, params)] if preset is not None else []
    if system_prompt:
        line = " ".join(system_prompt.split())
        parts.append(f"system: {line if len(line) <= 30 else line[:29] + '…'}")
    else:
        parts.append("no system prompt")
    unset = params_to_dict(Params())  # what a request leaves to the engine (tool_choice "auto" too)
    values = [f"{k} {v}" for k, v in params_to_dict(params).items() if v not in (None, []) and v != unset[k]]
    parts.append(" · ".join(values) if values else "engine default parameters")
    keys = f"Ctrl+G edits · {PRESET_KEY} preset" if presets else "Ctrl+G edits"
    return " · ".join(parts) + f" · {keys}"


class CompareScreen(AppScreen):
    """One prompt on two to four models; their replies side by side with metrics, ranked at the end."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+r", "run", "Run", priority=True),
        Binding("escape", "stop", "Stop"),
        Binding("ctrl+l", "add_model", "Add model"),
        Binding("ctrl+g", "options", "Options"),
        Binding("f12", "preset", "Preset", show=False),  # as in the chat; the options line names it (with presets)
        Binding("ctrl+s", "save", "Save"),
        Binding("ctrl+o", "open", "Open"),
        Binding("ctrl+t", "export", "Export"),
    ]
    DEFAULT_CSS = """
    #compare-prompt { min-height: 2; max-height: 5; }
    #compare-options { height: 1; padding: 0 1; color: $text-muted; text-wrap: nowrap; text-overflow: ellipsis; }
    #compare-status { height: auto; max-height: 2; padding: 0 1; color: $text-muted; background: $boost; }
    #compare-panes { height: 1fr; grid-size: 2 1; grid-columns: 1fr; grid-rows: 1fr; }
    #compare-summary { height: auto; max-height: 2; padding: 0 1; text-style: bold; display: none; }
    """
    clock = staticmethod(time.perf_counter)
    """Times the live metrics (tests give a scripted one)."""

    def __init__(self) -> None:
        super().__init__(name="compare")
        self.models: list[CompareModel] = []
        self.system_prompt: str | None = None
        self.params = Params()
        self.preset: PresetApplied | None = None
        """The preset chosen for the runs (F12), with what it set."""
        self.runner: CompareRunner | None = None
        self.plan: ComparePlan | None = None
        self.shown: CompareRun | None = None
        """The finished or reopened run on screen: what Save and Export take."""
        self.request: CompareRequest | None = None
        """What the last run asked (the prompt field may have changed since)."""
        self._run_no = 0

    def compose(self) -> ComposeResult:
        yield Header()
        yield PromptInput(
            id="compare-prompt", placeholder="Prompt · Enter or Ctrl+R runs every model · Ctrl+J new line"
        )
        yield Static("", id="compare-options", markup=False)
        yield Static("", id="compare-status")
        yield Grid(id="compare-panes")
        yield Static("", id="compare-summary", markup=False)
        yield ScreenBar("compare")
        yield Footer()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Offer (and list in the footer) only the keys that can act now, so the footer fits at 80 columns: Esc
        while a run goes, the rest between runs. The command palette still reaches every action."""
        if action == "stop":
            return self.running
        if action in ("run", "add_model", "open", "save", "export"):
            return not self.running
        return True

    def on_mount(self) -> None:
        self.params = self.runtime.config.defaults
        self._show_options()
        self._idle_status()
        self.query_one(PromptInput).focus()

    def on_unmount(self) -> None:
        if self.runner is not None:
            self.runner.stop()  # its thread stops what it launched

    def on_resize(self) -> None:
        self._layout()

    @property
    def panes(self) -> list[ComparePane]:
        """The panes, in the order of `models`."""
        return list(self.query(ComparePane))

    @property
    def running(self) -> bool:
        """Whether a run is in progress (until its runner has cleaned up)."""
        return self.runner is not None

    # -- choosing the models ------------------------------------------------------------------------------

    def action_add_model(self) -> None:
        """Pick a running instance, or a model to launch (then its engine and options)."""
        if not self._refuse_while_running() and not self._refuse_when_full():
            pick_model(self, self.add_model)

    def add_model(self, model: CompareModel) -> None:
        """Add a pane for `model` (at most four)."""
        if self._refuse_when_full():
            return
        self.models.append(model)
        self.query_one("#compare-panes", Grid).mount(ComparePane(len(self.models), model.title, model.run_id))
        self._layout()
        self._idle_status()

    def on_compare_pane_remove_requested(self, message: ComparePane.RemoveRequested) -> None:
        self._remove(message.pane)

    def action_remove_model(self) -> None:
        """Take the focused pane's model out (the last one when no pane has focus)."""
        panes = self.panes
        focused = next((p for p in panes if p.has_focus_within), None)
        if focused is not None or panes:
            self._remove(focused or panes[-1])

    def _remove(self, pane: ComparePane) -> None:
        if self._refuse_while_running():
            return
        index = self.panes.index(pane)
        del self.models[index]
        pane.remove()
        for number, other in enumerate((p for p in self.panes if p is not pane), start=1):
            other.renumber(number)
        self._layout(len(self.models))
        self._idle_status()
        self.query_one(PromptInput).focus()

    def _layout(self, count: int | None = None) -> None:
        """Side by side while every pane gets PANE_MIN_WIDTH columns, else two per row (2×2 at 80 columns)."""
        count = len(self.models) if count is None else count
        width = self.size.width or 80
        columns = count if count * PANE_MIN_WIDTH <= width else min(count, 2)
        grid = self.query_one("#compare-panes", Grid)
        grid.styles.grid_size_columns = max(columns, 1)
        grid.styles.grid_size_rows = max(math.ceil(count / max(columns, 1)), 1)

    # -- options ------------------------------------------------------------------------------------------

    def action_options(self) -> None:
        """The system prompt and the sampling parameters every pane uses."""
        from tui.screens.modals.params import ParamsModal

        def done(result: SessionSettings | None) -> None:
            if result is not None:
                self.system_prompt, self.params = result.system_prompt, result.params
                self._show_options()

        self.app.push_screen(ParamsModal(self.system_prompt, self.params), done)

    def action_preset(self) -> None:
        """Take the system prompt and parameters of every pane from a preset of the config (for the next run, as
        Ctrl+G: a run going on keeps what it was started with)."""
        pick_preset(self, self.preset.name if self.preset else None, self.apply_preset)

    def apply_preset(self, preset: Preset) -> None:
        """Give every pane the preset's system prompt and parameters (over the config's defaults)."""
        self.preset = applied(preset, self.system_prompt, self.runtime.config.defaults)
        self.system_prompt, self.params = self.preset.system_prompt, self.preset.params
        self._show_options()
        self.notify(f"Preset {preset.name}: its system prompt and parameters apply to every pane.", title="Preset")

    def _show_options(self) -> None:
        presets = bool(self.runtime.config.presets)
        text = options_text(self.system_prompt, self.params, self.preset, presets=presets)
        self.query_one("#compare-options", Static).update(text)

    # -- running ------------------------------------------------------------------------------------------

    def on_prompt_input_submitted(self, message: PromptInput.Submitted) -> None:
        self.action_run()

    def action_run(self) -> None:
        """Run the prompt on every model: at the same time if they fit together, else one after another."""
        if self._refuse_while_running():
            return
        prompt = self.query_one(PromptInput).text.strip()
        request = CompareRequest(prompt, tuple(self.models), self.system_prompt, self.params)
        try:
            request.validate()
        except LlmTuiError as exc:
            self._status(str(exc), error=True)
            return
        from engines.instance_log import install

        self.runtime.instance_log = install()  # the instances screen shows the compare instances' logs too
        self._run_no += 1
        number = self._run_no
        for pane in self.panes:
            pane.begin()
        self.shown = self.plan = None
        self.request = request
        self._summary("")
        runtime = self.runtime
        self.runner = CompareRunner(
            runtime.manager,
            request,
            lambda event: self._post(number, event),
            config=runtime.config,
            snapshot=lambda: runtime.telemetry.sample_now(),  # on the runner's thread: NVML may be slow to open
            engine_for=self._engine_for,
            clock=self.clock,
        )
        self.runner.start()
        self.refresh_bindings()
        self._status("planning: resolving the models and checking memory…")

    def _post(self, number: int, event: CompareEvent) -> None:
        """The runner's sink (on its thread or an instance's): hand the event to the UI without waiting."""
        self.post_message(CompareUpdate(number, event))

    def _engine_for(self, model: CompareModel) -> str | Engine | None:
        """The engine to launch `model` on: the app's engine choice first (tests run everything on a fake one)."""
        return self.runtime.engine_for(model.ref, model.engine) if model.ref is not None else model.engine

    def action_stop(self) -> None:
        """Stop every pane (what was generated is kept; models the run launched are unloaded)."""
        if self.runner is not None and not self.runner.stopping:
            self.runner.stop()
            self._status("stopping: cancelling the replies and unloading what this run launched…")

    def on_compare_update(self, message: CompareUpdate) -> None:
        if message.run != self._run_no:
            return  # from an earlier run
        event = message.event
        panes = self.panes
        if isinstance(event, Planned):
            self.plan = event.plan
            self._status(event.plan.summary)
            for pane, planned in zip(panes, event.plan.panes, strict=False):
                pane.renumber(planned.index + 1, f"{planned.model_id} · {planned.engine}", planned.engine)
        elif isinstance(event, PaneStatus):
            if event.index < len(panes):
                panes[event.index].set_state(event.state, event.detail, event.footprint, event.error, event.run_id)
        elif isinstance(event, PaneStream):
            if event.index < len(panes):
                panes[event.index].apply(event.event, event.live)
        elif isinstance(event, RunEnded):
            self._ended(event)

    def _ended(self, event: RunEnded) -> None:
        self.runner = None
        self.refresh_bindings()
        request, plan = self.request, event.plan
        if event.results and request is not None:
            self.shown = CompareRun(
                prompt=request.prompt,
                panes=event.results,
                system_prompt=request.system_prompt,
                params=request.params,
                mode=plan.mode if plan else "parallel",
                reason=plan.reason if plan else "",
            )
        self._summary(rank(event.results))
        outcome = "stopped" if event.stopped else ("failed" if event.error else "finished")
        self._status(f"{outcome} · {plan.summary}" if plan else outcome, error=event.error is not None)
        if event.error:
            self.notify(event.error, title="The comparison failed", severity="error", timeout=10)

    # -- saving, reopening, exporting ---------------------------------------------------------------------

    def action_save(self) -> None:
        """Save the finished run (prompt, models, options, replies, metrics) in the store."""
        if not self._refuse_while_running():
            self.shown = save_run(self, self.shown) or self.shown

    def action_open(self) -> None:
        """Reopen a saved run: its prompt, models, options, replies and metrics."""
        if not self._refuse_while_running():
            choose_saved(self, self.show_run)

    async def show_run(self, run: CompareRun) -> None:
        """Show a saved run; its models become the ones the next run uses."""
        models = saved_models(run, {i.run_id for i in self.runtime.manager.instances()})
        grid = self.query_one("#compare-panes", Grid)
        await grid.remove_children()
        self.models = models
        panes = [ComparePane(n, m.title, m.run_id) for n, m in enumerate(models, start=1)]
        await grid.mount_all(panes)
        for pane, result in zip(panes, run.panes, strict=True):
            pane.show_result(result)
        self._layout()
        self.query_one(PromptInput).text = run.prompt
        self.system_prompt, self.params = run.system_prompt, run.params
        self.preset = None  # the saved run's own options, whatever preset they came from
        self._show_options()
        self.shown, self.plan = run, None
        self._summary(rank(run.panes))
        self._status(f"saved run #{run.id} · {run.mode}: {run.reason}" if run.reason else f"saved run #{run.id}")

    def action_export(self) -> None:
        """Write the run on screen to a Markdown file (where chat exports go)."""
        export_run(self, self.shown)

    # -- status -------------------------------------------------------------------------------------------

    def _refuse_while_running(self) -> bool:
        if self.runner is None:
            return False
        self.notify("A comparison is running; Esc stops it.", severity="warning")
        return True

    def _refuse_when_full(self) -> bool:
        if len(self.models) < MAX_MODELS:
            return False
        self.notify(f"At most {MAX_MODELS} models: Tab to a pane and press Delete to remove one.", severity="warning")
        return True

    def _idle_status(self) -> None:
        if self.running:
            return
        count = len(self.models)
        if count == 0:
            text = "Ctrl+L adds a model (a running instance, or one to launch): compare 2 to 4."
        elif count == 1:
            text = "1 model · Ctrl+L adds at least one more."
        else:
            text = f"{count} models · Enter or Ctrl+R runs the prompt on each · Tab to a pane, Delete removes it."
        self._status(text)

    def _summary(self, text: str) -> None:
        """The ranking row under the panes, shown once there is something to rank."""
        summary = self.query_one("#compare-summary", Static)
        summary.update(text)
        summary.display = bool(text)

    def _status(self, text: str, *, error: bool = False) -> None:
        self.query_one("#compare-status", Static).update(Text(text, style="bold red" if error else ""))
