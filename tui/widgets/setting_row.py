"""One setting on the settings screen: its label, its editor and, under it, why its value is refused or where
the running value comes from."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, Input, Label, Select, Static

from engines.config.fields import SettingField


class SettingRow(Vertical):
    """Edits one field; `original` is the text the file holds, so the row knows when it is changed."""

    DEFAULT_CSS = """
    SettingRow { height: auto; }
    SettingRow > Horizontal { height: 1; }
    SettingRow .setting-label { width: 21; padding: 0 1; color: $text-muted; }
    SettingRow.-dirty .setting-label { color: $text-accent; text-style: bold; }
    SettingRow Input { width: 1fr; padding: 0 1; background: $boost; }
    SettingRow Select { width: 1fr; height: 1; }
    SettingRow Select > SelectCurrent { border: none; height: 1; padding: 0 1; background: $boost; }
    /* Focus must show in every theme: a tint of the accent on the editor, and its label in the accent. */
    SettingRow Input:focus, SettingRow Select:focus > SelectCurrent { background: $accent 30%; }
    SettingRow:focus-within .setting-label { color: $text-accent; text-style: bold; }
    SettingRow Button { min-width: 9; margin-left: 1; }
    SettingRow .setting-note { padding: 0 1 0 22; color: $text-muted; height: auto; display: none; }
    SettingRow .setting-note.-shown { display: block; }
    SettingRow .setting-note.-error { color: $text-error; }
    """

    class Edited(Message):
        """The row's text changed (typed, chosen, cleared or reverted)."""

        def __init__(self, row: SettingRow) -> None:
            super().__init__()
            self.row = row

    def __init__(
        self,
        field: SettingField,
        original: str,
        *,
        placeholder: str,
        choices: Sequence[str] = (),
        secret_set: bool = False,
    ) -> None:
        """`choices` make the editor a list (theme, yes/no); `secret_set` says the file holds the token."""
        super().__init__(id=f"row-{field.id}")
        self.field = field
        self.original = original
        self.placeholder = placeholder
        self.choices = tuple(choices)
        self.secret_set = secret_set
        self.cleared = False
        """A secret the user asked to remove."""
        self.error: str | None = None
        self._note_shown: tuple[str, bool] = ("", False)
        """The note line's text and whether it is an error, as drawn."""

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield Label(self.field.label, classes="setting-label")
            if self.choices:
                options = [(c, c) for c in self.choices]
                value = self.original if self.original in self.choices else Select.NULL
                yield Select(options, prompt=self.placeholder, value=value, id=self.field.id, compact=True)
            elif self.field.kind == "secret":
                yield Input("", placeholder=self._secret_placeholder(), password=True, id=self.field.id, compact=True)
                yield Button("Clear", id=f"clear-{self.field.id}", compact=True, disabled=not self.secret_set)
            else:
                yield Input(self.original, placeholder=self.placeholder, id=self.field.id, compact=True)
        yield Static("", classes="setting-note")

    def _secret_placeholder(self) -> str:
        if self.cleared:
            return "removed from the file on save (esc keeps it)"
        return "set (hidden) · type a new one to replace it" if self.secret_set else "not set · paste a token"

    @property
    def text(self) -> str:
        """What the editor holds now ("" for an empty field or no choice)."""
        if self.choices:
            value = self.query_one(Select).value
            return value if isinstance(value, str) else ""
        return self.query_one(Input).value

    @property
    def dirty(self) -> bool:
        """Whether saving would change the file for this field."""
        if self.field.kind == "secret":
            return self.cleared or bool(self.text.strip())
        return self.text.strip() != self.original.strip()

    def set_text(self, text: str) -> None:
        """Put `text` in the editor (an Edited message follows)."""
        if self.choices:
            select: Select[str] = self.query_one(Select)
            if text in self.choices:
                select.value = text
            else:
                select.clear()
        else:
            self.query_one(Input).value = text

    def revert(self) -> None:
        """Back to what the file holds."""
        self.cleared = False
        self._show_secret_state()
        self.set_text("" if self.field.kind == "secret" else self.original)
        self.post_message(self.Edited(self))

    def saved(self, text: str, *, secret_set: bool | None = None) -> None:
        """The file now holds `text` (for a secret: whether one is set); the row is clean when it shows that."""
        self.original = text
        if secret_set is not None:
            self.secret_set, self.cleared = secret_set, False
            self.query_one(Input).value = ""
            self._show_secret_state()
        self.set_class(self.dirty, "-dirty")

    def show(self, error: str | None, note: str | None = None) -> None:
        """Say why the value is refused (in the error colour), or a note about it; nothing hides the line."""
        self.error = error
        text = error or note or ""
        shown = (text, error is not None)
        if shown != self._note_shown:  # most keys change nothing here; an update would lay out the whole form
            self._note_shown = shown
            line = self.query_one(".setting-note", Static)
            line.update(Text(text))
            line.set_class(bool(text), "-shown")
            line.set_class(error is not None, "-error")
        self.set_class(self.dirty, "-dirty")

    def _show_secret_state(self) -> None:
        if self.field.kind == "secret":
            self.query_one(Input).placeholder = self._secret_placeholder()
            self.query_one(Button).disabled = not self.secret_set or self.cleared

    @on(Input.Changed)
    @on(Select.Changed)
    def _changed(self, event: Message) -> None:
        event.stop()
        self.post_message(self.Edited(self))

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.screen.focus_next()

    @on(Button.Pressed)
    def _clear(self, event: Button.Pressed) -> None:
        event.stop()
        self.cleared = True
        self.query_one(Input).value = ""
        self._show_secret_state()
        self.query_one(Input).focus()
        self.post_message(self.Edited(self))
