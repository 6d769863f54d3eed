"""SVG snapshots of the instances screen and the launch dialog at 100x30 and 80x24."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from textual.pilot import Pilot

from engines.adapters import registry
from engines.adapters.fake import FakeEngine
from engines.catalog.fit import ModelShape
from engines.server.guard import RequestRecord, ServerStats
from engines.types import InstanceState, LaunchOptions, ModelSpec
from tests.tui.conftest import AppFactory
from tests.tui.test_chat_screen import until
from tests.tui.test_instances_screen import RESOURCES, start_four
from tests.tui.test_snapshots import SIZES, settle
from tui.app import LlmTuiApp
from tui.screens.instances import InstancesScreen
from tui.screens.modals.launch import LaunchTarget

NOW = 1_800_000_000.0


@pytest.mark.parametrize("size", SIZES)
def test_instances_in_every_state(  # type: ignore[no-untyped-def]
    snap_compare, make_app: AppFactory, fake_model: Path, gates: tuple[threading.Event, threading.Event], size
) -> None:
    async def show(pilot: Pilot[int]) -> None:
        app = pilot.app
        assert isinstance(app, LlmTuiApp)
        ids = start_four(app, fake_model, gates)
        manager = app.runtime.manager
        await until(pilot, lambda: manager.info(ids[-1]).state is InstanceState.ERROR, "the load fails")
        await until(pilot, lambda: manager.info(ids[1]).state is InstanceState.BUSY, "busy")
        for age, run_id in zip((3700, 125, 4, 9), ids, strict=True):
            instance = manager._get(run_id)  # fixed uptimes and idle times for the picture
            instance.started_at = NOW - age
            instance.idle_clock = lambda: NOW
            instance.last_used = NOW - 95
        screen = app.screen
        assert isinstance(screen, InstancesScreen)
        screen.clock = lambda: NOW
        screen.refresh_table()
        await settle(pilot)

    app = make_app(screen="instances", launch=False)
    assert snap_compare(app, terminal_size=size, run_before=show)


@pytest.mark.parametrize("size", SIZES)
def test_launch_dialog(snap_compare, make_app: AppFactory, fake_model: Path, size) -> None:  # type: ignore[no-untyped-def]
    target = LaunchTarget("qwen-7b-q4_k_m", "Qwen 2.5 7B Instruct", "gguf", ("llama.cpp", "mlx"))
    target = LaunchTarget(
        target.ref, target.name, target.format, target.engines, ModelShape.from_params(7_600_000_000, 4.8), 32768
    )

    async def show(pilot: Pilot[int]) -> None:
        app = pilot.app
        assert isinstance(app, LlmTuiApp)
        app.runtime.resources = lambda: RESOURCES  # type: ignore[method-assign]
        app.open_launch_dialog(target)
        await settle(pilot)

    assert snap_compare(make_app(launch=False), terminal_size=size, run_before=show)


@pytest.mark.parametrize("size", SIZES)
def test_launch_dialog_with_no_engine_installed(  # type: ignore[no-untyped-def]
    snap_compare, make_app: AppFactory, monkeypatch: pytest.MonkeyPatch, size
) -> None:
    """It says which extra to install, and Ctrl+S explains instead of launching."""
    monkeypatch.setattr(registry, "is_installed", lambda name: False)
    target = LaunchTarget("gemma-3-270m-it", "Gemma 3 270M IT", "hf", ("transformers",))

    async def show(pilot: Pilot[int]) -> None:
        app = pilot.app
        assert isinstance(app, LlmTuiApp)
        app.runtime.resources = lambda: RESOURCES  # type: ignore[method-assign]
        app.open_launch_dialog(target)
        await settle(pilot)
        await pilot.press("ctrl+s")
        await settle(pilot)

    assert snap_compare(make_app(launch=False), terminal_size=size, run_before=show)


@dataclass
class ShownServer:
    """What the API line reads from a running server, with a fixed URL and counts for the picture."""

    url: str
    stats: ServerStats
    key_count: int = 1

    def stop(self) -> None:
        """Nothing runs."""


def served_requests() -> ServerStats:
    stats = ServerStats()
    calls = (("POST", "/v1/chat/completions", 200), ("GET", "/v1/models", 200), ("POST", "/v1/chat/completions", 404))
    for method, path, status in calls:
        stats.begin()
        error = "the model 'gpt-4' does not exist or is not running" if status == 404 else None
        stats.end(RequestRecord(method, path, status, 12.0, "127.0.0.1:50000", error))
    stats.begin()
    refused = "requests from the web page 'http://evil.example' are refused: add that origin to [serve] allowed_origins"
    stats.end(RequestRecord("GET", "/v1/models", 403, 0.4, "127.0.0.1:50002", refused))
    return stats


async def show_api_on(pilot: Pilot[int], fake_model: Path) -> None:
    """One ready instance, and the API line of a server that has answered four requests."""
    app = pilot.app
    assert isinstance(app, LlmTuiApp)
    manager = app.runtime.manager
    run_id = manager.start(ModelSpec(id="tiny", path=fake_model), LaunchOptions(), FakeEngine(ram_bytes=300 * 10**6))
    instance = manager._get(run_id)
    instance.started_at = NOW - 600
    instance.idle_clock = lambda: NOW
    instance.last_used = NOW - 30
    app.runtime._api = ShownServer("http://127.0.0.1:8000/v1", served_requests())  # type: ignore[assignment]
    app.refresh_status()
    screen = app.screen
    assert isinstance(screen, InstancesScreen)
    screen.clock = lambda: NOW
    screen.refresh_table()
    await settle(pilot)


@pytest.mark.parametrize("size", SIZES)
def test_instances_with_the_api_on(  # type: ignore[no-untyped-def]
    snap_compare, make_app: AppFactory, fake_model: Path, size
) -> None:
    async def show(pilot: Pilot[int]) -> None:
        await show_api_on(pilot, fake_model)

    assert snap_compare(make_app(screen="instances", launch=False), terminal_size=size, run_before=show)


@pytest.mark.parametrize("size", SIZES)
def test_the_api_request_log(  # type: ignore[no-untyped-def]
    snap_compare, make_app: AppFactory, fake_model: Path, size
) -> None:
    """`A` on the instances screen: every request, a refusal's reason past the right edge and the keys to read it."""

    async def show(pilot: Pilot[int]) -> None:
        await show_api_on(pilot, fake_model)
        await pilot.press("A")
        await settle(pilot)

    assert snap_compare(make_app(screen="instances", launch=False), terminal_size=size, run_before=show)
