"""SVG snapshots of every screen at 100x30 and 80x24 (pytest-textual-snapshot)."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot

from engines.adapters.fake import FakeEngine
from tests.tui.catalog_fixture import fixed_listing
from tests.tui.conftest import AppFactory
from tests.tui.test_chat_screen import chat, ready, send, until
from tui.screens.catalog import CatalogScreen

SIZES = [pytest.param((100, 30), id="100x30"), pytest.param((80, 24), id="80x24")]

CODE_REPLY = (
    "Here is a function that adds two numbers:\n\n"
    "```python\ndef add(a: int, b: int) -> int:\n    return a + b\n```\n\n"
    "Call it as `add(2, 3)` to get **5**."
)


async def settle(pilot: Pilot[int]) -> None:
    """Hide toasts, stop cursors blinking (a blink would make frames differ) and let the last frame render."""
    pilot.app.clear_notifications()
    for widget in pilot.app.screen.query("TextArea, Input"):
        widget.cursor_blink = False  # type: ignore[attr-defined]
    await pilot.pause()
    await pilot.wait_for_scheduled_animations()
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES)
def test_chat_empty(snap_compare, make_app: AppFactory, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(make_app(launch=False), terminal_size=size, run_before=settle)


@pytest.mark.parametrize("size", SIZES)
def test_chat_conversation_with_code(snap_compare, make_app: AppFactory, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    async def converse(pilot: Pilot[int]) -> None:
        await ready(pilot)
        await send(pilot, "Write a Python function that adds two numbers.")
        screen = chat(pilot.app)  # type: ignore[arg-type]
        # Show the stored conversation as reopening it would (streaming frames are timing-dependent).
        assert screen.session is not None
        screen.open_session(screen.session)
        screen.query_one("#prompt").focus()
        await pilot.pause()
        screen.query_one("#chat-log").scroll_end(animate=False, immediate=True)
        await settle(pilot)

    app = make_app(engine=FakeEngine(reply=CODE_REPLY))
    assert snap_compare(app, terminal_size=size, run_before=converse)


@pytest.mark.parametrize("size", SIZES)
def test_chat_settings_modal(snap_compare, make_app: AppFactory, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    async def open_modal(pilot: Pilot[int]) -> None:
        await ready(pilot)
        await pilot.press("ctrl+o")
        await settle(pilot)

    assert snap_compare(make_app(), terminal_size=size, run_before=open_modal)


def test_model_picker(snap_compare, make_app: AppFactory) -> None:  # type: ignore[no-untyped-def]
    async def open_picker(pilot: Pilot[int]) -> None:
        await pilot.press("ctrl+l")
        await settle(pilot)

    assert snap_compare(make_app(launch=False), terminal_size=(100, 30), run_before=open_picker)


async def catalog_ready(pilot: Pilot[int], *keys: str) -> None:
    screen = pilot.app.screen
    assert isinstance(screen, CatalogScreen)
    await until(pilot, lambda: screen.listing is not None, "the listing is built")
    await pilot.press(*keys)
    await settle(pilot)


# The cursor stays off local files in these: their paths hold the test's temporary folder.
CATALOG_VIEWS = {
    "full": ("down",),
    "filtered": ("slash", *"tiny", "down", "down"),
    "detail_fit": ("slash", *"qwen-7b", "enter", "plus"),
}


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("view", list(CATALOG_VIEWS))
def test_catalog(snap_compare, make_app: AppFactory, models_dir: Path, view: str, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    app = make_app(screen="catalog", launch=False, listing=fixed_listing)
    assert snap_compare(app, terminal_size=size, run_before=lambda pilot: catalog_ready(pilot, *CATALOG_VIEWS[view]))


@pytest.mark.parametrize("screen", ["downloads", "instances", "gauges", "compare", "embeddings", "settings"])
def test_screens_not_built_yet(snap_compare, make_app: AppFactory, screen: str) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(make_app(screen=screen, launch=False), terminal_size=(100, 30), run_before=settle)
