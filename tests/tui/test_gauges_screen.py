"""The gauges screen on scripted telemetry: GPUs, a GPU lost mid-run, our own process named, no GPU, pause."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from textual.geometry import Region, Size
from textual.pilot import Pilot

from engines.telemetry.fake import GIB, FakeGpuSource, FakeProcess, default_gpus
from engines.telemetry.nvml import INSTALL_HINT, NO_GPU
from engines.telemetry.poller import TelemetryPoller
from engines.telemetry.snapshot import GpuStats, HostStats
from engines.telemetry.sources import GpuSource, NoGpuSource
from tests.tui.conftest import AppFactory
from tests.tui.test_chat_screen import ready, run, until
from tui.app import LlmTuiApp
from tui.screens.gauges import GaugesScreen
from tui.widgets.gpu_panel import GpuPanel
from tui.widgets.host_panel import HostPanel

FIXED_HOST = HostStats(
    cpu_pct=37.5,
    per_cpu_pct=(12.0, 95.0, 40.0, 3.0, 55.0, 20.0, 80.0, 0.0),
    ram_used_bytes=21 * GIB,
    ram_total_bytes=64 * GIB,
    ram_available_bytes=43 * GIB,
    swap_used_bytes=GIB // 2,
    swap_total_bytes=8 * GIB,
    process_rss_bytes=412 * (1 << 20),
    process_threads=17,
    disk_free_bytes=310 * GIB,
    disk_total_bytes=930 * GIB,
    disk_path="/srv/models",
)


class FixedHost:
    """A host source reporting a fixed machine (real numbers vary per machine), stepping through `hosts`."""

    def __init__(self, hosts: HostStats | Sequence[HostStats] = FIXED_HOST) -> None:
        self.hosts = [hosts] if isinstance(hosts, HostStats) else list(hosts)
        self.samples = 0

    def sample(self) -> HostStats:
        host = self.hosts[min(self.samples, len(self.hosts) - 1)]
        self.samples += 1
        return host


def install_poller(
    app: LlmTuiApp,
    gpu: GpuSource,
    *,
    host: HostStats | Sequence[HostStats] = FIXED_HOST,
    pids: Callable[[], Mapping[int, str]] | None = None,
    interval_s: float = 0.05,
    samples: int = 1,
) -> TelemetryPoller:
    """Give the app a poller whose thread never starts: the test takes each sample with sample_now()."""
    poller = TelemetryPoller(gpu, FixedHost(host), interval_s=interval_s, pids=pids)  # type: ignore[arg-type]
    app.runtime._telemetry = poller
    for _ in range(samples):
        poller.sample_now()
    return poller


def gauges(app: Any) -> GaugesScreen:
    screen = app.screen
    assert isinstance(screen, GaugesScreen)
    return screen


async def shown(pilot: Pilot[int], samples: int | None = None) -> GaugesScreen:
    """Wait until the screen shows the poller's latest snapshot."""
    screen = gauges(pilot.app)

    def current() -> bool:
        poller = screen.poller
        return poller is not None and screen.shown is not None and screen.shown is poller.latest

    await until(pilot, current, "the latest snapshot on screen")
    await pilot.pause()
    return screen


async def intervals_pass(pilot: Pilot[int], screen: GaugesScreen, interval_s: float, count: int) -> None:
    """Wait until a timer of `interval_s` on `screen` has fired `count` times: proof that the screen's own tick
    timer (same interval) had its turns too, however slowly the machine runs, so a check that it did nothing
    afterwards means something (a fixed sleep on a loaded machine may pass before any tick was due)."""
    fired: list[None] = []
    timer = screen.set_interval(interval_s, lambda: fired.append(None))
    try:
        await until(pilot, lambda: len(fired) >= count, f"{count} intervals of {interval_s} s", timeout=60)
    finally:
        timer.stop()
    await pilot.pause()


def panel(screen: GaugesScreen, index: int) -> GpuPanel:
    return screen.query_one(f"#gpu-{index}", GpuPanel)


def text(widget: Any) -> str:
    return str(widget.content.plain)


