"""SVG snapshots of every screen at 100x30 and 80x24 (pytest-textual-snapshot)."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
from textual.pilot import Pilot

from engines.adapters.fake import FakeEngine
from engines.telemetry.fake import GIB, FakeGpuSource, FakeProcess, default_gpus
from engines.telemetry.nvml import INSTALL_HINT
from engines.telemetry.sources import NoGpuSource
from tests.tui.catalog_fixture import fixed_listing
from tests.tui.conftest import AppFactory
from tests.tui.test_chat_screen import chat, ready, send, until
from tests.tui.test_gauges_screen import FIXED_HOST, install_poller, shown
from tui.app import LlmTuiApp
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


@pytest.mark.parametrize("size", SIZES)
def test_model_picker(snap_compare, make_app: AppFactory, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    async def open_picker(pilot: Pilot[int]) -> None:
        await pilot.press("ctrl+l")
        await settle(pilot)

    assert snap_compare(make_app(launch=False), terminal_size=size, run_before=open_picker)


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
    "offer_download": ("slash", *"qwen-7b", "enter", "enter"),
}


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("view", list(CATALOG_VIEWS))
def test_catalog(snap_compare, make_app: AppFactory, models_dir: Path, view: str, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    app = make_app(screen="catalog", launch=False, listing=fixed_listing)
    assert snap_compare(app, terminal_size=size, run_before=lambda pilot: catalog_ready(pilot, *CATALOG_VIEWS[view]))


def gauges_app(make_app: AppFactory, gpus: bool) -> LlmTuiApp:
    """The gauges screen after 40 scripted samples: two fake GPUs (one running our instance) or none."""
    big, small = default_gpus()
    steps = range(40)
    script = [
        {
            0: replace(big, utilization_pct=round(60 + 35 * math.sin(i / 4)), memory_used_bytes=(6 + i // 4) * GIB),
            1: replace(small, utilization_pct=float(i % 10 * 3)),
        }
        for i in steps
    ]
    hosts = [replace(FIXED_HOST, cpu_pct=20 + 15 * math.cos(i / 5), ram_used_bytes=(18 + i // 10) * GIB) for i in steps]
    processes = [FakeProcess(0, 4242, 15 * GIB, "python3"), FakeProcess(0, 1337, 600 << 20, "Xorg")]
    # Without GPUs: the longest hint (the extra to install), which must wrap whole at 80×24.
    hint = NoGpuSource(f"GPU gauges need nvidia-ml-py: {INSTALL_HINT}")
    source = FakeGpuSource(processes=processes, script=script) if gpus else hint
    app = make_app(screen="gauges", launch=False)
    install_poller(app, source, host=hosts, pids=lambda: {4242: "run-1"}, interval_s=3600, samples=len(steps))
    return app


async def gauges_ready(pilot: Pilot[int]) -> None:
    await shown(pilot)
    await settle(pilot)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("gpus", [pytest.param(True, id="two_gpus"), pytest.param(False, id="no_gpu")])
def test_gauges(snap_compare, make_app: AppFactory, gpus: bool, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(gauges_app(make_app, gpus), terminal_size=size, run_before=gauges_ready)
