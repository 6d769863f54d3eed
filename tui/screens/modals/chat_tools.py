"""Choose which MCP tools the model may call in this chat; servers start here, on demand."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, SelectionList, Static
from textual.widgets.selection_list import Selection

from engines.mcp.client import McpHub
from engines.mcp.naming import model_name
from engines.mcp.types import McpTool

NO_SERVERS = (
    "No MCP servers are configured. Add one to config.toml, e.g.\n\n"
    '[[mcp_servers]]\nname = "fetch"\ncommand = "uvx"\nargs = ["mcp-server-fetch"]\n\n'
    "then F9 again (see config.toml and README for the rest)."
)


class ChatToolsModal(ModalScreen[list[McpTool] | None]):
    """Lists every configured server's tools (Space or Enter toggles one); Ctrl+S keeps the choice, Esc leaves it
    as it was."""

    BINDINGS = [
        Binding("ctrl+s", "keep", "Use these"),
        Binding("escape", "cancel", "Cancel"),
    ]
    DEFAULT_CSS = """
    ChatToolsModal SelectionList { height: auto; max-height: 14; }
    ChatToolsModal #tools-state { color: $text-muted; height: auto; }
    """

    def __init__(self, hub: McpHub, enabled: set[str]) -> None:
        super().__init__()
        self.hub = hub
        self.enabled = enabled
        self.tools: list[McpTool] = []
        self.listed = False

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static("Tools the model may call in this chat", classes="dialog-title")
            yield Static("", id="tools-state", markup=False)
            yield SelectionList[str](id="tools")
        yield Footer()

    def on_mount(self) -> None:
        state = self.query_one("#tools-state", Static)
        if not self.hub.servers:
            state.update(NO_SERVERS)
            self.query_one("#tools", SelectionList).display = False
            return
        names = ", ".join(s.name for s in self.hub.servers)
        state.update(f"Starting MCP servers ({names})…")
        self._list()

    @work(thread=True, exclusive=True, group="mcp-tools")
    def _list(self) -> None:
        try:
            tools, errors = self.hub.all_tools()
        except Exception as exc:  # the client itself failed: said here, never a crash of the chat
            tools, errors = [], {"MCP": str(exc) or type(exc).__name__}
        self.app.call_from_thread(self._show, tools, errors)

    def _show(self, tools: list[McpTool], errors: dict[str, str]) -> None:
        self.tools, self.listed = tools, True
        listing = self.query_one("#tools", SelectionList)
        listing.clear_options()
        listing.add_options(
            Selection(
                f"{t.server} · {t.name} — {t.description.split(chr(10), 1)[0][:60]}",
                t.qualified,
                model_name(t.qualified) in self.enabled,
            )
            for t in tools
        )
        lines = [f"{len(tools)} tools · Space toggles · Ctrl+S uses the ticked ones"]
        lines += [f"✗ {server}: {error}" for server, error in errors.items()]
        self.query_one("#tools-state", Static).update("\n".join(lines))
        if tools:
            listing.highlighted = 0
        listing.focus()

    def action_keep(self) -> None:
        if not self.listed and self.hub.servers:
            return  # still starting: keeping now would throw away the chat's choice
        chosen = set(self.query_one("#tools", SelectionList).selected)
        self.dismiss([t for t in self.tools if t.qualified in chosen])

    def action_cancel(self) -> None:
        self.dismiss(None)
