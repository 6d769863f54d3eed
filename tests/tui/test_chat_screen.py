"""The chat screen driven by keys, on the fake engine: send, stream, stop, regenerate, edit, sessions, export."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

from textual.app import App
from textual.command import CommandList, CommandPalette
from textual.pilot import Pilot

from engines.adapters.fake import FakeEngine
from tests.tui.conftest import AppFactory
from tui.app import LlmTuiApp
from tui.screens.chat import ChatScreen
from tui.widgets.chat_log import ChatLog
from tui.widgets.prompt import PromptInput
from tui.widgets.screen_bar import SCREEN_KEYS


def run(coro: Awaitable[None]) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


async def until(pilot: Pilot[int], condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Let the app run until `condition` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.02)


async def palette(pilot: Pilot[int], command: str) -> None:
    """Open the command palette, type `command` and run the first match."""
    await pilot.press("ctrl+p")
    await until(pilot, lambda: isinstance(pilot.app.screen, CommandPalette), "the command palette to open")
    await pilot.press(*command)  # returns once the palette has heard the last key and started that search
    await until(pilot, lambda: palette_searched(pilot.app), f"the palette's matches for {command!r}")
    await pilot.press("enter")


def palette_searched(app: App[int]) -> bool:
    """Whether the open command palette's search (a worker) has finished with a match highlighted."""
    screen = app.screen
    if not isinstance(screen, CommandPalette) or screen.query_one(CommandList).highlighted is None:
        return False
    return not any(worker.node is screen and not worker.is_finished for worker in app.workers)


def chat(app: LlmTuiApp) -> ChatScreen:
    screen = app.screen
    assert isinstance(screen, ChatScreen)
    return screen


async def ready(pilot: Pilot[int]) -> ChatScreen:
    app = pilot.app
    assert isinstance(app, LlmTuiApp)
    await until(pilot, lambda: app.runtime.active is not None and "ready" in app.status_text, "the model to load")
    return chat(app)


async def send(pilot: Pilot[int], text: str) -> None:
    screen = chat(pilot.app)  # type: ignore[arg-type]
    screen.query_one(PromptInput).focus()
    await pilot.press(*text)
    await pilot.press("enter")
    await until(pilot, lambda: screen.turn is None, "the reply to finish")


def stored(app: LlmTuiApp) -> list[tuple[str, str, str]]:
    screen = chat(app)
    assert screen.session is not None
    return [(m.role, m.content, m.status) for m in app.runtime.store.messages(screen.session.id)]


def test_send_streams_reply_and_saves_both_messages(make_app: AppFactory) -> None:
    async def go() -> None:
        app = make_app()
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await ready(pilot)
            await send(pilot, "hello there")
            assert stored(app) == [("user", "hello there", "complete"), ("assistant", "Echo: hello there", "complete")]
            log = screen.query_one(ChatLog)
            assert [m.role for m in log.messages] == ["user", "assistant"]
            reply = log.reply(log.messages[-1].key)
            assert reply is not None and reply.text == "Echo: hello there"
            assert screen.query_one(PromptInput).text == ""
            assert screen.session is not None and screen.session.title == "hello there"
            (message,) = [m for m in app.runtime.store.messages(screen.session.id) if m.role == "assistant"]
            assert message.metrics is not None and message.metrics.completion_tokens == 3

    run(go())


def test_escape_stops_mid_reply_and_keeps_the_partial_text(make_app: AppFactory) -> None:
    engine = FakeEngine(reply=" ".join(f"w{i}" for i in range(400)), token_delay_s=0.01)

    async def go() -> None:
        app = make_app(engine=engine)
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await ready(pilot)
            screen.query_one(PromptInput).focus()
            await pilot.press(*"go", "enter")
            await until(pilot, lambda: screen.turn is not None and len(screen.turn.writer.text) > 10, "some text")
            await pilot.press("escape")
            await until(pilot, lambda: screen.turn is None, "the reply to stop")
            (_, (role, content, status)) = stored(app)
            assert role == "assistant" and status == "cancelled"
            assert content.startswith("w0 w1") and len(content.split()) < 400

    run(go())


def test_regenerate_replaces_the_last_reply(make_app: AppFactory) -> None:
    engine = FakeEngine()

    async def go() -> None:
        app = make_app(engine=engine)
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await ready(pilot)
            await send(pilot, "one")
            await pilot.press("ctrl+r")
            await until(pilot, lambda: len(engine.calls) == 2 and screen.turn is None, "the new reply")
            assert stored(app) == [("user", "one", "complete"), ("assistant", "Echo: one", "complete")]
            # The same conversation went to the engine again, without the old reply.
            assert [m.content for m in engine.calls[1]] == ["one"]

    run(go())


