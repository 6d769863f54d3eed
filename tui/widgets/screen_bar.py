"""The function-key bar: one key per screen, the current one highlighted (as htop shows its keys)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

SCREEN_KEYS: tuple[tuple[str, str, str], ...] = (
    ("f1", "chat", "Chat"),
    ("f2", "catalog", "Catalog"),
    ("f3", "downloads", "Downloads"),
    ("f4", "instances", "Instances"),
    ("f5", "gauges", "Gauges"),
    ("f6", "compare", "Compare"),
    ("f7", "embeddings", "Embed"),
    ("f8", "settings", "Settings"),
)


class ScreenBar(Static):
    """Shows F1…F8 and the screen each opens; the last line above the footer."""

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
        text = Text(no_wrap=True, overflow="ellipsis")
        for key, mode, label in SCREEN_KEYS:
            text.append(key.upper(), style="bold reverse" if mode == self.current else "bold")
            text.append(label, style="bold" if mode == self.current else "")
            text.append(" ")
        return text
