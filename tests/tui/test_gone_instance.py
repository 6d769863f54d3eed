"""Picking a running instance from a list shown before it stopped (idle unload, a stop elsewhere) says so instead
of failing: found by the monkey run (seed 17, chat/streaming), where Enter in the model picker picked 'r1-fake'
after it had stopped."""

from __future__ import annotations

from textual.pilot import Pilot

from tests.tui.conftest import AppFactory
from tests.tui.test_chat_screen import until
from tests.tui.test_instances_screen import drive
from tui.app import LlmTuiApp
from tui.screens.modals.model_picker import ModelPickerModal


def test_picking_an_instance_that_stopped_meanwhile_says_it_is_gone(make_app: AppFactory) -> None:
    app = make_app()

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        await until(pilot, lambda: app.runtime.active is not None and "ready" in app.status_text, "the model")
        run_id = app.runtime.active.run_id if app.runtime.active else ""
        await pilot.press("ctrl+l")
        await until(pilot, lambda: isinstance(app.screen, ModelPickerModal), "the model picker")
        app.runtime.manager.stop(run_id, timeout=10)  # gone while the list still shows it
        await pilot.press("enter")  # the running instance is the first row
        await until(pilot, lambda: not isinstance(app.screen, ModelPickerModal), "the picker to close")
        messages = [str(n.message) for n in app._notifications]
        assert any(f"{run_id} is no longer running" in m for m in messages), messages
        assert app.crash_guard.caught == 0

    drive(app, test)