def test_edit_and_resend_drops_what_followed(make_app: AppFactory) -> None:
    async def go() -> None:
        app = make_app()
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await ready(pilot)
            await send(pilot, "first")
            await send(pilot, "second")
            await pilot.press("ctrl+g")
            prompt = screen.query_one(PromptInput)
            assert prompt.text == "second"
            prompt.select_all()
            await pilot.press(*"changed", "enter")
            await until(pilot, lambda: screen.turn is None and len(stored(app)) == 4, "the resent reply")
            assert [c for _, c, _ in stored(app)] == ["first", "Echo: first", "changed", "Echo: changed"]

    run(go())


def test_new_session_and_switching_back(make_app: AppFactory) -> None:
    async def go() -> None:
        app = make_app()
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await ready(pilot)
            await send(pilot, "in the first chat")
            first = screen.session
            await pilot.press("ctrl+n")
            assert screen.session is not None and first is not None and screen.session.id != first.id
            assert screen.query_one(ChatLog).messages == []
            await send(pilot, "in the second chat")
            # Ctrl+F goes to the session filter; Enter moves to the list; pick the older chat.
            await pilot.press("ctrl+f", "enter", "down", "enter")
            await until(pilot, lambda: screen.session is not None and screen.session.id == first.id, "the switch")
            assert screen.query_one(ChatLog).messages[0].content == "in the first chat"

    run(go())


def test_filter_rename_and_delete_sessions(make_app: AppFactory) -> None:
    async def go() -> None:
        app = make_app()
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await ready(pilot)
            await send(pilot, "apples")
            await pilot.press("ctrl+n")
            await send(pilot, "pears")
            await pilot.press("ctrl+f", *"appl")
            await pilot.pause()
            options = screen.query_one("#session-options")
            assert options.option_count == 1  # type: ignore[attr-defined]
            await pilot.press("enter", "r")
            await pilot.press(*"Fruit", "enter")  # the old title is selected, so typing replaces it
            await pilot.pause()
            titles = [s.title for s in app.runtime.store.list_sessions()]
            assert "Fruit" in titles
            await pilot.press("delete", "y")
            await pilot.pause()
            assert [s.title for s in app.runtime.store.list_sessions()] == ["pears"]

    run(go())


def test_export_writes_markdown_and_json(make_app: AppFactory, isolated_dirs: Path) -> None:
    """Ctrl+T offers an absolute path in the data folder's exports/, says where it saved; a bare name goes there too."""

    async def go() -> None:
        app = make_app()
        exports = app.runtime.config.data_dir / "exports"
        async with app.run_test(size=(100, 30)) as pilot:
            await ready(pilot)
            await send(pilot, "export me")
            await pilot.press("ctrl+t")
            await pilot.pause()
            offered = app.screen.query_one("Input").value  # type: ignore[attr-defined]
            assert Path(offered).is_absolute() and Path(offered).parent == exports
            await pilot.press("enter")
            await pilot.pause()
            assert list(app._notifications)[-1].message == f"Saved {Path(offered).name}\nin {exports}"
            await pilot.press("ctrl+t", *str(isolated_dirs / "chat.json"), "enter")
            await pilot.pause()
            await pilot.press("ctrl+t", "ctrl+u", *"plain.md", "enter")
            await pilot.pause()
            assert list(app._notifications)[-1].message == f"Saved plain.md\nin {exports}"
        assert list(isolated_dirs.glob("*.md")) == []  # nothing lands in the working directory
        markdown = sorted(exports.glob("*.md"))
        assert len(markdown) == 2 and all("Echo: export me" in f.read_text() for f in markdown)
        data = json.loads((isolated_dirs / "chat.json").read_text())
        assert [m["content"] for m in data["messages"]] == ["export me", "Echo: export me"]

    run(go())


def test_settings_modal_sets_system_prompt_and_params(make_app: AppFactory) -> None:
    engine = FakeEngine()

    async def go() -> None:
        app = make_app(engine=engine)
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await ready(pilot)
            await pilot.press("ctrl+o")
            await pilot.pause()
            await pilot.press(*"Be brief.", "tab", *"0.2", "ctrl+s")
            await pilot.pause()
            assert screen.session is not None and screen.session.system_prompt == "Be brief."
            assert screen.session.params is not None and screen.session.params.temperature == 0.2
            await send(pilot, "hi")
            assert engine.calls[-1][0].role == "system" and engine.calls[-1][0].content == "Be brief."

    run(go())


