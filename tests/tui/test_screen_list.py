"""The one list of screens: every screen opens by its key and by `--screen`, and the command palette's screen
commands reach a real method of their screen (by keys, and for every command in the tables)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any
from unittest.mock import Mock

import pytest
from textual.command import Command, CommandList, CommandPalette
from textual.pilot import Pilot
from textual.screen import Screen

from cli.main import _app_args, build_parser
from tests.tui.conftest import AppFactory
from tests.tui.test_chat_screen import until
from tui.app import LlmTuiApp
from tui.commands import (
    CATALOG_COMMANDS,
    CHAT_COMMANDS,
    CHAT_COPY_COMMANDS,
    CHAT_EXPORT,
    COMPARE_COMMANDS,
    SETTINGS_COMMANDS,
    ScreenCommand,
    app_commands,
)
from tui.screen_list import CATALOG, CHAT, COMPARE, KEYED, MODE_NAMES, SCREENS, SETTINGS, ScreenEntry
from tui.widgets.screen_bar import ScreenBar

SCREEN_COMMANDS: Sequence[tuple[ScreenEntry[Any], Sequence[ScreenCommand[Any]]]] = (
    (CHAT, (*CHAT_COMMANDS, *CHAT_COPY_COMMANDS, CHAT_EXPORT)),
    (CATALOG, CATALOG_COMMANDS),
    (COMPARE, COMPARE_COMMANDS),
    (SETTINGS, SETTINGS_COMMANDS),
)


async def from_palette(pilot: Pilot[int], title: str) -> None:
    """Ctrl+P, type `title`, wait until it is the highlighted hit (the palette searches in a worker), Enter."""
    app = pilot.app
    await pilot.press("ctrl+p")
    await until(pilot, lambda: isinstance(app.screen, CommandPalette), "the command palette")
    await pilot.press(*title)
    results = app.screen.query_one(CommandList)

    def highlighted() -> str | None:
        index = results.highlighted
        if index is None or index >= results.option_count:
            return None
        option = results.get_option_at_index(index)
        return option.hit.text if isinstance(option, Command) else None

    await until(pilot, lambda: highlighted() == title, f"“{title}” to be the palette's first hit")
    await pilot.press("enter")
    await until(pilot, lambda: not isinstance(app.screen, CommandPalette), "the palette to close")


def shown(app: LlmTuiApp, entry: ScreenEntry[Any]) -> bool:
    return app.screen.name == entry.mode and isinstance(app.screen, entry.load())


def test_the_list_is_the_bars_the_apps_and_the_command_lines() -> None:
    # F1-F8, then F10: F9 is the chat's tools key (and F11 many terminals keep for full screen).
    assert [e.key for e in SCREENS] == [*(f"f{n}" for n in range(1, 9)), "f10", "f11", ""]
    assert len(set(MODE_NAMES)) == len(SCREENS)
    assert set(LlmTuiApp.MODES) == set(MODE_NAMES)
    screen_option = next(a for a in build_parser()._actions if "--screen" in a.option_strings)
    assert tuple(screen_option.choices or ()) == MODE_NAMES


def test_every_screen_opens_by_its_key(make_app: AppFactory) -> None:
    app = make_app(launch=False)

    async def main() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: shown(app, CHAT), "the chat")
            for entry in (*KEYED[1:], CHAT):
                await pilot.press(entry.key)
                await until(pilot, lambda e=entry: shown(app, e), f"{entry.key} to open {entry.mode}")
                assert app.screen.query_one(ScreenBar).current == entry.mode

    asyncio.run(main())


@pytest.mark.parametrize("mode", MODE_NAMES)
def test_every_screen_opens_by_the_screen_option(make_app: AppFactory, mode: str) -> None:
    args = _app_args(["--screen", mode])
    assert args is not None and args.screen == mode
    assert build_parser().parse_args(["--screen", mode]).screen == mode
    app = make_app(screen=args.screen, launch=False)
    entry = next(e for e in SCREENS if e.mode == mode)

    async def main() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: shown(app, entry), f"the app to start on {mode}")
            assert sorted(app._screen_stacks) == [mode]  # no other screen built on the way

    asyncio.run(main())


@pytest.mark.parametrize(
    ("entry", "command"),
    [(entry, command) for entry, commands in SCREEN_COMMANDS for command in commands],
    ids=lambda v: v.title if isinstance(v, ScreenCommand) else v.mode,
)
def test_each_palette_screen_command_calls_one_action_of_its_screen(
    entry: ScreenEntry[Any], command: ScreenCommand[Any]
) -> None:
    """A method renamed on the screen fails here (a spec'd stand-in has only the screen's real attributes)."""
    screen = Mock(spec=entry.load())
    command.run(screen)
    assert len(screen.method_calls) == 1, screen.method_calls
    assert screen.method_calls[0][0].startswith("action_"), screen.method_calls


def test_every_palette_screen_command_is_listed(make_app: AppFactory) -> None:
    app = make_app(launch=False)
    titles = [c.title for c in app_commands(app)]
    expected = [c.title for _, commands in SCREEN_COMMANDS for c in commands]
    assert set(expected) <= set(titles), set(expected) - set(titles)
    assert {e.palette_title for e in SCREENS} <= set(titles)


def test_the_palettes_screen_commands_run_by_keys(make_app: AppFactory) -> None:
    """From another screen, each command opens its screen and does its action there."""
    from tui.screens.chat import ChatScreen
    from tui.screens.modals.endpoint_edit import EndpointModal
    from tui.screens.modals.model_picker import ModelPickerModal
    from tui.screens.modals.params import ParamsModal

    app = make_app(launch=False)

    def below(modal: type[Screen[Any]], entry: ScreenEntry[Any]) -> bool:
        stack = app.screen_stack
        return isinstance(stack[-1], modal) and len(stack) > 1 and stack[-2].name == entry.mode

    async def main() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            chat = app.screen
            assert isinstance(chat, ChatScreen)
            await until(pilot, lambda: chat.session is not None, "the chat's first session")
            first = chat.session
            assert first is not None
            await pilot.press("f2")
            await until(pilot, lambda: app.screen.name == "catalog", "the catalog")
            await from_palette(pilot, "New chat")
            await until(pilot, lambda: app.screen is chat, "the chat")
            assert chat.session is not None and chat.session.id != first.id

            await from_palette(pilot, "Compare: system prompt and parameters")
            await until(pilot, lambda: below(ParamsModal, COMPARE), "the compare options over the compare screen")
            await pilot.press("escape")
            await from_palette(pilot, "Add remote endpoint")
            await until(pilot, lambda: below(EndpointModal, SETTINGS), "the endpoint dialog over settings")
            await pilot.press("escape")
            await from_palette(pilot, "Launch model")
            await until(pilot, lambda: below(ModelPickerModal, CHAT), "the model picker over the chat")
            await pilot.press("escape")
            await until(pilot, lambda: app.screen is chat, "the chat")

    asyncio.run(main())
