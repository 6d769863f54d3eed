"""The instances screen: every loaded model with its engine, device, state, memory, speed and age.

The table is read from the engine manager once a second (a lock-protected
snapshot per instance, no waiting on engines). Enter opens the chat with the
selected instance, `s` stops it (a load in progress is cancelled), `r`
restarts it with the same options, `l` shows its log, `n` picks a model and opens
the launch dialog. `a` starts or stops the OpenAI-compatible API over the running
instances (its URL, request count and last error show under the table); `A` shows
the API's recent requests.
"""

from __future__ import annotations

import contextlib
import time
from typing import ClassVar

from rich.markup import escape
from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Footer, Header, Static

from engines.catalog.fit import human_bytes
from engines.errors import LlmTuiError
from engines.types import InstanceInfo, InstanceState
from tui.screen_list import CHAT
from tui.screens.app_screen import AppScreen
from tui.widgets.api_status import ApiStatus
from tui.widgets.live_table import LiveTable
from tui.widgets.screen_bar import ScreenBar

COLUMNS = ("Run", "Model", "Engine", "Device", "State", "RAM", "VRAM", "tok/s", "Reqs", "Up", "Idle")
NARROW_DROPS = ("Engine", "Reqs", "Up")
"""Columns given up, in this order, when the table is too narrow: the run id ends with the engine's name
("r1-llama.cpp"), and requests and uptime matter least; state, memory and idle time always stay."""
STATE_COLOUR = {
    InstanceState.LOADING: "warning",
    InstanceState.READY: "success",
    InstanceState.BUSY: "accent",
    InstanceState.ERROR: "error",
}
"""Theme colour of each state (the others use the default text colour)."""


