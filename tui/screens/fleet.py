"""The fleet screen: this box and the hosts of `[[fleet]]` in one table, host → GPUs → models → VRAM → tok/s → queue.

Hosts are polled together every 2 s by an async worker (engines.fleet.poller), each bounded by its own timeout, so
a slow or dead host shows as such ("down · timed out after 2.0 s · last seen 8 s ago") without holding the others.
Other llm-tui servers are read from their status document; vLLM, SGLang, TGI and llama-server (kind "openai") from
their /v1/models and Prometheus /metrics. This machine is read from the app itself, through the same code.

Enter opens a chat with the selected model (another host's through the remote engine), `n` launches a model on the
selected host (another llm-tui host needs a key with the admin scope), `s` stops the selected one, `v` sorts the
hosts by free VRAM, `r` polls now.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import ClassVar

from rich.markup import escape
from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Footer, Header, Static

from engines.errors import LlmTuiError
from engines.fleet.types import FleetInstance, FleetMember, HostView
from tui.fleet_rows import (
    COLUMNS,
    NARROW_DROPS,
    FleetRow,
    fleet_rows,
    host_detail,
    instance_detail,
    row_cells,
)
from tui.screen_list import CHAT
from tui.screens.app_screen import AppScreen
from tui.widgets.live_table import LiveTable
from tui.widgets.screen_bar import ScreenBar

POLL_S = 2.0
FLEET_HINT = (
    'Only this box. Add hosts to config.toml: [[fleet]] name = "gpu-2", url = "http://10.0.0.2:8000", '
    'key_env = "GPU2_KEY" (another llm-tui serve), or kind = "openai" for vLLM, SGLang, TGI, llama-server.'
)


class FleetScreen(AppScreen):
    """Every machine's GPUs and models in one table; chat with, launch and stop models on any of them."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter,c", "open_chat", "Chat", key_display="⏎"),
        Binding("n", "launch_new", "Launch…"),
        Binding("s,delete", "stop", "Stop"),
        Binding("v", "sort_vram", "Sort VRAM"),
        Binding("r", "poll_now", "Poll", show=False),
    ]

    DEFAULT_CSS = """
    #fleet-status { height: 1; padding: 0 1; color: $text-muted; background: $boost; }
    #fleet-table { height: 1fr; }
    #fleet-detail { height: auto; max-height: 7; padding: 0 1; border-top: solid $primary-muted; }
    """
    clock = staticmethod(time.time)
    """Wall time for "last seen" (tests fix it)."""
    poll_s = POLL_S

    def __init__(self) -> None:
        super().__init__(name="fleet")
        self.views: list[HostView] = []
        self.by_free_vram = False
        self._rows: list[FleetRow] = []
        self._wake = asyncio.Event()
        self._busy: set[str] = set()
        """Hosts with a launch or stop under way (their key), so one `n` twice does not launch twice."""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="fleet-status")
        yield LiveTable(COLUMNS, id="fleet-table")
        yield Static("", id="fleet-detail")
        yield ScreenBar("fleet")
        yield Footer()

    def on_mount(self) -> None:
        self.table.focus()
        self.views = [self._local_view()] + [HostView(m, reachable=False) for m in self.members]
        self.show_rows()
        self._poll_loop()

    def on_resize(self, _event: events.Resize) -> None:
        self.call_after_refresh(self.show_rows)

    @property
    def members(self) -> tuple[FleetMember, ...]:
        return self.runtime.config.fleet

    @property
    def table(self) -> LiveTable:
        return self.query_one(LiveTable)

    @property
    def selected(self) -> FleetRow | None:
        row = self.table.cursor_row
        return self._rows[row] if 0 <= row < len(self._rows) else None

    # -- polling ------------------------------------------------------------------------------------------------

    @work(exclusive=True, group="fleet-poll")
    async def _poll_loop(self) -> None:
        """Poll every host every `poll_s` while this screen is shown (a hidden screen's table waits)."""
        from engines.fleet.poller import FleetPoller

        poller = FleetPoller(self.members, self.runtime.config.env)
        try:
            while True:
                if self.is_current or not self.views[1:]:
                    remote = await poller.poll() if self.members else []
                    self.views = [self._local_view(), *remote]
                    self.show_rows()
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.poll_s)
        finally:
            await poller.aclose()

    def _local_view(self) -> HostView:
        """This machine, through the same document other hosts publish (its GPUs from the app's telemetry)."""
        from engines.fleet.read_status import local_view

        runtime = self.runtime
        snapshot = runtime.telemetry.latest
        return local_view(runtime.manager.instances(), snapshot, ())

    def action_poll_now(self) -> None:
        self._wake.set()

    def action_sort_vram(self) -> None:
        self.by_free_vram = not self.by_free_vram
        self.notify("Hosts sorted by free VRAM." if self.by_free_vram else "Hosts in config order.")
        self.show_rows()

    # -- drawing ------------------------------------------------------------------------------------------------

    def show_rows(self) -> None:
        now = self.clock()
        colours = self.app.theme_variables
        self._rows = fleet_rows(self.views, self.by_free_vram)
        rows = [row_cells(r, now, colours) for r in self._rows]
        self.table.show_fitted([(r.key, c) for r, c in zip(self._rows, rows, strict=True)], COLUMNS, NARROW_DROPS)
        self._show_status()
        self._show_detail()

    def _show_status(self) -> None:
        status = self.query_one("#fleet-status", Static)
        if not self.members:
            status.update(FLEET_HINT)
            return
        up = sum(1 for v in self.views if v.reachable)
        models = sum(len(v.instances) for v in self.views if v.reachable)  # a down host's are as last seen
        order = " · sorted by free VRAM" if self.by_free_vram else ""
        status.update(f"{up} of {len(self.views)} hosts up · {models} models running · every {self.poll_s:g} s{order}")

    def _show_detail(self) -> None:
        row = self.selected
        detail = self.query_one("#fleet-detail", Static)
        if row is None:
            detail.update("")
            return
        lines = host_detail(row.host, self.clock()) if row.instance is None else instance_detail(row.host, row.instance)
        text = [escape(line) for line in lines]
        text[0] = f"[b]{text[0]}[/b]"
        if not row.host.reachable and row.instance is not None:
            text.append("[dim]as last seen: the host does not answer[/dim]")
        detail.update("\n".join(text))

    def on_data_table_row_highlighted(self) -> None:
        self._show_detail()

    def on_data_table_row_selected(self) -> None:
        self.action_open_chat()  # Enter on a row (the table takes Enter before the screen's binding)

    # -- actions ------------------------------------------------------------------------------------------------

    def action_open_chat(self) -> None:
        row = self.selected
        if row is None:
            return
        if row.instance is None:
            self.notify("Select one of the host's models (↓) to chat with it; n launches one.")
            return
        instance, view = row.instance, row.host
        if view.local:
            if instance.state not in ("ready", "busy"):
                self.notify(f"{instance.run_id} is {instance.state}; it can chat once it is ready.", severity="warning")
                return
            self.shell.set_active_instance(instance.run_id)
            self.shell.switch_mode(CHAT.mode)
            return
        if not view.reachable:
            self.notify(f"{view.member.name} does not answer: {view.error}", severity="warning")
            return
        # Another host's model, through the remote engine: remote:HOST/<run id or served model>.
        self.shell.launch_model(f"remote:{view.member.name}/{instance.run_id}", "remote")
        self.shell.switch_mode(CHAT.mode)

    def action_launch_new(self) -> None:
        row = self.selected
        if row is None:
            return
        view = row.host
        if view.local:
            from tui.launch_flow import pick_and_launch

            pick_and_launch(self)  # the instances screen's picker and launch dialog
            return
        if view.member.kind != "llm-tui":
            self.notify(f"{view.member.name} is read-only here (kind {view.member.kind}).", severity="warning")
            return
        if not view.reachable:
            self.notify(f"{view.member.name} does not answer: {view.error}", severity="warning")
            return
        if not view.models:
            self.notify(f"{view.member.name} has no model on disk to launch.", severity="warning")
            return
        from tui.screens.modals.host_models import HostModelsModal

        def chosen(model: str | None) -> None:
            if model:
                self._launch_on(view.member, model)

        self.app.push_screen(HostModelsModal(view.member.name, view.models), chosen)

    @work(group="fleet-admin")
    async def _launch_on(self, member: FleetMember, model: str) -> None:
        from engines.fleet.admin import launch_on

        key = f"launch:{member.name}:{model}"
        if key in self._busy:
            self.notify(f"{model} is already being launched on {member.name}.")
            return
        self._busy.add(key)
        self.notify(f"Launching {model} on {member.name}…", title="Launch")
        try:
            instance = await launch_on(member, self.runtime.config.env, model)
        except LlmTuiError as exc:
            self.notify(str(exc), title=f"Cannot launch on {member.name}", severity="error", timeout=10)
            return
        finally:
            self._busy.discard(key)
        self.notify(f"{instance.model} is {instance.state} on {member.name} as {instance.run_id}.", title="Launched")
        self._wake.set()

    def action_stop(self) -> None:
        row = self.selected
        if row is None or row.instance is None:
            if row is not None:
                self.notify("Select one of the host's models (↓) to stop it.")
            return
        instance, view = row.instance, row.host
        if view.local:
            self.shell.stop_instance(instance.run_id)
            self.notify(f"Stopping {instance.run_id} ({instance.model})…", title="Stop")
            return
        if view.member.kind != "llm-tui":
            self.notify(f"{view.member.name} is read-only here (kind {view.member.kind}).", severity="warning")
            return
        from tui.screens.modals.confirm import ConfirmModal

        def answered(yes: bool | None) -> None:
            if yes:
                self._stop_on(view.member, instance)

        question = f"Stop {instance.model} ({instance.run_id}) on {view.member.name}? Requests to it will fail."
        self.app.push_screen(ConfirmModal(question, danger=True), answered)

    @work(group="fleet-admin")
    async def _stop_on(self, member: FleetMember, instance: FleetInstance) -> None:
        from engines.fleet.admin import stop_on

        try:
            await stop_on(member, self.runtime.config.env, instance.run_id)
        except LlmTuiError as exc:
            self.notify(str(exc), title=f"Cannot stop on {member.name}", severity="error", timeout=10)
            return
        self.notify(f"Stopped {instance.run_id} on {member.name}.", title="Stop")
        self._wake.set()
