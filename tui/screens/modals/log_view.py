"""Read an instance's log: the last lines its engine wrote, newest at the bottom."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Label, Log


class LogModal(ModalScreen[None]):
    """A scrollable log; Esc or q closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q", "close", "Close")]
    DEFAULT_CSS = """
    LogModal .dialog { height: 90%; }
    LogModal #log-lines { height: 1fr; border: none; background: $surface; }
    """

    def __init__(self, title: str, lines: Sequence[str]) -> None:
        super().__init__()
        self.title_text = title
        self.lines = list(lines)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label(self.title_text, classes="dialog-title")
            yield Log(id="log-lines", highlight=False, auto_scroll=True)
            # Log lines do not wrap (an engine's log keeps its columns): say how to read the end of a long one.
            hint = "← → scroll long lines · Esc closes" if self.lines else "Nothing logged yet. Esc closes"
            yield Label(hint, classes="dialog-hint")
        yield Footer()  # the dialog's own keys, not those of the screen beneath

    def on_mount(self) -> None:
        log = self.query_one(Log)
        log.write_lines(self.lines)
        log.focus()

    def action_close(self) -> None:
        self.dismiss(None)
