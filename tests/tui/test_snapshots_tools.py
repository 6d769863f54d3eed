"""SVG snapshots of the chat's tools: the picker (F9), the approval dialog, and a transcript where the model
thought, called the demo MCP server's `add` and answered with its result (thinking and result folded).

The transcript is written to the store with fixed metrics and then opened (the live loop is driven by keys in
test_chat_tools.py; its timings depend on the machine's load), and the dialog is shown over an empty app."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.app import App, ComposeResult
from textual.pilot import Pilot
from textual.widgets import Label

import tui.app
from engines.mcp.types import McpTool
from engines.types import Delta, Done, Metrics, Reasoning, ToolCall, ToolCallDelta, Usage
from tests.tui.conftest import AppFactory
from tests.tui.test_chat_screen import chat, ready, until
from tests.tui.test_chat_tools import demo_config
from tests.tui.test_snapshots import SIZES, settle
from tui.app import LlmTuiApp
from tui.screens.modals.chat_tools import ChatToolsModal
from tui.screens.modals.tool_approval import ToolApprovalModal

pytest.importorskip("mcp")
__all__ = ["demo_config"]  # the fixture, used by name


@pytest.mark.parametrize("size", SIZES)
def test_chat_tools_picker(snap_compare, make_app: AppFactory, demo_config: Path, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    async def open_picker(pilot: Pilot[int]) -> None:
        await ready(pilot)
        await pilot.press("f9")
        await until(pilot, lambda: isinstance(pilot.app.screen, ChatToolsModal) and pilot.app.screen.listed, "tools")
        await pilot.press("space")
        await settle(pilot)

    assert snap_compare(make_app(), terminal_size=size, run_before=open_picker)


class ApprovalApp(App[int]):
    """The approval dialog alone (styled as in the app), for a call of the demo server's `add`."""

    CSS_PATH = Path(tui.app.__file__).parent / "app.tcss"

    def compose(self) -> ComposeResult:
        yield Label("beneath")

    def on_mount(self) -> None:
        call = ToolCall("call_1", "demo__add", '{"a": 2, "b": 3}')
        self.push_screen(ToolApprovalModal(call, McpTool("demo", "add", "Add two integers."), "round 1/8"))


@pytest.mark.parametrize("size", SIZES)
def test_tool_approval(snap_compare, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(ApprovalApp(), terminal_size=size, run_before=settle)


def write_transcript(app: LlmTuiApp) -> None:
    """The chat as the loop leaves it: question, a reply that thought and called `add`, its result, the answer."""
    screen = chat(app)
    store = app.runtime.store
    assert screen.session is not None
    session = screen.session.id
    store.add_message(session, "user", "What is 2+3?")
    writer = store.begin_reply(session, model="tiny", engine="fake", params=None)
    writer.feed(Reasoning("The user wants a sum: the add tool does it."))
    writer.feed(ToolCallDelta(0, "call_1", "demo__add", '{"a": 2, "b": 3}'))
    writer.feed(Done(Usage(60, 31, reasoning_tokens=12), "tool_calls", Metrics(95.0, 41.5, 800.0)))
    store.add_tool_result(session, "call_1", "demo__add", "5")
    writer = store.begin_reply(session, model="tiny", engine="fake", params=None)
    writer.feed(Delta("The tool said: 5"))
    writer.feed(Done(Usage(98, 5), "stop", Metrics(120.0, 44.0, 210.0)))


@pytest.mark.parametrize("size", SIZES)
def test_chat_tool_transcript(snap_compare, make_app: AppFactory, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    async def show(pilot: Pilot[int]) -> None:
        await ready(pilot)
        app = pilot.app
        assert isinstance(app, LlmTuiApp)
        write_transcript(app)
        screen = chat(app)
        assert screen.session is not None
        screen.open_session(screen.session)
        screen.query_one("#prompt").focus()
        await pilot.pause()
        screen.query_one("#chat-log").scroll_end(animate=False, immediate=True)
        await settle(pilot)

    assert snap_compare(make_app(), terminal_size=size, run_before=show)
