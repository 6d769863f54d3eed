"""Ask yes or no before something that cannot be undone (or that starts something big, like a download)."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Static

QUESTION_WIDTH = 56
"""Cells a question has in the dialog at 80 columns (64 wide, less border and padding)."""


def short_path(path: Path | str, width: int = QUESTION_WIDTH) -> str:
    """`path` in at most `width` cells: whole if it fits, else its file name kept and the middle of its folder
    elided (`/home/me/…/models/file.gguf`), so the part that names the file is never the part cut."""
    text = str(path)
    if len(text) <= width:
        return text
    folder, sep, name = text.rpartition("/")
    if not sep or len(name) + 2 >= width:  # no folder to shorten, or the name alone is too long: keep its end
        return "…" + text[-(width - 1) :]
    room = width - len(name) - 2  # "…" and "/"
    tail = ""  # the folder's last whole components that fit in half the room (the ones nearest the file)
    for part in reversed(folder.split("/")[1:]):
        if len(tail) + len(part) + 1 > room // 2:
            break
        tail = f"/{part}{tail}"
    return f"{folder[: room - len(tail)]}…{tail}/{name}"


class ConfirmModal(ModalScreen[bool | None]):
    """Returns True when the user confirms (y / Enter on Yes), False for no (n), None when backed out of (Esc):
    for most questions the same, but "Cancel the download: delete its file?" must not cancel on Esc.

    The question wraps, so all of it shows at 80x24; it is plain text (a `[` in a name stays as typed). A
    `danger` question (deleting) starts on No; any other on Yes.
    """

    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n", "answer(False)", "No"),
        Binding("escape", "back", "Back"),
    ]
    DEFAULT_CSS = """
    ConfirmModal #question { width: 100%; height: auto; }
    """

    def __init__(self, question: str, *, yes: str = "Yes", no: str = "No", danger: bool = True) -> None:
        super().__init__()
        self.question = question
        self.yes = yes
        self.no = no
        self.danger = danger

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.question, classes="dialog-title", id="question", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self.yes} (y)", variant="error" if self.danger else "primary", id="yes")
                yield Button(f"{self.no} (n)", id="no")
        yield Footer()  # the dialog's own keys, not those of the screen beneath

    def on_mount(self) -> None:
        self.query_one("#no" if self.danger else "#yes", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)

    def action_back(self) -> None:
        self.dismiss(None)
