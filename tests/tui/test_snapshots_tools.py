"""SVG snapshots of the chat's tools: the picker (F9), the approval dialog, and a transcript where the model
thought, called the demo MCP server's `add` and answered with its result (thinking and result folded)."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot

from engines.adapters.fake import FakeEngine
from tests.tui.conftest import AppFactory
from tests.tui.test_chat_screen import chat, ready, until
from tests.tui.test_chat_tools import answered, approval, ask, call_reply, demo_config, enable
from tests.tui.test_snapshots import SIZES, settle
from tui.screens.modals.chat_tools import ChatToolsModal

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


@pytest.mark.parametrize("size", SIZES)
def test_tool_approval(snap_compare, make_app: AppFactory, demo_config: Path, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    async def ask_approval(pilot: Pilot[int]) -> None:
        await ready(pilot)
        await enable(pilot.app, "add")  # type: ignore[arg-type]
        await ask(pilot, "What is 2+3?")
        await approval(pilot)
        await settle(pilot)

    app = make_app(engine=FakeEngine(reply=call_reply("add", a=2, b=3)))
    assert snap_compare(app, terminal_size=size, run_before=ask_approval)


@pytest.mark.parametrize("size", SIZES)
def test_chat_tool_transcript(snap_compare, make_app: AppFactory, demo_config: Path, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    async def converse(pilot: Pilot[int]) -> None:
        await ready(pilot)
        await enable(pilot.app, "add")  # type: ignore[arg-type]
        await ask(pilot, "What is 2+3?")
        await approval(pilot)
        await pilot.press("y")
        await answered(pilot)
        screen = chat(pilot.app)  # type: ignore[arg-type]
        assert screen.session is not None
        screen.open_session(screen.session)  # as reopening shows it (streamed frames depend on timing)
        screen.query_one("#prompt").focus()
        await pilot.pause()
        screen.query_one("#chat-log").scroll_end(animate=False, immediate=True)
        await settle(pilot)

    reply = "<think>The user wants a sum: the add tool does it.</think>" + call_reply("add", a=2, b=3)
    assert snap_compare(make_app(engine=FakeEngine(reply=reply)), terminal_size=size, run_before=converse)
