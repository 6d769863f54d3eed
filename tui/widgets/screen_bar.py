"""The function-key bar: one key per screen, the current one highlighted (as htop shows its keys)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from tui.screen_list import SCREENS

SCREEN_KEYS: tuple[tuple[str, str, str], ...] = tuple(
    (entry.key, entry.mode, entry.label) for entry in SCREENS if entry.key
)
"""(key, mode, label) of each screen, as tests read them (`tui.screen_list` is the list itself)."""


class ScreenBar(Static):
    """Shows F1…F10 and the screen each opens; the last line above the footer. When the full labels do not fit
    (80 columns), the other screens' labels are shortened ("F2Cat"); the current screen's stays whole."""

    DEFAULT_CSS = """
    ScreenBar {
        height: 1;
        background: $panel;
        color: $text-muted;
    }
    """

    def __init__(self, current: str) -> None:
        super().__init__()
        self.current = current

    def render(self) -> Text:
        width = self.size.width
        text = self._bar(short=False)
        for short, whole_current in ((True, True), (True, False)):
            if not width or text.cell_len <= width:
                break
            text = self._bar(short=short, whole_current=whole_current)
        return text

    def _bar(self, *, short: bool, whole_current: bool = True) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        for entry in SCREENS:
            current = entry.mode == self.current
            if not entry.key and not current:
                continue  # a screen without a key of its own shows only while it is the current one
            if entry.key:
                text.append(entry.key.upper(), style="bold reverse" if current else "bold")
            whole = not short or (current and whole_current)
            label = entry.label if whole else entry.short or entry.label
            text.append(label, style=("bold reverse" if not entry.key else "bold") if current else "")
            text.append(" ")
        return text
