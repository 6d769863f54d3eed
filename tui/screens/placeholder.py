"""Screens that later issues build: each says plainly that it is not built yet and what works instead."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Center, Middle
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from tui.widgets.screen_bar import ScreenBar

PLANNED: dict[str, str] = {
    "compare": "one prompt, two to four models side by side",
    "settings": "edit config.toml from the app",
}
INSTEAD: dict[str, str] = {
    "settings": "Edit config.toml (see its comments); `llm-tui --config PATH` selects another file.",
}


class NotBuiltScreen(Screen[None]):
    """Says which screen this is, that it is not built yet, and what to use meanwhile."""

    def __init__(self, name: str) -> None:
        super().__init__(name=name)
        self.screen_name = name

    def compose(self) -> ComposeResult:
        yield Header()
        with Middle(), Center():
            lines = [
                f"[b]{self.screen_name.capitalize()}[/b]",
                "",
                f"This screen is not built yet. It will show {PLANNED[self.screen_name]}.",
            ]
            if self.screen_name in INSTEAD:
                lines += ["", INSTEAD[self.screen_name]]
            lines += ["", "F1 returns to the chat."]
            yield Static("\n".join(lines), classes="not-built")
        yield ScreenBar(self.screen_name)
        yield Footer()