def test_invalid_parameter_is_refused_on_the_field(make_app: AppFactory) -> None:
    async def go() -> None:
        app = make_app()
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await ready(pilot)
            await pilot.press("ctrl+o", "tab", *"hot", "ctrl+s")
            await pilot.pause()
            assert "Temperature: 'hot' is not a number" in str(app.screen.query_one("#error").render())
            await pilot.press("escape")
            assert screen.session is not None and (
                screen.session.params is None or screen.session.params.temperature is None
            )

    run(go())


def test_message_sent_before_a_model_goes_out_once_one_is_loaded(make_app: AppFactory, fake_model: Path) -> None:
    async def go() -> None:
        app = make_app(launch=False)
        async with app.run_test(size=(100, 30)) as pilot:
            screen = chat(app)
            await pilot.press(*"early bird", "enter")
            await pilot.pause()
            # The model picker opened; type the model's path and launch it.
            await pilot.press(*str(fake_model), "enter")
            await until(pilot, lambda: len(stored(app)) == 2 and screen.turn is None, "the pending message's reply")
            assert stored(app)[1][1] == "Echo: early bird"

    run(go())


def test_load_failure_is_shown_and_the_app_keeps_running(make_app: AppFactory) -> None:
    async def go() -> None:
        app = make_app(engine=FakeEngine(load_error=RuntimeError("out of memory")), launch=True)
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: bool(app._notifications), "a notification")
            texts = [n.message for n in app._notifications]
            assert any("out of memory" in t for t in texts)
            assert app.runtime.active is None
            assert app.is_running

    run(go())


def test_engine_error_mid_reply_is_inline_and_nothing_is_lost(make_app: AppFactory) -> None:
    async def go() -> None:
        app = make_app()
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await ready(pilot)
            await send(pilot, "please [[fail]] now")
            (user, reply) = stored(app)
            assert user == ("user", "please [[fail]] now", "complete")
            assert reply[0] == "assistant" and reply[2] == "error" and reply[1] == "Echo: please"
            view = screen.query_one(ChatLog).reply(screen.query_one(ChatLog).messages[-1].key)
            assert view is not None and view.status == "error"

    run(go())


def test_screen_keys_switch_between_every_screen(make_app: AppFactory) -> None:
    async def go() -> None:
        app = make_app(launch=False)
        async with app.run_test(size=(100, 30)) as pilot:
            for key, mode, _ in SCREEN_KEYS:
                await pilot.press(key)
                assert app.current_mode == mode and app.screen.name == mode
            await pilot.press("f4")
            assert app.current_mode == "instances"
            await pilot.press("f1")
            assert app.current_mode == "chat"

    run(go())


def test_start_screen_option(make_app: AppFactory) -> None:
    async def go() -> None:
        app = make_app(screen="settings", launch=False)
        async with app.run_test(size=(100, 30)):
            assert app.current_mode == "settings"

    run(go())


def test_json_output_mode_sends_the_schema_and_checks_each_reply(make_app: AppFactory) -> None:
    """Ctrl+O: turn JSON output on and give a schema; replies are then marked as following it or not."""
    from engines.types import Capability

    class JsonEngine(FakeEngine):
        capabilities = FakeEngine.capabilities | Capability.JSON_SCHEMA

    engine = JsonEngine(reply='{"n": 1}')

    async def go() -> None:
        app = make_app(engine=engine)
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await ready(pilot)
            await pilot.press("ctrl+o")
            await pilot.pause()
            app.screen.query_one("#json-mode").focus()
            await pilot.press("space", "ctrl+s")
            await pilot.pause()
            assert "type a JSON Schema, or turn JSON output off" in str(app.screen.query_one("#error").render())
            await pilot.press("tab")  # from the switch to the schema
            await pilot.press(*'{"type": "object", "required": ["n"]}', "ctrl+s")
            await pilot.pause()
            assert screen.session is not None and screen.session.params is not None
            assert screen.session.params.json_schema == '{"type": "object", "required": ["n"]}'
            await send(pilot, "count")
            log = screen.query_one(ChatLog)
            reply = log.reply(log.messages[-1].key)
            assert reply is not None and reply.footer.endswith("✓ JSON follows the schema")
            engine.reply = '{"m": 2}'
            await send(pilot, "again")
            reply = log.reply(log.messages[-1].key)
            assert reply is not None and "✗ the reply does not follow the schema" in reply.footer

    run(go())


