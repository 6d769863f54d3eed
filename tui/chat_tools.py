"""The model → tool → model loop of the chat: a reply's calls run on MCP servers, their results go back.

Each call is looked up among the MCP servers' tools, shown with its arguments and asked about (unless the
server trusts that tool, or the user chose "always" for it in this chat), run in a thread worker, and its result
saved as a `tool` message and shown folded. When every call of the reply has a result, the model is asked again.
A loop stops after MAX_ROUNDS replies that call tools in a row (the status line counts them), or at Esc. Errors,
timeouts and unknown tools become results the model reads ("error: ..."): the chat never breaks on them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from engines.mcp.naming import model_name
from engines.mcp.types import McpResult, McpTool
from engines.types import ToolCall
from tui.widgets.log_message import LogMessage

if TYPE_CHECKING:
    from engines.mcp.client import McpHub
    from tui.screens.chat import ChatScreen
    from tui.screens.modals.tool_approval import Approval

MAX_ROUNDS = 8
"""Replies that call tools, in a row, before the loop stops and waits for the user."""
DENIED = "The user denied this tool call."


def tools_hint(enabled: int, configured: bool) -> str:
    """The status line's word on tools: how many this chat enabled, or that F9 chooses them."""
    if enabled:
        return f"{enabled} tool{'s' * (enabled != 1)} (F9)"
    return "F9 tools" if configured else ""


def choose_tools(screen: ChatScreen) -> None:
    """Open the tools picker; the tools chosen are saved with the chat's parameters (the model sees them)."""
    session = screen.session
    if session is None:
        return
    enabled = {tool.name for tool in (session.params.tools if session.params else ())}

    def done(chosen: list[McpTool] | None) -> None:
        if chosen is None:
            return
        from engines.mcp.client import tool_for_model

        tools = tuple(map(tool_for_model, chosen))
        params = replace(session.params or screen.runtime.config.defaults, tools=tools)
        screen.session = screen.store.update_session(session.id, system_prompt=session.system_prompt, params=params)
        screen.update_status()
        count = f"{len(chosen)} tool{'s' * (len(chosen) != 1)}"
        screen.notify(f"{count} enabled in this chat." if chosen else "No tools in this chat.")

    from tui.screens.modals.chat_tools import ChatToolsModal

    screen.app.push_screen(ChatToolsModal(screen.runtime.mcp, enabled), done)


