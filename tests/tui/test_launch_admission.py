"""Launching when memory is short: refused with the numbers, or the idle instance unloaded after asking."""

from __future__ import annotations

from pathlib import Path

from engines.adapters.fake import FakeEngine
from engines.telemetry.fake import FakeGpuSource
from engines.telemetry.poller import TelemetryPoller
from engines.telemetry.snapshot import HostStats
from engines.types import LaunchOptions, ModelSpec
from tests.engines.gguf_corpus import write_gguf
from tests.tui.conftest import AppFactory
from tests.tui.test_chat_screen import run, until
from tui.app import LlmTuiApp
from tui.screens.modals.confirm import ConfirmModal

MB = 10**6


class ShortHost:
    """A 1 GB host with `free` bytes available when no model is loaded, less what the app's instances hold."""

    def __init__(self, free: int, app: LlmTuiApp) -> None:
        self.free = free
        self.app = app

    def sample(self) -> HostStats:
        held = sum(i.footprint.ram_bytes or 0 for i in self.app.runtime.manager.instances())
        available = max(0, self.free - held)
        return HostStats(ram_total_bytes=1000 * MB, ram_available_bytes=available, ram_used_bytes=1000 * MB - available)


def short_of_memory(app: LlmTuiApp, free: int) -> ShortHost:
    host = ShortHost(free, app)
    app.runtime._telemetry = TelemetryPoller(FakeGpuSource(gpus=[]), host, interval_s=3600)  # type: ignore[arg-type]
    return host


def test_a_launch_that_cannot_fit_is_refused_with_the_numbers(make_app: AppFactory, tmp_path: Path) -> None:
    model = write_gguf(tmp_path / "small.gguf", "llama", context_length=4096)
    app = make_app(launch=False)

    async def main() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            short_of_memory(app, 20 * MB)  # below the ~100 MB overhead allowance alone
            app.launch_model(str(model), None, LaunchOptions(n_ctx=1024))
            await until(pilot, lambda: any("needs" in n.message for n in app._notifications), "refused")
            message = next(n.message for n in app._notifications if "needs" in n.message)
            assert "MB" in message and "free" in message
            assert app.runtime.manager.instances() == []

    run(main())


def test_an_idle_instance_is_offered_for_unloading_and_unloaded_on_yes(make_app: AppFactory, tmp_path: Path) -> None:
    model = write_gguf(tmp_path / "small.gguf", "llama", context_length=4096)
    app = make_app(launch=False)

    async def main() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            old = app.runtime.manager.start(
                ModelSpec(id="old", path=model), LaunchOptions(), FakeEngine(ram_bytes=400 * MB)
            )
            # ~100 MB needed + 256 MiB kept free; 450 MB free without the idle old instance, 50 MB with it.
            short_of_memory(app, 450 * MB)
            app.launch_model(str(model), None, LaunchOptions(n_ctx=1024))
            # The modal is the screen as soon as it is pushed, and composed a moment later (seen on a loaded machine).
            await until(
                pilot,
                lambda: isinstance(app.screen, ConfirmModal) and bool(app.screen.query(".dialog-title")),
                "the unload offer",
            )
            assert old in str(app.screen.query_one(".dialog-title").render())
            await pilot.press("n")
            assert [i.run_id for i in app.runtime.manager.instances()] == [old]  # nothing unloaded on no

            app.launch_model(str(model), None, LaunchOptions(n_ctx=1024))
            await until(pilot, lambda: isinstance(app.screen, ConfirmModal), "asked again")
            await pilot.press("y")
            await until(pilot, lambda: app.runtime.active is not None, "launched after unloading")
            assert [i.run_id for i in app.runtime.manager.instances()] == [app.runtime.active.run_id]  # type: ignore[union-attr]
            stopped = {i.run_id: i.stop_reason for i in app.runtime.manager.stopped()}
            assert "unloaded to make room" in (stopped[old] or "")

    run(main())