def test_json_output_is_off_limits_when_the_engine_cannot_follow_a_schema(make_app: AppFactory) -> None:
    from textual.widgets import Switch

    async def go() -> None:
        app = make_app()  # the plain fake engine: no JSON_SCHEMA
        async with app.run_test(size=(100, 30)) as pilot:
            await ready(pilot)
            await pilot.press("ctrl+o")
            await pilot.pause()
            switch = app.screen.query_one("#json-mode", Switch)
            assert switch.disabled and not switch.value
            assert "(the fake engine cannot)" in " ".join(str(w.render()) for w in app.screen.query("#json-bar Label"))

    run(go())


def test_image_lines_attach_images_that_every_later_turn_sends_again(make_app: AppFactory, tmp_path: Path) -> None:
    from engines.types import Capability

    class SeeingEngine(FakeEngine):
        capabilities = FakeEngine.capabilities | Capability.VISION

    png = tmp_path / "cat.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 32)
    engine = SeeingEngine()

    async def go() -> None:
        app = make_app(engine=engine)
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await ready(pilot)
            screen.query_one(PromptInput).focus()
            await pilot.press(*"/image /no/such.png", "ctrl+j", *"what is it", "enter")
            await pilot.pause()
            assert "no such image file: /no/such.png" in list(app._notifications)[-1].message
            assert "what is it" in screen.query_one(PromptInput).text  # nothing lost
            screen.query_one(PromptInput).clear()
            await pilot.press(*f"/image {png}", "ctrl+j", *"what is it", "enter")
            await until(pilot, lambda: len(engine.calls) == 1 and screen.turn is None, "the reply")
            last = engine.calls[-1][-1]
            assert (last.content, last.images) == ("what is it", (png.read_bytes(),))
            log = screen.query_one(ChatLog)
            user = log.messages[-2]
            assert user.content == "what is it" and user.footer == "📎 cat.png"
            await send(pilot, "and now?")
            assert [m.images for m in engine.calls[-1] if m.role == "user"] == [(png.read_bytes(),), ()]

    run(go())


def test_an_engine_that_cannot_see_refuses_images_before_anything_is_saved(
    make_app: AppFactory, tmp_path: Path
) -> None:
    png = tmp_path / "cat.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 32)

    async def go() -> None:
        app = make_app()
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await ready(pilot)
            screen.query_one(PromptInput).focus()
            await pilot.press(*f"/image {png}", "enter")
            await pilot.pause()
            assert "the fake engine cannot see images" in list(app._notifications)[-1].message
            assert stored(app) == [] and screen.query_one(PromptInput).text == f"/image {png}"

    run(go())


def test_chat_filter_shows_its_text_down_goes_to_the_list_and_esc_clears(make_app: AppFactory) -> None:
    """Ctrl+F: what is typed is on screen (r included); ↓ reaches the list, where r renames; Esc clears, then leaves."""
    from textual.widgets import Input

    from tui.screens.modals.text_prompt import TextPromptModal

    async def go() -> None:
        app = make_app()
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await ready(pilot)
            await send(pilot, "apples")
            await pilot.press("ctrl+n")
            await send(pilot, "pears")
            await pilot.press("ctrl+f", *"appr")
            await pilot.pause()
            box = screen.query_one("#session-filter", Input)
            assert box.value == "appr"  # r typed, not a rename
            assert box.content_region.height == 1 and box.content_region.width >= len("appr")
            assert "appr" in box.render_line(0).text
            await pilot.press("backspace", "l")
            await pilot.pause()
            options = screen.query_one("#session-options")
            assert options.option_count == 1  # type: ignore[attr-defined]
            await pilot.press("down")
            assert app.focused is options
            await pilot.press("r")
            await pilot.pause()
            assert isinstance(app.screen, TextPromptModal)
            await pilot.press("escape")
            await pilot.press("ctrl+f", "escape")
            await pilot.pause()
            assert box.value == "" and options.option_count == 2  # type: ignore[attr-defined]
            await pilot.press("escape")
            assert app.focused is screen.query_one(PromptInput)

    run(go())