def test_f5_opens_gauges_with_both_gpus_named_with_utilisation_and_memory(make_app: AppFactory) -> None:
    async def go() -> None:
        app = make_app(launch=False)
        install_poller(app, FakeGpuSource(), samples=3)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("f5")
            screen = await shown(pilot)
            first, second = panel(screen, 0), panel(screen, 1)
            assert first.border_title == "GPU 0 · NVIDIA RTX 4090 (fake)"
            assert second.border_title == "GPU 1 · NVIDIA RTX 3060 (fake)"
            assert text(first.util).split()[-1] == "63%"
            assert text(first.memory).endswith("14.0/24.0 GiB")
            assert "66 °C" in text(first.sensors) and "287/450 W" in text(first.sensors)
            assert text(second.util).split()[-1] == "4%"
            assert text(second.memory).endswith("1.0/12.0 GiB")
            assert list(first.util.data or []) == [63.0, 63.0, 63.0]
            assert not screen.status_line.display  # nothing to report above the panels
            host = screen.query_one(HostPanel)
            assert text(host.cpu).endswith("38%") and "21.0/64.0 GiB" in text(host.ram)
            assert "RSS 412 MiB" in text(host.process) and "threads 17" in text(host.process)
            assert "310.0 GiB free" in text(host.disk) and "/srv/models" in text(host.disk)
            assert text(host.cores).split()[-1] == "8"

    run(go())


def test_a_gpu_lost_mid_run_shows_na_and_the_app_keeps_running(make_app: AppFactory) -> None:
    async def go() -> None:
        app = make_app(screen="gauges", launch=False)
        poller = install_poller(app, FakeGpuSource(script=[{}, {1: None}]))
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await shown(pilot)
            assert not panel(screen, 1).has_class("-lost")
            poller.sample_now()  # the script's second step: GPU 1 falls off the bus
            await shown(pilot)
            lost = panel(screen, 1)
            assert lost.has_class("-lost")
            assert lost.border_title == "GPU 1 · NVIDIA RTX 3060 (fake)"
            assert text(lost.lost) == "N/A — GPU is lost"
            assert not any(row.display for row in lost.query("GaugeRow, .gpu-sensors"))
            assert text(panel(screen, 0).util).split()[-1] == "63%"
            poller.sample_now()
            await shown(pilot)
            assert app.is_running and isinstance(app.screen, GaugesScreen)
            await pilot.press("f1", "f5")  # still switches screens
            assert gauges(app) is screen

    run(go())


def test_gpu_memory_of_our_instance_is_named_by_run_id_and_model(make_app: AppFactory) -> None:
    async def go() -> None:
        app = make_app()  # launches the fake engine on tiny.gguf

        def our_pids() -> dict[int, str]:
            active = app.runtime.active
            return {os.getpid(): active.run_id} if active else {}

        processes = [FakeProcess(0, os.getpid(), 3 * GIB, "python3"), FakeProcess(0, 4242, GIB, "Xorg")]
        poller = install_poller(app, FakeGpuSource(processes=processes), pids=our_pids, samples=0)
        async with app.run_test(size=(100, 30)) as pilot:
            await ready(pilot)
            active = app.runtime.active
            assert active is not None
            poller.sample_now()
            await pilot.press("f5")
            screen = await shown(pilot)
            ours, other = text(panel(screen, 0).processes).splitlines()
            assert f"pid {os.getpid()}" in ours and "3.0 GiB" in ours
            assert ours.endswith(f"◀ {active.run_id} · {active.model_id}")
            assert "pid 4242" in other and "Xorg" in other and "◀" not in other
            assert "2 processes" in text(panel(screen, 0).sensors)
            assert not panel(screen, 1).processes.display and "no processes" in text(panel(screen, 1).sensors)

    run(go())


def test_no_gpu_says_so_in_one_line_and_shows_the_host(make_app: AppFactory) -> None:
    async def go() -> None:
        app = make_app(screen="gauges", launch=False)
        install_poller(app, NoGpuSource(NO_GPU))
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await shown(pilot)
            assert not screen.query(GpuPanel)
            status = text(screen.status_line)
            assert screen.status_line.display and "\n" not in status
            assert status == "No NVIDIA GPU found; showing CPU and memory."
            host = screen.query_one(HostPanel)
            assert host.display and text(host.cpu).endswith("38%")

    run(go())


