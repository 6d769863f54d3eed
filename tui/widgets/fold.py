"""A folded block of plain text under a message: a model's thinking, a tool's result.

Folded it is one line (what it is and how long); unfolded, the whole text, dimmed. Streamed thinking is
redrawn at most a few times a second, so a long thought costs the UI little while the reply streams.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

REDRAW_SECONDS = 0.25
"""Streamed text is drawn at most this often."""


class Fold(Static):
    """`label` and the size of `text` when folded; the whole text when unfolded (`toggle`)."""

    DEFAULT_CSS = """
    Fold { height: auto; color: $text-muted; padding: 0 0 0 1; }
    Fold.-empty { display: none; }
    """

    def __init__(self, label: str, text: str = "", *, expanded: bool = False, classes: str = "") -> None:
        super().__init__("", classes=classes, markup=False)
        self.label = label
        self.expanded = expanded
        self._text = text
        self._streaming = False
        self._scheduled = False
        self._draw()

    @property
    def text(self) -> str:
        """Everything it holds."""
        return self._text

    def append(self, text: str) -> None:
        """Add streamed text (drawn at the next redraw)."""
        self._text += text
        self._streaming = True
        if not self._scheduled and self.is_mounted:
            self._scheduled = True
            self.set_timer(REDRAW_SECONDS, self._redraw)
        elif not self.is_mounted:
            self._draw()

    def done(self) -> None:
        """The text is complete."""
        self._streaming = False
        self._draw()

    def toggle(self) -> None:
        """Fold or unfold."""
        self.expanded = not self.expanded
        self._draw()

    def _redraw(self) -> None:
        self._scheduled = False
        self._draw()

    def _draw(self) -> None:
        text = self._text.strip("\n")
        self.set_class(not text, "-empty")
        lines = text.count("\n") + 1 if text else 0
        words = len(text.split())
        going = "…" if self._streaming else ""
        size = _count(words, "word") if lines <= 1 else _count(lines, "line")
        if self.expanded:
            self.update(Text.assemble((f"▾ {self.label}{going} · t folds\n", "bold"), text))
        else:
            first = text.split("\n", 1)[0]
            peek = first if len(first) <= 60 else first[:59] + "…"
            self.update(Text.assemble((f"▸ {self.label}{going}", "bold"), f" · {size} · t shows · {peek}"))


def _count(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"
