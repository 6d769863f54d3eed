"""The instances screen for a model launched with slots: slots in use and requests waiting, by keys, and
its snapshot at 100x30 and 80x24."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Static

from engines.adapters.fake import FakeEngine
from engines.types import ChatMessage, InstanceState, LaunchOptions, ModelSpec
from tests.tui.conftest import AppFactory
from tests.tui.test_chat_screen import until
from tests.tui.test_instances_screen import drive, table_text
from tests.tui.test_snapshots import SIZES, settle
from tui.app import LlmTuiApp
from tui.screens.instances import InstancesScreen

NOW = 1_800_000_000.0


def start_slotted(app: LlmTuiApp, fake_model: Path, gates: tuple[threading.Event, threading.Event]) -> str:
    """Four slots, six requests: four held at their first token, two waiting for a slot."""
    load_gate, token_gate = gates
    manager = app.runtime.manager
    options = LaunchOptions(parallel=4, speculative="prompt-lookup")
    engine = FakeEngine(gate=token_gate, load_gate=load_gate)
    run_id = manager.start(ModelSpec(id="team-model", path=fake_model), options, engine, wait=False)
    for i in range(6):  # queued while it loads, so the first four take the slots together
        manager.submit(run_id, [ChatMessage("user", f"question {i}")])
    load_gate.set()
    return run_id


async def all_slots_busy(app: LlmTuiApp, pilot: Pilot[int], run_id: str) -> None:
    manager = app.runtime.manager
    await until(pilot, lambda: manager.info(run_id).slots_busy == 4, "four slots busy")
    assert manager.info(run_id).state is InstanceState.BUSY


def test_slots_in_use_and_the_queue_show_in_the_row_and_the_detail(
    make_app: AppFactory, fake_model: Path, gates: tuple[threading.Event, threading.Event]
) -> None:
    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        run_id = start_slotted(app, fake_model, gates)
        await all_slots_busy(app, pilot, run_id)
        screen = app.screen
        assert isinstance(screen, InstancesScreen)
        screen.refresh_table()
        await pilot.press("home")
        row = next(line for line in table_text(app).splitlines() if run_id in line)
        assert "busy 4/4 +2" in row
        detail = str(screen.query_one("#instances-detail", Static).render())
        assert "4 slots × 4,096 tokens" in detail and "slots in use 4 of 4 · queued 2" in detail
        assert "speculative prompt-lookup: 0 of 0 drafted tokens accepted" in detail
        gates[1].set()
        manager = app.runtime.manager
        await until(pilot, lambda: manager.info(run_id).requests_served == 6, "every request answered")
        screen.refresh_table()
        row = next(line for line in table_text(app).splitlines() if run_id in line)
        assert "ready" in row and "busy" not in row

    drive(make_app(screen="instances", launch=False), test)


@pytest.mark.parametrize("size", SIZES)
def test_instances_with_slots(  # type: ignore[no-untyped-def]
    snap_compare, make_app: AppFactory, fake_model: Path, gates: tuple[threading.Event, threading.Event], size
) -> None:
    async def show(pilot: Pilot[int]) -> None:
        app = pilot.app
        assert isinstance(app, LlmTuiApp)
        run_id = start_slotted(app, fake_model, gates)
        await all_slots_busy(app, pilot, run_id)
        instance = app.runtime.manager._get(run_id)  # a fixed uptime for the picture
        instance.started_at = NOW - 600
        screen = app.screen
        assert isinstance(screen, InstancesScreen)
        screen.clock = lambda: NOW
        screen.refresh_table()
        await pilot.press("home")
        await settle(pilot)

    assert snap_compare(make_app(screen="instances", launch=False), terminal_size=size, run_before=show)