class ToolLoop:
    """Runs the calls of the chat's replies; `running` while a call waits for approval or runs."""

    def __init__(self, screen: ChatScreen, resume: Callable[[], None]) -> None:
        self.screen = screen
        self.resume = resume
        """Asks the model again once every call has its result."""
        self.rounds = 0
        self.running = False
        self._pending: list[ToolCall] = []
        self._session_id: int | None = None
        self._always: dict[int, set[str]] = {}  # session id -> tools the user said "always" to

    @property
    def hub(self) -> McpHub:
        return self.screen.runtime.mcp

    @property
    def status(self) -> str:
        """What the loop is doing, for the status line ("" when idle)."""
        if not self.running and not self.rounds:
            return ""
        doing = "running tools" if self.running else "tools"
        return f"{doing} · round {self.rounds}/{MAX_ROUNDS}"

    def reset(self) -> None:
        """A new message from the user: the count of rounds starts again."""
        self.rounds = 0

    def take(self, session_id: int, calls: tuple[ToolCall, ...]) -> bool:
        """Run a finished reply's calls (True), or say why not and leave the chat to the user (False)."""
        if not calls:
            self.rounds = 0  # the model answered: the loop is over
            return False
        if self.rounds >= MAX_ROUNDS:
            self.screen.notify(
                f"Stopped after {MAX_ROUNDS} rounds of tool calls; send a message to let the model go on.",
                severity="warning",
                timeout=10,
            )
            self.rounds = 0
            return False
        self.rounds += 1
        self._session_id, self._pending, self.running = session_id, list(calls), True
        self._next()
        return True

    def stop(self) -> None:
        """Esc: the calls not yet run get a "stopped" result, and the model is not asked again."""
        pending, self._pending = self._pending, []
        for call in pending:
            self._record(call, "error: stopped by the user before it ran", advance=False)
        self.running = False
        self.rounds = 0
        self.screen.update_status()

    # -- one call at a time ---------------------------------------------------------------------------------------

    def _next(self) -> None:
        self.screen.update_status()
        if not self.running:
            return
        if not self._pending:
            self.running = False
            self.resume()
            return
        call = self._pending[0]
        self.screen.run_worker(lambda: self._find(call), thread=True, group="chat-tool", exit_on_error=False)

    def _find(self, call: ToolCall) -> None:
        """On a worker thread: which MCP tool the model named (servers start here if need be)."""
        try:
            tool = self.hub.find(call.name)
        except Exception as exc:
            self.screen.app.call_from_thread(self._done, call, McpResult(f"error: {exc}", is_error=True))
            return
        self.screen.app.call_from_thread(self._found, call, tool)

    def _found(self, call: ToolCall, tool: McpTool | None) -> None:
        if not self.running or not self._pending or self._pending[0] is not call:
            return  # stopped meanwhile
        if tool is None or model_name(tool.qualified) not in self._enabled():
            self._done(call, McpResult(f"error: no tool named {call.name} is enabled in this chat", is_error=True))
            return
        server = next((s for s in self.hub.servers if s.name == tool.server), None)
        if (server is not None and server.trusts(tool.name)) or tool.qualified in self._always_here():
            self._run(call, tool)
            return
        from tui.screens.modals.tool_approval import ToolApprovalModal

        def answered(answer: Approval | None) -> None:
            if answer == "always":
                self._always_here().add(tool.qualified)
            if answer in ("run", "always"):
                self._run(call, tool)
            else:
                self._done(call, McpResult(DENIED))  # said as it is: not an error of the tool

        label = f"round {self.rounds}/{MAX_ROUNDS}"
        self.screen.app.push_screen(ToolApprovalModal(call, tool, label), answered)

    def _enabled(self) -> set[str]:
        """The names of the tools this chat lets the model call (a call to any other is refused, not run)."""
        session = self.screen.session
        params = session.params if session is not None and session.id == self._session_id else None
        return {tool.name for tool in params.tools} if params is not None else set()

    def _always_here(self) -> set[str]:
        return self._always.setdefault(self._session_id or 0, set())

    def _run(self, call: ToolCall, tool: McpTool) -> None:
        self.screen.notify(f"Running {tool.name} on {tool.server}…", timeout=3)
        self.screen.run_worker(lambda: self._call(call, tool), thread=True, group="chat-tool", exit_on_error=False)

    def _call(self, call: ToolCall, tool: McpTool) -> None:
        """On a worker thread: the call itself, bounded by the server's timeout."""
        import json

        try:
            arguments = json.loads(call.arguments or "{}")
            if not isinstance(arguments, dict):
                raise ValueError("the arguments are not a JSON object")
        except ValueError as exc:
            result = McpResult(f"error: the model's arguments are not valid: {exc}", is_error=True)
        else:
            try:
                result = self.hub.call(tool.server, tool.name, arguments)
            except Exception as exc:  # a timeout, a server that died: the model is told, the chat goes on
                result = McpResult(f"error: {exc}", is_error=True)
        self.screen.app.call_from_thread(self._done, call, result)

    def _done(self, call: ToolCall, result: McpResult) -> None:
        if not self.running or not self._pending or self._pending[0] is not call:
            return
        self._pending.pop(0)
        failed = result.is_error and not result.text.startswith("error:")
        self._record(call, f"error: {result.text}" if failed else result.text)

    def _record(self, call: ToolCall, text: str, *, advance: bool = True) -> None:
        """Save the result as a `tool` message and show it folded under the reply."""
        from tui.widgets.chat_log import ChatLog

        if self._session_id is None:
            return
        record = self.screen.store.add_tool_result(self._session_id, call.id, call.name, text)
        log = self.screen.query_one(ChatLog)
        log.add_message(LogMessage(record.id, "tool", text, header=f"Tool · {call.name}"))
        log.scroll_end(animate=False)
        if advance:
            self._next()
