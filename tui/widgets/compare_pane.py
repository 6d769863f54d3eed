"""One pane of the compare screen: a model's header and state, its reply streaming through the chat's
widgets (ChatLog + MessageView), and a line of live metrics with the RAM/VRAM its instance holds."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Static

from engines.catalog.fit import human_bytes
from engines.compare.types import REMOTE_ENGINES, LiveMetrics, PaneResult, PaneState
from engines.store.records import TurnMetrics
from engines.types import Delta, Done, Error, Footprint, StreamEvent
from tui.chat_turn import metrics_line
from tui.widgets.chat_log import ChatLog
from tui.widgets.log_message import LogMessage

_STATUS_OF_RESULT = {"done": "complete", "stopped": "cancelled", "error": "error"}


def memory_text(ram_bytes: int | None, vram_bytes: int | None, engine: str | None = None) -> str:
    """`RAM 350 MB · VRAM 1.2 GB` (VRAM only when the instance holds some), "" when nothing is known; a remote
    engine's model is in another machine's memory, so it says that instead of what its client holds here."""
    if engine in REMOTE_ENGINES:
        return "RAM n/a (remote)"
    parts = [f"RAM {human_bytes(ram_bytes)}"] if ram_bytes else []
    parts += [f"VRAM {human_bytes(vram_bytes)}"] if vram_bytes else []
    return " · ".join(parts)


def live_line(live: LiveMetrics) -> str:
    """The metrics line while a reply streams: exact first-token time, estimated tokens and speed."""
    if live.ttft_ms is None:
        return "waiting for the first token"
    parts = [f"TTFT {live.ttft_ms:.0f} ms", f"≈{live.tokens_estimate} tokens"]
    speed = live.tokens_per_s_estimate
    if speed is not None:
        parts.append(f"≈{speed:.0f} tok/s")
    return " · ".join(parts)


class PaneLog(ChatLog):
    """The chat's log holding a pane's one reply: no message to step between, so k/j neither act nor take room in
    the footer (at 80 columns the screen's own keys fill it)."""

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("select_previous", "select_next"):
            return False
        return super().check_action(action, parameters)


class ComparePane(Vertical):
    """A compared model: border title "2 gemma-3-270m · llama.cpp (run-3)", state on the bottom border."""

    DEFAULT_CSS = """
    ComparePane {
        height: 1fr;
        border: round $primary 50%;
        border-title-color: $text;
        border-title-style: bold;
        border-subtitle-color: $text-muted;
        padding: 0;
        &:focus-within { border: round $accent; }
        &.-running { border-subtitle-color: $text-accent; }
        &.-loading { border-subtitle-color: $text-warning; }
        &.-done { border-subtitle-color: $text-success; }
        &.-error { border-subtitle-color: $text-error; }
        /* As tall as the reply, from the top, until it fills the pane; then it scrolls, following the end. */
        & > ChatLog { height: auto; max-height: 100%; padding: 0; }
        & MessageView > .header { display: none; }
        & > .pane-metrics {
            dock: bottom; height: auto; max-height: 2; padding: 0 1; color: $text-muted; text-overflow: ellipsis;
        }
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("delete,x", "remove", "Remove model", show=False)]

    class RemoveRequested(Message):
        """The user asked to take this pane's model out of the comparison."""

        def __init__(self, pane: ComparePane) -> None:
            super().__init__()
            self.pane = pane

    def __init__(self, number: int, title: str, run_id: str | None = None) -> None:
        """`run_id`: the user's instance the pane compares (None: a model each run launches)."""
        super().__init__()
        self.number = number
        self.title = title
        self.instance = run_id
        self.run_id = run_id
        """The instance of the last run, kept after it ends (the one its log and metrics belong to)."""
        self.engine: str | None = None
        self.state: PaneState | None = None
        self._key = 0
        self._memory = ""
        self._metrics = ""
        self._show_title()

    def compose(self) -> ComposeResult:
        yield PaneLog(classes="pane-log")
        yield Static("", classes="pane-metrics", markup=False)

    @property
    def log_view(self) -> ChatLog:
        """The pane's transcript: one reply."""
        return self.query_one(ChatLog)

    @property
    def reply_text(self) -> str:
        """The reply shown, so far."""
        view = self.log_view.reply(self._key)
        return view.text if view is not None else ""

    def renumber(self, number: int, title: str | None = None, engine: str | None = None) -> None:
        """Show a new position (after a pane before it was removed), title or engine."""
        self.number = number
        self.title = title or self.title
        self.engine = engine or self.engine
        self._show_title()

    def _show_title(self) -> None:
        run = f" ({self.run_id})" if self.run_id and self.run_id not in self.title else ""
        self.border_title = f"{self.number} {self.title}{run}"

    def action_remove(self) -> None:
        self.post_message(self.RemoveRequested(self))

    # -- a run ------------------------------------------------------------------------------------------------

    def begin(self) -> None:
        """Start an empty reply for a new run."""
        self._key += 1
        self._memory = self._metrics = ""
        self.run_id = self.instance  # a launched model gets a new run id when this run loads it
        self._show_title()
        log = self.log_view
        log.clear()
        log.start_reply(self._key)
        self.set_state("waiting", "waiting")

    def set_state(
        self,
        state: PaneState,
        detail: str,
        footprint: Footprint | None = None,
        error: str | None = None,
        run_id: str | None = None,
    ) -> None:
        """Show the pane's state on its border; its instance and the memory it holds once known; an error in the
        reply."""
        for name in ("waiting", "loading", "running", "done", "stopped", "error"):
            self.set_class(state == name, f"-{name}")
        self.state = state
        self.border_subtitle = detail
        if run_id is not None and run_id != self.run_id:
            self.run_id = run_id
            self._show_title()
        if footprint is not None or self.engine in REMOTE_ENGINES:
            ram, vram = (footprint.ram_bytes, footprint.vram_bytes) if footprint is not None else (None, None)
            self._memory = memory_text(ram, vram, self.engine)
        view = self.log_view.reply(self._key)
        if view is not None and view.streaming:
            if state == "error":
                view.set_error(error or "failed")
            elif state == "stopped":
                view.finish(status="cancelled")
        self._show_metrics()

    def apply(self, event: StreamEvent, live: LiveMetrics) -> None:
        """One streamed event of the reply, with the numbers so far."""
        view = self.log_view.reply(self._key)
        if isinstance(event, Delta):
            if view is not None:
                view.append(event.text)
            self._metrics = live_line(live)
        elif isinstance(event, Done):
            self._metrics = metrics_line(TurnMetrics.from_done(event))
            if view is not None:
                view.finish(status="cancelled" if event.finish_reason == "cancelled" else "complete")
        elif isinstance(event, Error) and view is not None:
            view.set_error(event.message)
        self._show_metrics()

    def show_result(self, result: PaneResult) -> None:
        """Show a finished pane (a saved run reopened): its reply, how it ended, its metrics and memory."""
        self._key += 1
        status = _STATUS_OF_RESULT.get(result.status, "complete")
        self.log_view.load([LogMessage(self._key, "assistant", result.text, status=status)])
        view = self.log_view.reply(self._key)
        if view is not None and result.status == "error":
            view.set_error(result.error or "failed")
        self.engine = result.engine
        self._memory = memory_text(result.ram_bytes, result.vram_bytes, result.engine)
        self._metrics = metrics_line(result.metrics) if result.metrics is not None else ""
        detail = f"{result.status} · unloaded" if result.unloaded else result.status
        self.set_state(result.status, detail)

    def _show_metrics(self) -> None:
        figures = [f for part in (self._metrics, self._memory) if part for f in part.split(" · ")]
        width = max(self.size.width - 4, 10)  # the border and the line's padding
        self.query_one(".pane-metrics", Static).update(pack(figures, width))

    def on_resize(self) -> None:
        self._show_metrics()


def pack(figures: list[str], width: int) -> str:
    """Figures joined by " · ", broken into lines of `width` only between figures (never inside "9→15 tokens")."""
    lines: list[str] = []
    for figure in figures:
        if lines and len(lines[-1]) + 3 + len(figure) <= width:
            lines[-1] += " · " + figure
        else:
            lines.append(figure)
    return "\n".join(lines)