def test_a_long_reason_wraps_whole_at_80_columns(make_app: AppFactory) -> None:
    """The fix is the end of the line: at 80×24 it wraps onto a second line instead of being cut to `pip …`."""
    reason = f"GPU gauges need nvidia-ml-py: {INSTALL_HINT}"

    async def go() -> None:
        app = make_app(screen="gauges", launch=False)
        install_poller(app, NoGpuSource(reason))
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await shown(pilot)
            status = screen.status_line
            assert status.outer_size == Size(80, 2)
            drawn = [strip.text.strip() for strip in status.render_lines(Region(0, 0, *status.outer_size))]
            assert " ".join(drawn) == f"{reason[0].upper()}{reason[1:]}; showing CPU and memory."

    run(go())


def test_every_unknown_value_shows_as_na(make_app: AppFactory) -> None:
    async def go() -> None:
        app = make_app(screen="gauges", launch=False)
        install_poller(app, FakeGpuSource([GpuStats(index=0)]), host=HostStats())
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await shown(pilot)
            gpu = panel(screen, 0)
            assert gpu.border_title == "GPU 0 · N/A"
            assert text(gpu.util).endswith("N/A") and text(gpu.memory).endswith("N/A")
            assert text(gpu.sensors).split()[:5] == ["temp", "N/A", "power", "N/A", "no"]
            host = screen.query_one(HostPanel)
            for line in (host.cpu, host.ram, host.swap, host.cores):
                assert text(line).endswith("N/A"), text(line)
            assert text(host.process).split() == ["app", "RSS", "N/A", "threads", "N/A"]
            assert text(host.disk).split()[-2:] == ["N/A", "N/A"]

    run(go())


def test_p_pauses_and_resumes_the_updates(make_app: AppFactory) -> None:
    async def go() -> None:
        busy = GpuStats(index=0, name="busy", utilization_pct=99.0, memory_used_bytes=GIB, memory_total_bytes=2 * GIB)
        app = make_app(screen="gauges", launch=False)
        poller = install_poller(app, FakeGpuSource(default_gpus()[:1], script=[{}, {0: busy}]))
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await shown(pilot)
            await pilot.press("p")
            assert "Paused" in text(screen.status_line)
            before = screen.shown
            poller.sample_now()
            await intervals_pass(pilot, screen, poller.interval_s, 4)
            assert screen.shown is before and text(panel(screen, 0).util).endswith("63%")
            await pilot.press("p")
            await shown(pilot)
            assert text(panel(screen, 0).util).endswith("99%") and panel(screen, 0).border_title == "GPU 0 · busy"
            assert not screen.status_line.display

    run(go())


def test_the_runtime_poller_thread_feeds_the_screen(make_app: AppFactory) -> None:
    """No poller installed by hand: the screen starts the runtime's own, with the real host source."""

    async def go() -> None:
        app = make_app(screen="gauges", launch=False, gpu_source=lambda: FakeGpuSource())
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await shown(pilot)
            assert panel(screen, 0).border_title == "GPU 0 · NVIDIA RTX 4090 (fake)"
            host = text(screen.query_one(HostPanel).ram)
            assert "GiB" in host or "MiB" in host

    run(go())


def test_telemetry_that_cannot_start_is_reported_not_fatal(make_app: AppFactory) -> None:
    def broken() -> GpuSource:
        raise RuntimeError("libnvidia-ml exploded")

    async def go() -> None:
        app = make_app(screen="gauges", launch=False, gpu_source=broken)
        async with app.run_test(size=(80, 24)) as pilot:
            screen = gauges(app)
            await until(pilot, lambda: "could not start" in text(screen.status_line), "the error on screen")
            assert text(screen.status_line) == "Telemetry could not start: RuntimeError: libnvidia-ml exploded"
            await pilot.press("p")
            assert text(screen.status_line).startswith("Telemetry could not start: RuntimeError")
            await pilot.press("f1", "f5")
            assert app.is_running and gauges(app) is screen

    run(go())