def footer_keys(app: LlmTuiApp) -> list[str]:
    """The footer's keys (`^l Model`), each checked to be wholly on screen: none is cut at the edge."""
    from textual.widgets import Footer

    footer = app.screen.query_one(Footer)
    keys = [w for w in footer.query("FooterKey") if not w.has_class("-command-palette")]
    for key in keys:
        region = key.region
        assert region.width and app.screen.get_widget_at(region.right - 1, region.y)[0] is key, f"{key.render()} cut"
    return [" ".join(str(key.render()).split()) for key in keys]


def status_lines(screen: ChatScreen) -> list[str]:
    status = screen.query_one("#chat-status")
    return [status.render_line(y).text.strip() for y in range(status.size.height)]


SIZES = [(80, 24), (100, 30)]


def focused(app: LlmTuiApp) -> object:
    """The focused widget (untyped, so one test can follow focus from widget to widget)."""
    return app.focused


def test_tab_goes_from_the_prompt_to_the_log_and_the_footer_lists_each_widgets_keys(make_app: AppFactory) -> None:
    async def go(size: tuple[int, int]) -> None:
        app = make_app()
        async with app.run_test(size=size) as pilot:
            screen = await ready(pilot)
            await send(pilot, "hi")
            assert focused(app) is screen.query_one(PromptInput)
            everywhere = ["^l Model", "^n New", "^f Chats", "^q Quit"]
            assert footer_keys(app) == ["^r Regen", "^o Options", "^t Export", *everywhere]
            await pilot.press("tab")
            assert focused(app) is screen.query_one(ChatLog)
            assert footer_keys(app) == ["k Prev", "j Next", "c Copy", "y Code", "e Edit", *everywhere]
            await pilot.press("k", "c")
            await pilot.pause()
            assert "Copied 8 characters" in list(app._notifications)[-1].message
            await pilot.press("tab")
            assert focused(app) is screen.query_one("#session-filter")
            assert footer_keys(app) == ["↓ List", "esc Clear", *everywhere]
            await pilot.press("tab")
            assert focused(app) is screen.query_one("#session-options")
            assert footer_keys(app)[:2] == ["r Rename", "del Delete"]
            await pilot.press("tab")
            assert focused(app) is screen.query_one(PromptInput)

    for size in SIZES:
        run(go(size))


def test_status_line_and_footer_fit_while_streaming_and_editing(make_app: AppFactory) -> None:
    """The status line wraps between words instead of being cut; Esc joins the footer when it has work."""
    engine = FakeEngine(reply=" ".join(f"w{i}" for i in range(400)), token_delay_s=0.01)

    async def go(size: tuple[int, int]) -> None:
        app = make_app(engine=engine)
        async with app.run_test(size=size) as pilot:
            screen = await ready(pilot)
            await pilot.press("ctrl+o", *"Be brief.", "ctrl+s")
            await pilot.pause()
            screen.query_one(PromptInput).focus()
            await pilot.press(*"go", "enter")
            await until(pilot, lambda: screen.turn is not None, "the reply to start")
            await pilot.pause()
            shown = " ".join(status_lines(screen))
            assert shown.endswith("generating · Esc stops · system prompt set"), shown
            assert footer_keys(app)[:4] == ["^o Options", "^t Export", "esc Stop", "^l Model"]
            await pilot.press("tab")
            assert footer_keys(app)[:5] == ["k Prev", "j Next", "c Copy", "y Code", "esc Stop"]
            await pilot.press("escape")
            await until(pilot, lambda: screen.turn is None, "the reply to stop")
            await pilot.press("ctrl+g")
            await pilot.pause()
            lines = status_lines(screen)
            assert " ".join(lines).endswith("editing · Enter resends · Esc cancels · system prompt set"), lines
            assert "esc Stop" in footer_keys(app)
            await pilot.press("tab")
            footer_keys(app)  # the log's keys and Esc still fit

    for size in SIZES:
        run(go(size))


def test_settings_dialog_opens_at_its_top_with_every_hint_whole(make_app: AppFactory) -> None:
    """Ctrl+O at 80x24: the first label shows (not scrolled past), and no field's hint is cut."""
    from textual.widgets import Input

    from tui.screens.modals.params import ParamsModal

    async def go(size: tuple[int, int]) -> None:
        app = make_app()
        async with app.run_test(size=size) as pilot:
            await ready(pilot)
            await pilot.press("ctrl+o")
            await pilot.pause()
            modal = app.screen
            assert isinstance(modal, ParamsModal)
            assert focused(app) is modal.query_one("#system")
            body = modal.query_one("#params-body")
            assert body.scroll_y == 0
            first = modal.query_one("#params-body > Label")
            assert modal.get_widget_at(first.region.x, first.region.y)[0] is first
            for field in modal.query(Input):
                assert field.content_region.width >= len(field.placeholder), (field.id, field.placeholder)

    for size in SIZES:
        run(go(size))


