"""Ask before a model's tool call runs: the tool, its server and the arguments, then run, always, or deny."""

from __future__ import annotations

import json
from typing import Literal

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Static

from engines.mcp.types import McpTool
from engines.types import ToolCall

Approval = Literal["run", "always", "deny"]
MAX_SHOWN = 4_000
"""Characters of the arguments shown (the rest is counted, not drawn)."""


def arguments_text(arguments: str) -> str:
    """A call's arguments, indented when they are JSON, cut at MAX_SHOWN characters with the rest counted."""
    try:
        text = json.dumps(json.loads(arguments), indent=2, ensure_ascii=False)
    except ValueError:
        text = arguments
    if len(text) > MAX_SHOWN:
        text = f"{text[:MAX_SHOWN]}\n… {len(text) - MAX_SHOWN:,} more characters"
    return text


class ToolApprovalModal(ModalScreen[Approval]):
    """Returns "run" (y), "always" for this tool in this chat (a), or "deny" (n, Esc)."""

    BINDINGS = [
        Binding("y", "answer('run')", "Run"),
        Binding("a", "answer('always')", "Always"),
        Binding("n,escape", "answer('deny')", "Deny"),
    ]
    DEFAULT_CSS = """
    ToolApprovalModal #arguments { height: auto; max-height: 12; border: round $secondary; }
    ToolApprovalModal #arguments:focus { border: round $accent; background-tint: $foreground 6%; }
    ToolApprovalModal #about { color: $text-muted; }
    """

    def __init__(self, call: ToolCall, tool: McpTool, round_label: str = "") -> None:
        super().__init__()
        self.call = call
        self.tool = tool
        self.round_label = round_label

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            title = f"Run the tool {self.tool.name} of MCP server {self.tool.server}?"
            yield Static(title, classes="dialog-title", markup=False)
            about = " · ".join(x for x in (self.tool.description.split("\n", 1)[0][:120], self.round_label) if x)
            yield Static(about, id="about", markup=False)
            with VerticalScroll(id="arguments"):
                yield Static(arguments_text(self.call.arguments), markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Run (y)", variant="primary", id="run")
                yield Button("Always (a)", id="always")
                yield Button("Deny (n)", variant="error", id="deny")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#run", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_answer(event.button.id or "deny")

    def action_answer(self, answer: str) -> None:
        self.dismiss(answer if answer in ("run", "always") else "deny")  # type: ignore[arg-type]
