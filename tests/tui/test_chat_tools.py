"""A chat whose model calls MCP tools, driven by keys: choose the tools (F9), approve a call, see the result
folded and the model's answer that uses it; deny, a tool that raises, a tool that hangs; thinking folded."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from textual.pilot import Pilot

from engines.adapters.fake import FakeEngine
from engines.mcp.client import tool_for_model
from engines.mcp.types import McpTool
from engines.types import Params
from tests.tui.conftest import AppFactory
from tests.tui.test_chat_screen import chat, ready, run, until
from tui.app import LlmTuiApp
from tui.chat_tools import DENIED, MAX_ROUNDS
from tui.screens.modals.chat_tools import ChatToolsModal
from tui.screens.modals.tool_approval import ToolApprovalModal
from tui.widgets.chat_log import ChatLog
from tui.widgets.prompt import PromptInput

pytest.importorskip("mcp")

DEMO = Path(__file__).parents[1] / "engines" / "mcp" / "demo_server.py"


def call_reply(tool: str, **arguments: object) -> str:
    """What a model writes to call `tool` (the Hermes format llm-tui parses)."""
    return f"<tool_call>{json.dumps({'name': f'demo__{tool}', 'arguments': arguments})}</tool_call>"


@pytest.fixture
def demo_config(isolated_dirs: Path) -> Path:
    """config.toml with the demo MCP server (add, boom, hang...) over stdio, a 2 s timeout."""
    path = isolated_dirs / "config.toml"
    path.write_text(
        f'[[mcp_servers]]\nname = "demo"\ncommand = {json.dumps(sys.executable)}\n'
        f"args = [{json.dumps(str(DEMO))}]\ntimeout_s = 2\n",
        encoding="utf-8",
    )
    return path


def stored(app: LlmTuiApp) -> list[tuple[str, str]]:
    screen = chat(app)
    assert screen.session is not None
    return [(m.role, m.content) for m in app.runtime.store.messages(screen.session.id)]


async def enable(app: LlmTuiApp, *names: str) -> None:
    """Give the chat these demo tools as F9 would (the key path has its own test)."""
    screen = chat(app)
    assert screen.session is not None
    tools = tuple(tool_for_model(McpTool("demo", name)) for name in names)
    screen.session = app.runtime.store.update_session(screen.session.id, system_prompt=None, params=Params(tools=tools))


async def ask(pilot: Pilot[int], text: str) -> None:
    screen = chat(pilot.app)  # type: ignore[arg-type]
    screen.query_one(PromptInput).focus()
    await pilot.press(*text, "enter")


async def approval(pilot: Pilot[int]) -> ToolApprovalModal:
    await until(pilot, lambda: isinstance(pilot.app.screen, ToolApprovalModal), "the approval dialog", timeout=30)
    screen = pilot.app.screen
    assert isinstance(screen, ToolApprovalModal)
    return screen


async def answered(pilot: Pilot[int]) -> None:
    app = pilot.app
    assert isinstance(app, LlmTuiApp)
    await until(
        pilot,
        lambda: (
            stored(app)[-1][0] == "assistant"
            and stored(app)[-1][1].startswith("The tool said")
            and not chat(app).tool_loop.running
            and chat(app).turn is None
        ),
        "the model's answer to the tool's result",
        timeout=30,
    )


def test_f9_chooses_tools_then_an_approved_call_runs_and_the_answer_uses_its_result(
    make_app: AppFactory, demo_config: Path
) -> None:
    async def go() -> None:
        app = make_app(engine=FakeEngine(reply=call_reply("add", a=2, b=3)))
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await ready(pilot)
            await pilot.press("f9")
            await until(pilot, lambda: isinstance(app.screen, ChatToolsModal) and app.screen.listed, "the tools")
            picker = app.screen
            assert isinstance(picker, ChatToolsModal)
            assert [t.name for t in picker.tools][:1] == ["add"]  # the server's order
            await pilot.press("space", "ctrl+s")  # tick the first (add) and keep it
            await until(pilot, lambda: not isinstance(app.screen, ChatToolsModal), "the picker to close")
            assert screen.session is not None and screen.session.params is not None
            assert [t.name for t in screen.session.params.tools] == ["demo__add"]

            await ask(pilot, "What is 2+3?")
            dialog = await approval(pilot)
            assert dialog.call.name == "demo__add" and json.loads(dialog.call.arguments) == {"a": 2, "b": 3}
            await pilot.press("y")
            await answered(pilot)
            roles = stored(app)
            assert [r for r, _ in roles] == ["user", "assistant", "tool", "assistant"]
            assert roles[2] == ("tool", "5") and roles[3] == ("assistant", "The tool said: 5")
            assert str(screen.query_one("#chat-status").render()).endswith("· 1 tool (F9)")  # the loop is over
            log = screen.query_one(ChatLog)
            assert [m.role for m in log.messages] == ["user", "assistant", "tool", "assistant"]
            assert "demo__add" in log.messages[1].content  # the call is shown under the reply

    run(go())


@pytest.mark.parametrize(
    ("tool", "key", "expected"),
    [
        ("add", "n", DENIED),
        ("boom", "y", "kaboom"),
        ("hang", "y", "did not answer within 2 s"),
    ],
    ids=["denied", "raises", "hangs"],
)
def test_a_denied_failed_or_hanging_call_is_told_to_the_model_and_the_chat_goes_on(
    make_app: AppFactory, demo_config: Path, tool: str, key: str, expected: str
) -> None:
    async def go() -> None:
        app = make_app(engine=FakeEngine(reply=call_reply(tool, a=1, b=1) if tool == "add" else call_reply(tool)))
        async with app.run_test(size=(100, 30)) as pilot:
            await ready(pilot)
            await enable(app, tool)
            await ask(pilot, "go")
            await approval(pilot)
            await pilot.press(key)
            await answered(pilot)
            (result,) = [content for role, content in stored(app) if role == "tool"]
            assert expected in result
            assert expected in stored(app)[-1][1]  # the model read it

    run(go())


def test_the_loop_stops_after_max_rounds_of_calls(make_app: AppFactory, demo_config: Path) -> None:
    async def go() -> None:
        app = make_app(engine=FakeEngine(reply=call_reply("add", a=1, b=2), answers_tools=False))
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await ready(pilot)
            await enable(app, "add")
            await ask(pilot, "loop")
            await approval(pilot)
            await pilot.press("a")  # always: no more questions for this tool in this chat
            await until(
                pilot,
                lambda: not screen.tool_loop.running and screen.turn is None and screen.tool_loop.rounds == 0,
                "the loop to stop at its limit",
                timeout=60,
            )
            tool_results = [c for r, c in stored(app) if r == "tool"]
            assert len(tool_results) == MAX_ROUNDS and set(tool_results) == {"3"}
            assert stored(app)[-1][0] == "assistant"  # the last reply's calls wait for the user

    run(go())


def test_escape_while_a_tool_runs_stops_the_loop(make_app: AppFactory, demo_config: Path) -> None:
    async def go() -> None:
        app = make_app(engine=FakeEngine(reply=call_reply("hang")))
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await ready(pilot)
            await enable(app, "hang")
            await ask(pilot, "wait")
            await approval(pilot)
            await pilot.press("y")
            await until(pilot, lambda: screen.tool_loop.running and app.screen is screen, "the tool to run")
            await pilot.press("escape")
            await until(pilot, lambda: not screen.tool_loop.running, "Esc to stop the loop")
            assert [r for r, _ in stored(app)] == ["user", "assistant", "tool"]  # not asked again
            assert "stopped by the user" in stored(app)[-1][1]
            await pilot.pause(0.3)
            assert screen.turn is None and len(stored(app)) == 3

    run(go())


def test_thinking_is_folded_above_the_reply_and_t_shows_it(make_app: AppFactory) -> None:
    async def go() -> None:
        app = make_app(engine=FakeEngine(reply="<think> The user greets me. </think> Hello!"))
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await ready(pilot)
            await ask(pilot, "hi")
            await until(pilot, lambda: screen.turn is None and len(stored(app)) == 2, "the reply")
            assert stored(app)[-1] == ("assistant", "Hello!")
            assert screen.session is not None
            record = app.runtime.store.messages(screen.session.id)[-1]
            assert record.reasoning.strip() == "The user greets me."
            assert record.metrics is not None and record.metrics.reasoning_tokens > 0
            log = screen.query_one(ChatLog)
            view = log.reply(log.messages[-1].key)
            assert view is not None and view.fold is not None and not view.fold.expanded
            footer = view.footer
            assert "thinking" in footer and "reply after" in footer
            log.focus()
            await pilot.press("t")
            assert view.fold.expanded and "The user greets me." in str(view.fold.render())

    run(go())


def test_a_remote_model_calls_an_mcp_tool_and_answers_with_its_result(isolated_dirs: Path, demo_config: Path) -> None:
    """The whole path with a fake OpenAI-compatible server playing the model: its streamed call (arguments in
    pieces) runs the demo server's `add` after approval, and its next reply reads the result."""
    from engines.config.load import load_config
    from engines.manager import EngineManager
    from tests.engines.fake_openai import FakeOpenAI, Reply
    from tests.tui.conftest import offline_transfer
    from tui.runtime import Runtime

    call = {"index": 0, "id": "call_abc", "type": "function", "function": {"name": "demo__add", "arguments": ""}}
    pieces = (
        {"tool_calls": [call]},
        *({"tool_calls": [{"index": 0, "function": {"arguments": a}}]} for a in ('{"a": 2', ', "b": 40}')),
    )
    with FakeOpenAI(("m",), replies=[Reply(deltas=pieces, finish_reason="tool_calls")]) as server:
        demo_config.write_text(
            demo_config.read_text() + f'\n[[remote_endpoints]]\nname = "fake"\nurl = "{server.endpoint}"\n'
        )
        runtime = Runtime(
            load_config(env={}, cwd=isolated_dirs),
            manager=EngineManager(),
            transfer=offline_transfer,
            describe_hub=offline_transfer,
        )

        async def go() -> None:
            app = LlmTuiApp(runtime, screen="chat", model="remote:fake/m")
            async with app.run_test(size=(100, 30)) as pilot:
                await ready(pilot)
                await enable(app, "add")
                await ask(pilot, "What is 2+40?")
                dialog = await approval(pilot)
                assert json.loads(dialog.call.arguments) == {"a": 2, "b": 40}
                await pilot.press("y")
                await answered(pilot)
                assert stored(app)[-2:] == [("tool", "42"), ("assistant", "The tool said: 42")]

        try:
            run(go())
        finally:
            runtime.close()
        first, second = server.chat_bodies()
        assert [t["function"]["name"] for t in first["tools"]] == ["demo__add"]
        assert second["messages"][-2]["tool_calls"][0]["id"] == "call_abc"
        assert second["messages"][-1] == {"role": "tool", "tool_call_id": "call_abc", "content": "42"}


def test_a_call_to_a_tool_this_chat_did_not_enable_is_refused_unrun(make_app: AppFactory, demo_config: Path) -> None:
    async def go() -> None:
        app = make_app(engine=FakeEngine(reply=call_reply("boom")))  # the model names a tool it was not given
        async with app.run_test(size=(100, 30)) as pilot:
            await ready(pilot)
            await enable(app, "add")
            await ask(pilot, "go")
            await answered(pilot)
            (result,) = [content for role, content in stored(app) if role == "tool"]
            assert result == "error: no tool named demo__boom is enabled in this chat"
            assert not isinstance(app.screen, ToolApprovalModal)

    run(go())