def duration(seconds: float | None) -> str:
    """3 s, 4 m, 2 h 5 m, 3 d — as wide as a table cell allows."""
    if seconds is None:
        return "-"
    s = int(max(0, seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} m"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} m"
    return f"{s // 86400} d"


def cells(info: InstanceInfo, now: float, active: str | None, colours: dict[str, str]) -> tuple[str | Text, ...]:
    """One table row for an instance (the active one marked with ▶); `colours` are the theme's variables."""
    state = info.state.value
    if info.state is InstanceState.LOADING and info.started_at:
        state = f"loading {duration(now - info.started_at)}"  # engines report no load fraction yet
    elif info.state is InstanceState.BUSY and info.slots > 1:  # slots in use, then requests waiting for one
        state = f"busy {info.slots_busy}/{info.slots}" + (f" +{info.queued}" if info.queued else "")
    elif info.state is InstanceState.BUSY and info.pending_requests > 1:
        state = f"busy +{info.pending_requests - 1}"
    return (
        ("▶ " if info.run_id == active else "  ") + info.run_id,
        info.model_id,
        info.engine,
        info.device,
        Text(state, style=colours.get(STATE_COLOUR.get(info.state, ""), "")),
        human_bytes(info.footprint.ram_bytes) if info.footprint.ram_bytes else "-",
        human_bytes(info.footprint.vram_bytes) if info.footprint.vram_bytes else "-",
        f"{info.last_tokens_per_s:.1f}" if info.last_tokens_per_s else "-",
        str(info.requests_served),
        duration(now - info.started_at if info.started_at else None),
        duration(info.idle_s) if info.state is InstanceState.READY else "-",
    )


class InstancesScreen(AppScreen):
    """Running models: watch them, chat with one, stop or restart them, read their logs."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter,c", "open_chat", "Chat", key_display="⏎"),
        Binding("s,delete", "stop", "Stop"),
        Binding("r", "restart", "Restart"),
        Binding("l", "show_log", "Log"),
        Binding("n", "launch_new", "Launch…"),
        Binding("a", "toggle_api", "API on/off"),
        Binding("A", "api_log", "API log", show=False),
    ]

    DEFAULT_CSS = """
    #instances-status { height: 1; padding: 0 1; color: $text-muted; background: $boost; }
    #instances-table { height: 1fr; }
    #instances-detail { height: auto; max-height: 6; padding: 0 1; border-top: solid $primary-muted; }
    #instances-api { border-top: solid $primary-muted; }
    """
    clock = staticmethod(time.time)
    """Wall time for uptimes (tests fix it)."""

    def __init__(self) -> None:
        super().__init__(name="instances")
        self._shown: list[InstanceInfo] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="instances-status")
        yield LiveTable(COLUMNS, id="instances-table")
        yield Static("", id="instances-detail")
        yield ApiStatus(id="instances-api")
        yield ScreenBar("instances")
        yield Footer()

    def on_mount(self) -> None:
        self.table.focus()
        self.refresh_table()
        self.call_after_refresh(self.refresh_table)  # again once the table knows its width
        self.set_interval(1.0, self.refresh_table)

    def on_resize(self, _event: events.Resize) -> None:
        self.call_after_refresh(self.refresh_table)  # the columns that fit depend on the width

    @property
    def table(self) -> LiveTable:
        return self.query_one(LiveTable)

    @property
    def selected(self) -> InstanceInfo | None:
        row = self.table.cursor_row
        return self._shown[row] if 0 <= row < len(self._shown) else None

    def refresh_table(self) -> None:
        """Re-read every instance; keep the cursor on the same run id."""
        infos = [i for i in self.runtime.manager.instances() if i.state is not InstanceState.STOPPED]
        active = self.runtime.active
        now = self.clock()
        colours = self.app.theme_variables
        active_id = active.run_id if active else None
        rows = [cells(i, now, active_id, colours) for i in infos]
        self.table.show_fitted([(i.run_id, r) for i, r in zip(infos, rows, strict=True)], COLUMNS, NARROW_DROPS)
        self._shown = infos
        self._show_status(infos)
        self._show_detail()
        self.show_api()

    def api_changed(self) -> None:
        """The API server started or stopped: redraw its line."""
        self.show_api()

    def show_api(self) -> None:
        """Redraw the API server's line."""
        try:
            serve = self.runtime.serve_settings()
        except LlmTuiError as exc:  # a bad LLM_TUI_SERVE_PORT: say it where the port would show
            self.query_one(ApiStatus).update(f"[$text-error]API: {escape(str(exc))}[/]")
            return
        self.query_one(ApiStatus).show(self.runtime.api, serve)

    def _show_status(self, infos: list[InstanceInfo]) -> None:
        ram = sum(i.footprint.ram_bytes or 0 for i in infos)
        vram = sum(i.footprint.vram_bytes or 0 for i in infos)
        if not infos:
            text = "No model is loaded. n or F2 opens the catalog to launch one."
        else:
            text = f"{len(infos)} instance{'s' if len(infos) != 1 else ''} · RAM {human_bytes(ram)}"
            if vram:
                text += f" · VRAM {human_bytes(vram)}"
        self.query_one("#instances-status", Static).update(text)

    def _show_detail(self) -> None:
        info = self.selected
        detail = self.query_one("#instances-detail", Static)
        if info is None:
            detail.update("")
            return
        lines = [f"[b]{escape(info.model_id)}[/b] on {info.engine} · {escape(info.device)}"]
        o = info.options
        context = f"context {o.n_ctx:,}" if info.slots <= 1 else f"{info.slots} slots × {o.n_ctx:,} tokens"
        lines.append(f"{context} · GPU layers {o.n_gpu_layers} · threads {o.n_threads or 'auto'}")
        if info.slots > 1:
            lines.append(f"slots in use {info.slots_busy} of {info.slots} · queued {info.queued}")
        if o.speculative:
            rate = f" ({info.draft_accepted / info.draft_proposed:.0%})" if info.draft_proposed else ""
            lines.append(
                f"speculative {o.speculative}: {info.draft_accepted:,} of {info.draft_proposed:,} drafted"
                f" tokens accepted{rate}"
            )
        if info.error:
            lines.append(f"[$text-error]{escape(info.error)}[/]")
        if info.load_s is not None and info.load_s >= 1:  # worth saying only when it was slow
            lines.append(f"[dim]loaded in {info.load_s:.1f} s[/dim]")
        if info.options.idle_unload_s:
            lines.append(f"[dim]unloads after {duration(info.options.idle_unload_s)} idle[/dim]")
        detail.update("\n".join(lines))

    def on_data_table_row_highlighted(self) -> None:
        self._show_detail()

    def on_data_table_row_selected(self) -> None:
        self.action_open_chat()  # Enter on a row (the table takes Enter before the screen's binding)

    # -- actions ------------------------------------------------------------------------------------------

    def action_open_chat(self) -> None:
        info = self.selected
        if info is None:
            return
        if info.state not in (InstanceState.READY, InstanceState.BUSY):
            self.notify(f"{info.run_id} is {info.state.value}; it can chat once it is ready.", severity="warning")
            return
        self.shell.set_active_instance(info.run_id)
        self.shell.switch_mode(CHAT.mode)

    def action_stop(self) -> None:
        info = self.selected
        if info is not None:
            self.shell.stop_instance(info.run_id)  # the palette's stop: a failure is said, not dropped
            self.notify(f"Stopping {info.run_id} ({info.model_id})…", title="Stop")

    def action_restart(self) -> None:
        info = self.selected
        if info is None:
            return
        record = self.runtime.launches.get(info.run_id)
        if record is None:
            self.notify(f"{info.run_id} was not launched from this app; launch it again from the catalog.")
            return
        manager, app, shell = self.runtime.manager, self.app, self.shell

        def restart() -> None:
            # Stopped meanwhile (idle unload, a stop)? Launching it again is still what was asked.
            with contextlib.suppress(LlmTuiError):
                manager.stop(info.run_id, timeout=30)
            app.call_from_thread(shell.launch_model, record.ref, record.engine, record.options)

        self.run_worker(restart, thread=True, group=f"restart-{info.run_id}")
        self.notify(f"Restarting {info.model_id}…", title="Restart")

    def action_toggle_api(self) -> None:
        self.shell.toggle_api()

    def action_api_log(self) -> None:
        """The API server's recent requests, newest at the bottom."""
        from tui.screens.modals.log_view import LogModal
        from tui.widgets.api_status import request_lines

        server = self.runtime.api
        if server is None:
            self.notify("The API server is off; a starts it.")
            return
        self.app.push_screen(LogModal(f"API requests · {server.url}", request_lines(server.stats)))

    def action_show_log(self) -> None:
        info = self.selected
        if info is None:
            return
        from tui.screens.modals.log_view import LogModal

        log = self.runtime.instance_log
        lines = log.lines(info.run_id) if log is not None else []
        self.app.push_screen(LogModal(f"Log of {info.run_id} · {info.model_id}", lines))

    def action_launch_new(self) -> None:
        """Pick a model (catalog id, alias, GGUF path, or a running instance), then the launch dialog."""
        from tui.launch_flow import pick_and_launch

        pick_and_launch(self)
