"""The gauges screen: every GPU (utilisation, memory, temperature, power, processes) and the host, live.

Sampling happens in the runtime's telemetry thread; this screen only reads its latest snapshot and
history on a timer at the same interval, and repaints only when a new snapshot has arrived, so an
idle gauges screen costs next to nothing. `p` pauses and resumes the updates.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.content import Content
from textual.timer import Timer
from textual.widgets import Footer, Header

from engines.telemetry.nvml import NO_GPU
from engines.telemetry.snapshot import GpuProcess, Snapshot
from tui.screens.app_screen import AppScreen
from tui.widgets.gauges import Readout
from tui.widgets.gpu_panel import GpuPanel
from tui.widgets.host_panel import HostPanel
from tui.widgets.screen_bar import ScreenBar

if TYPE_CHECKING:
    from engines.telemetry.poller import TelemetryPoller


def no_gpu_line(reason: str | None) -> Content:
    """Why there are no GPU gauges (no GPU is news, not a warning; a fix or a fault is a warning), and what shows."""
    reason = reason or NO_GPU
    style = "$text" if reason == NO_GPU else "bold $warning"
    return Content.assemble((reason[:1].upper() + reason[1:], style), "; showing CPU and memory.")


class GaugesScreen(AppScreen):
    """Live GPU and host gauges with short history sparklines."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("p", "pause", "Pause/resume"),
    ]

    def __init__(self) -> None:
        super().__init__(name="gauges")
        self.poller: TelemetryPoller | None = None
        self.paused = False
        self.shown: Snapshot | None = None
        """The snapshot on screen (compared by taken_at to skip repaints)."""
        self._tick_timer: Timer | None = None
        self._panels: dict[int, GpuPanel] = {}
        self._models: dict[str, str | None] = {}
        self.failure: Content | None = None
        """Why telemetry could not start, if it could not."""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Readout("Starting telemetry…", id="gauges-status")
        with VerticalScroll(id="gauges"):
            yield HostPanel()
        yield ScreenBar("gauges")
        yield Footer()

    @property
    def status_line(self) -> Readout:
        return self.query_one("#gauges-status", Readout)

    @property
    def host_panel(self) -> HostPanel:
        return self.query_one(HostPanel)

    def on_mount(self) -> None:
        self._connect()

    @work(thread=True, exclusive=True, group="gauges-connect")
    def _connect(self) -> None:
        # The first use opens NVML, which can take a while on some drivers: never on the UI thread.
        try:
            poller = self.runtime.telemetry
        except Exception as exc:  # sources never raise, but a broken install must not take the app down
            self.failure = Content.assemble(
                ("Telemetry could not start: ", "bold $error"), f"{type(exc).__name__}: {exc}"
            )
            self.app.call_from_thread(lambda: None if self._gone() else self._show_status(None))
        else:
            self.app.call_from_thread(self._connected, poller)

    def _gone(self) -> bool:
        """The screen was taken down (the app quit) while the poller started: nothing is left to show on."""
        return not self.is_attached or not self.query("#gauges-status")

    def _connected(self, poller: TelemetryPoller) -> None:
        if self._gone():
            return
        self.poller = poller
        # The user may have left the screen while the poller started: the timer then waits for the resume.
        self._tick_timer = self.set_interval(poller.interval_s, self.tick, pause=self.paused or not self.is_active)
        if self.is_active:
            self.tick()

    def on_screen_suspend(self) -> None:
        if self._tick_timer is not None:
            self._tick_timer.pause()

    def on_screen_resume(self) -> None:
        if self._tick_timer is not None and not self.paused:
            self._tick_timer.resume()
            self.tick()

    def action_pause(self) -> None:
        """Freeze the gauges (to read them) or let them run again."""
        self.paused = not self.paused
        if self._tick_timer is not None:
            if self.paused:
                self._tick_timer.pause()
            else:
                self._tick_timer.resume()
        self._show_status(self.shown)
        if not self.paused:
            self.tick()

    def tick(self) -> None:
        """Show the poller's latest snapshot if it is new (cheap: a lock and a comparison otherwise)."""
        if self.poller is None or self.paused:
            return
        latest = self.poller.latest
        if latest is None or (self.shown is not None and latest.taken_at == self.shown.taken_at):
            if latest is None:
                self._show_status(None)
            return
        self.shown = latest
        self._show_snapshot(latest, self.poller.history())

    def _show_snapshot(self, snapshot: Snapshot, history: list[Snapshot]) -> None:
        util: dict[int, list[float]] = {gpu.index: [] for gpu in snapshot.gpus}
        memory: dict[int, list[float]] = {gpu.index: [] for gpu in snapshot.gpus}
        cpu: list[float] = []
        ram: list[float] = []
        for past in history:
            for gpu in past.gpus:
                if gpu.index in util and gpu.utilization_pct is not None:
                    util[gpu.index].append(gpu.utilization_pct)
                if gpu.index in memory and gpu.memory_used_bytes is not None:
                    memory[gpu.index].append(float(gpu.memory_used_bytes))
            if past.host.cpu_pct is not None:
                cpu.append(past.host.cpu_pct)
            if past.host.ram_used_bytes is not None:
                ram.append(float(past.host.ram_used_bytes))
        self._sync_panels([gpu.index for gpu in snapshot.gpus])
        for gpu in snapshot.gpus:
            self._panels[gpu.index].show(gpu, util[gpu.index], memory[gpu.index], self._owner)
        self.host_panel.show(snapshot.host, cpu, ram)
        self._show_status(snapshot)

    def _sync_panels(self, indices: list[int]) -> None:
        """One panel per GPU in the snapshot, in its order, above the host panel."""
        if list(self._panels) == indices:
            return
        for panel in self._panels.values():
            panel.remove()
        self._panels = {index: GpuPanel(index) for index in indices}
        if self._panels:
            self.query_one("#gauges", VerticalScroll).mount_all(self._panels.values(), before=self.host_panel)

    def _owner(self, process: GpuProcess) -> str | None:
        """Our instance's run id and model for a process of ours, else None."""
        if process.run_id is not None:
            if process.run_id not in self._models:
                self._models[process.run_id] = self._model_of(process.run_id)
            model = self._models[process.run_id]
            return f"{process.run_id} · {model}" if model else process.run_id
        if process.pid == os.getpid():
            return "llm-tui (this app)"
        return None

    def _model_of(self, run_id: str) -> str | None:
        try:
            return self.runtime.manager.info(run_id).model_id
        except Exception:  # the instance may have stopped since the sample; the run id alone still says it
            return None

    def _show_status(self, snapshot: Snapshot | None) -> None:
        """One line above the panels: no sample yet, no GPU and why, a partial GPU status, or paused."""
        parts: list[Content] = []
        if self.failure is not None:
            parts.append(self.failure)
        elif snapshot is None:
            parts.append(Content.styled("Waiting for the first sample…", "$text-muted"))
        elif not snapshot.gpus:
            parts.append(no_gpu_line(snapshot.gpu_status))
        elif snapshot.gpu_status:
            parts.append(Content.styled(snapshot.gpu_status, "$warning"))
        if self.paused:
            parts.append(Content.styled("Paused — p resumes", "bold $accent"))
        status = self.status_line
        status.display = bool(parts)
        status.show(Content(" · ").join(parts))
