"""Ask for one line of text (a session title, a file name)."""

from __future__ import annotations

from collections.abc import Callable

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Label, Static


class TextPromptModal(ModalScreen[str | None]):
    """Returns the entered text (Enter), or None (Esc).

    Empty text is refused on the field, and so is text for which `check` returns a reason.
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    TextPromptModal #title, TextPromptModal #hint { width: 100%; height: auto; }
    """

    def __init__(
        self,
        title: str,
        value: str = "",
        *,
        placeholder: str = "",
        check: Callable[[str], str | None] | None = None,
    ) -> None:
        super().__init__()
        self.check = check
        self.title_text = title
        self.value = value
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.title_text, classes="dialog-title", id="title", markup=False)  # wraps: all of it shows
            yield Input(self.value, placeholder=self.placeholder, id="text")
            yield Label("Enter to accept, Esc to cancel", classes="dialog-hint", id="hint")
        yield Footer()  # the dialog's own keys, not those of the screen beneath

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if not event.value.strip():
            self.query_one("#hint", Label).update("[b]It cannot be empty.[/b] Enter to accept, Esc to cancel")
            return
        problem = self.check(event.value) if self.check else None
        if problem:
            self.query_one("#hint", Label).update(f"[b]{escape(problem)}[/b]\nEnter to accept, Esc to cancel")
            return
        self.dismiss(event.value.strip())

    def action_cancel(self) -> None:
        self.dismiss(None)
