"""The command palette stops instances; when the chat's instance stops, the most recently used ready one takes
its place and the app says so, instead of leaving "no model"."""

from __future__ import annotations

from pathlib import Path

from textual.pilot import Pilot

from engines.adapters.fake import FakeEngine
from engines.types import LaunchOptions, ModelSpec
from tests.tui.conftest import AppFactory
from tests.tui.test_chat_screen import palette, ready, run, until
from tui.app import LlmTuiApp
from tui.commands import app_commands


def notes(app: LlmTuiApp) -> list[str]:
    return [n.message for n in app._notifications]


def running(app: LlmTuiApp) -> list[str]:
    return [i.run_id for i in app.runtime.manager.instances()]


async def two_instances(pilot: Pilot[int], fake_model: Path) -> tuple[str, str]:
    """The launched (active) instance and a second ready one started beside it: (active, other)."""
    app = pilot.app
    assert isinstance(app, LlmTuiApp)
    await ready(pilot)
    active = app.runtime.active
    assert active is not None
    other = app.runtime.manager.start(ModelSpec(id="second", path=fake_model), LaunchOptions(), FakeEngine())
    return active.run_id, other


def test_the_palette_stops_an_instance_by_keys(make_app: AppFactory, fake_model: Path) -> None:
    app = make_app()

    async def main() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            active, other = await two_instances(pilot, fake_model)
            await palette(pilot, f"stop instance {other} second")
            await until(pilot, lambda: running(app) == [active], "the palette to stop the second instance")
            assert app.runtime.active is not None and app.runtime.active.run_id == active
            assert app.screen.name == "chat"

    run(main())


def test_the_palette_lists_a_stop_for_each_running_instance(make_app: AppFactory, fake_model: Path) -> None:
    app = make_app()

    async def main() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            active, other = await two_instances(pilot, fake_model)
            titles = [c.title for c in app_commands(app) if c.title.startswith("Stop instance")]
            assert titles == [f"Stop instance {active} tiny", f"Stop instance {other} second"]

    run(main())


def test_stopping_the_chats_instance_in_the_palette_moves_the_chat_to_the_ready_one(
    make_app: AppFactory, fake_model: Path
) -> None:
    app = make_app()

    async def main() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            active, other = await two_instances(pilot, fake_model)
            await palette(pilot, f"stop instance {active} tiny")
            await until(pilot, lambda: running(app) == [other], "the palette to stop the chat's instance")
            await until(pilot, lambda: "second" in app.status_text, "the header to show the other instance")
            assert app.runtime.active is not None and app.runtime.active.run_id == other
            assert any(f"the chat now uses second ({other})" in n for n in notes(app)), notes(app)
            assert "no model" not in app.status_text

    run(main())


def test_stopping_the_chats_instance_on_f4_moves_the_chat_to_the_most_recently_used_ready_one(
    make_app: AppFactory, fake_model: Path
) -> None:
    app = make_app()

    async def main() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            active, second = await two_instances(pilot, fake_model)
            manager = app.runtime.manager
            third = manager.start(ModelSpec(id="third", path=fake_model), LaunchOptions(), FakeEngine())
            # `second` answered a request after `third` loaded: it is the most recently used.
            manager.complete(second, "hi").result()
            assert manager.info(second).last_used_at >= manager.info(third).last_used_at
            await pilot.press("f4")
            await until(pilot, lambda: app.screen.name == "instances", "the instances screen")
            await pilot.press("home", "s")  # the oldest row: the chat's instance
            await until(pilot, lambda: active not in running(app), "F4's s to stop the chat's instance")
            await until(pilot, lambda: "second" in app.status_text, "the header to show the most recent one")
            assert app.runtime.active is not None and app.runtime.active.run_id == second
            assert any("the chat now uses second" in n for n in notes(app)), notes(app)

    run(main())


def test_stopping_the_only_instance_leaves_no_model(make_app: AppFactory) -> None:
    app = make_app()

    async def main() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await ready(pilot)
            active = app.runtime.active
            assert active is not None
            await palette(pilot, f"stop instance {active.run_id}")
            await until(pilot, lambda: not running(app), "the palette to stop the instance")
            await until(pilot, lambda: "no model" in app.status_text, "the header to say no model")
            assert app.runtime.active is None
            assert not any("now uses" in n for n in notes(app))

    run(main())
