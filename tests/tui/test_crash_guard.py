"""The last line of defence: an exception from an action, a message handler or a worker is logged with its
traceback, said once naming the log, and the app keeps running with its instance loaded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.pilot import Pilot

from engines.errors import LlmTuiError
from tests.tui.conftest import AppFactory
from tests.tui.test_chat_screen import ready, run, until
from tui.app import LlmTuiApp
from tui.messages import ModelLaunched
from tui.runtime import Runtime
from tui.screens.chat import ChatScreen


@pytest.fixture(autouse=True)
def caught_on_purpose(make_app: AppFactory, isolated_dirs: Path) -> Iterator[None]:
    """These tests make the guard catch on purpose: their log must not fail make_app's check of it."""
    yield
    (isolated_dirs / "xdg_state_home" / "llm-tui" / "crash.log").unlink(missing_ok=True)


def error_notes(app: LlmTuiApp) -> list[str]:
    return [n.message for n in app._notifications if n.severity == "error"]


async def still_running(pilot: Pilot[int], app: LlmTuiApp) -> None:
    """Keys still work (the app's and the screen's pumps live on) and the fake instance is still loaded."""
    await pilot.press("f4")
    await until(pilot, lambda: app.screen.name == "instances", "F4 to open the instances screen")
    await pilot.press("f1")
    await until(pilot, lambda: app.screen.name == "chat", "F1 to open the chat again")
    assert app.is_running
    assert [i.state.value for i in app.runtime.manager.instances()] == ["ready"]


def assert_logged_once(app: LlmTuiApp, marker: str) -> None:
    log = app.crash_log_path
    assert log.parent.name == "llm-tui" and "xdg_state_home" in str(log)
    text = log.read_text(encoding="utf-8")
    assert "Traceback (most recent call last)" in text and marker in text
    notes = [n for n in error_notes(app) if str(log) in n]
    assert len(notes) == 1, error_notes(app)
    assert marker in notes[0]


def test_an_action_that_raises_is_logged_and_said_and_the_app_keeps_running(
    make_app: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: ChatScreen) -> None:
        raise RuntimeError("boom-action")

    monkeypatch.setattr(ChatScreen, "action_new_session", broken)
    app = make_app()

    async def main() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await ready(pilot)
            assert not app.crash_log_path.exists()
            await pilot.press("ctrl+n")
            await until(pilot, lambda: bool(error_notes(app)), "the guard to say it")
            assert_logged_once(app, "boom-action")
            assert "in LlmTuiApp handling Key" in app.crash_log_path.read_text(encoding="utf-8")
            await still_running(pilot, app)

    run(main())


def test_a_message_handler_that_raises_is_logged_and_said_and_the_app_keeps_running(
    make_app: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = LlmTuiApp.on_model_launched

    def broken(self: LlmTuiApp, message: ModelLaunched) -> None:
        original(self, message)
        raise KeyError("boom-handler")

    monkeypatch.setattr(LlmTuiApp, "on_model_launched", broken)
    app = make_app()

    async def main() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await ready(pilot)
            await until(pilot, lambda: bool(error_notes(app)), "the guard to say it")
            assert_logged_once(app, "boom-handler")
            await still_running(pilot, app)

    run(main())


def test_a_thread_worker_that_raises_is_logged_and_said_and_the_app_keeps_running(
    make_app: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Runtime) -> list[int]:
        raise ValueError("boom-worker")

    monkeypatch.setattr(Runtime, "resume_downloads", broken)
    app = make_app()

    async def main() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await ready(pilot)
            await until(pilot, lambda: bool(error_notes(app)), "the guard to say it")
            assert_logged_once(app, "boom-worker")
            await still_running(pilot, app)

    run(main())


def test_the_same_error_again_is_logged_but_said_once(make_app: AppFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: ChatScreen) -> None:
        raise RuntimeError("boom-again")

    monkeypatch.setattr(ChatScreen, "action_new_session", broken)
    app = make_app(launch=False)

    async def main() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause()
            await pilot.press("ctrl+n", "ctrl+n", "ctrl+n")
            await until(pilot, lambda: app.crash_guard.caught == 3, "three catches")
            assert app.crash_log_path.read_text(encoding="utf-8").count("boom-again") >= 3
            assert len(error_notes(app)) == 1

    run(main())


def test_nothing_caught_leaves_no_log(make_app: AppFactory) -> None:
    app = make_app()

    async def main() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await ready(pilot)
            await pilot.press("f4", "f1")
            await pilot.pause()
        assert app.crash_guard.caught == 0
        assert not app.crash_log_path.exists()

    run(main())


def test_an_app_without_a_guard_still_fails_as_textual_does() -> None:
    """The dispatch wrapper only acts for an app that has a guard: other apps (and Textual's tests) are unchanged."""
    from textual.app import App

    from tui.crash_guard import install

    install()

    class Plain(App[None]):
        def action_boom(self) -> None:
            raise LlmTuiError("boom-plain")

    async def main() -> None:
        async with Plain().run_test() as pilot:
            await pilot.app.run_action("boom")

    with pytest.raises(LlmTuiError, match="boom-plain"):
        run(main())


def test_the_log_lives_in_the_state_folder(make_app: AppFactory, isolated_dirs: Path) -> None:
    app = make_app(launch=False)
    assert app.crash_log_path == isolated_dirs / "xdg_state_home" / "llm-tui" / "crash.log"