def test_model_picker_keeps_its_key_line_on_screen(make_app: AppFactory, models_dir: Path) -> None:
    from tui.screens.modals.model_picker import ModelPickerModal

    async def go(size: tuple[int, int]) -> None:
        app = make_app(launch=False)
        async with app.run_test(size=size) as pilot:
            await pilot.press("ctrl+l")
            await pilot.pause()
            modal = app.screen
            assert isinstance(modal, ModelPickerModal)
            hint = modal.query_one(".dialog-hint")
            assert modal.get_widget_at(hint.region.x, hint.region.y)[0] is hint
            assert modal.query_one("#model-options").size.height >= 5

    for size in SIZES:
        run(go(size))


def test_a_paste_that_fills_the_context_says_so_instead_of_max_tokens(make_app: AppFactory) -> None:
    engine = FakeEngine(reply=" ".join(f"w{i}" for i in range(50)), n_ctx=40)

    async def go() -> None:
        app = make_app(engine=engine)
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await ready(pilot)
            prompt = screen.query_one(PromptInput)
            prompt.focus()
            prompt.insert(" ".join(["pasted"] * 30))  # 30 words + 4 = 34 of the fake's 40 tokens
            await pilot.press("enter")
            await until(pilot, lambda: screen.turn is None and len(stored(app)) == 2, "the reply")
            log = screen.query_one(ChatLog)
            reply = log.reply(log.messages[-1].key)
            assert reply is not None
            assert "the prompt filled the context (34 of 40 tokens)" in reply.footer
            assert "max tokens" not in reply.footer

    run(go())


def test_max_tokens_and_a_full_context_read_differently() -> None:
    from engines.store.sessions import TurnMetrics
    from tui.chat_turn import metrics_line

    assert metrics_line(TurnMetrics(prompt_tokens=5, completion_tokens=16, finish_reason="length")).endswith(
        "5→16 tokens · hit max tokens"
    )
    full = metrics_line(TurnMetrics(prompt_tokens=100, completion_tokens=900, finish_reason="context"))
    assert full.endswith("the context is full (1000 tokens): a new chat, or a relaunch with more, makes room")


def test_a_stopped_remote_reply_shows_an_estimated_prompt_count_not_zero() -> None:
    from engines.store.sessions import TurnMetrics
    from engines.types import Done, Usage
    from tui.chat_turn import metrics_line

    stopped = TurnMetrics.from_done(Done(Usage(16, 13, estimated=True), "cancelled"))
    assert metrics_line(stopped) == "≈16→13 tokens · stopped"
    assert metrics_line(TurnMetrics.from_done(Done(Usage(16, 13), "stop"))) == "16→13 tokens"


def test_a_base_model_is_named_with_the_instruct_build_to_use(make_app: AppFactory, isolated_dirs: Path) -> None:
    """The default model (Gemma 3 270M base) continues text; the status line says so and names gemma-3-270m-it."""
    base = isolated_dirs / "gemma-3-270m-q4_k_m.gguf"  # the catalog's file name: the model id is the entry's
    base.write_bytes(b"GGUF")

    note = "base model, not chat-tuned: for chat get gemma-3-270m-it (F2)"

    async def go(size: tuple[int, int]) -> None:
        app = make_app(launch=False, engine=FakeEngine(reply=" ".join(f"w{i}" for i in range(400)), token_delay_s=0.01))
        async with app.run_test(size=size) as pilot:
            app.launch_model(str(base))
            screen = await ready(pilot)
            shown = " ".join(status_lines(screen))
            assert shown.startswith("gemma-3-270m · fake · ready") and shown.endswith(note), shown
            # The longest status there is still shows whole: streaming, with a system prompt, on a base model.
            await pilot.press("ctrl+o", *"Be brief.", "ctrl+s")
            await pilot.pause()
            screen.query_one(PromptInput).focus()
            await pilot.press(*"go", "enter")
            await until(pilot, lambda: screen.turn is not None, "the reply to start")
            await pilot.pause()
            shown = " ".join(status_lines(screen))
            assert shown.endswith(f"generating · Esc stops · system prompt set · {note}"), shown
            await pilot.press("escape")
            await until(pilot, lambda: screen.turn is None, "the reply to stop")

    for size in SIZES:
        run(go(size))
