"""CPU the app uses while it sits on the gauges screen, against sitting idle on the chat screen.

Headless app at 100×30 with the real psutil host source and a FakeGpuSource (two GPUs), sampling
at 1 Hz (--interval). After a warm-up (start-up excluded), the process's CPU time (every thread:
the UI loop and the telemetry thread) is measured over --seconds of wall time and printed as a
share of one core. Target: gauges ≤ 1 % of a core. For reference: the app idle on the chat screen
(no telemetry thread running), and the telemetry poller alone, without any UI.

    python bench/gauges_idle_cpu.py [--seconds 30] [--interval 1.0]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engines.config.load import load_config
from engines.telemetry.fake import FakeGpuSource
from engines.telemetry.poller import TelemetryPoller
from engines.telemetry.sources import PsutilSource
from tui.app import LlmTuiApp
from tui.runtime import Runtime
from tui.screens.gauges import GaugesScreen

TARGET = 0.01


def cpu_share(start: tuple[float, float]) -> float:
    """CPU seconds per wall second since `start` (process_time, perf_counter)."""
    cpu, wall = start
    return (time.process_time() - cpu) / (time.perf_counter() - wall)


def now() -> tuple[float, float]:
    return time.process_time(), time.perf_counter()


async def app_share(screen: str, seconds: float, warmup: float, interval: float, folder: Path) -> tuple[float, int]:
    """Share of one core used by the app on `screen`, and how many snapshots the gauges screen showed."""
    config = load_config(env={"LLM_TUI_DATA_DIR": str(folder / screen)}, cwd=folder)
    config = replace(config, telemetry_interval_s=interval)
    runtime = Runtime(config, gpu_source=lambda: FakeGpuSource())
    app = LlmTuiApp(runtime, screen=screen)
    updates = 0
    try:
        async with app.run_test(size=(100, 30)):
            if screen == "gauges":
                gauges = app.screen
                assert isinstance(gauges, GaugesScreen)
                while gauges.shown is None:
                    await asyncio.sleep(0.05)
                show = gauges._show_snapshot

                def counted(*args: Any) -> None:  # says the screen really repainted every second
                    nonlocal updates
                    updates += 1
                    show(*args)

                gauges._show_snapshot = counted  # type: ignore[method-assign]
            await asyncio.sleep(warmup)
            start, updates = now(), 0
            await asyncio.sleep(seconds)
            share = cpu_share(start)
    finally:
        runtime.close()
    return share, updates


def poller_share(seconds: float, interval: float, folder: Path) -> float:
    """Share of one core used by the telemetry thread alone (psutil + the fake GPUs), no UI."""
    poller = TelemetryPoller(FakeGpuSource(), PsutilSource(folder), interval_s=interval)
    poller.start()
    time.sleep(min(2.0, seconds))
    start = now()
    time.sleep(seconds)
    share = cpu_share(start)
    poller.stop()
    return share


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="measured wall time per case")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds after start-up before measuring")
    parser.add_argument("--interval", type=float, default=1.0, help="telemetry interval (s)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        chat, _ = asyncio.run(app_share("chat", args.seconds, args.warmup, args.interval, folder))
        gauges, updates = asyncio.run(app_share("gauges", args.seconds, args.warmup, args.interval, folder))
        poller = poller_share(args.seconds, args.interval, folder)
    print(f"{args.seconds:.0f} s each, telemetry every {args.interval:g} s, headless 100x30")
    print(f"chat screen, idle:          {chat:7.2%} of one core")
    print(f"gauges screen, live:        {gauges:7.2%} of one core ({updates} updates seen)")
    print(f"  of which telemetry alone: {poller:7.2%} (poller thread, no UI)")
    ratio = f"{gauges / chat:.1f}x" if chat > 0 else "n/a"
    verdict = "OK" if gauges <= TARGET else "OVER TARGET"
    print(f"gauges / chat idle: {ratio}; target gauges <= {TARGET:.0%}: {verdict}")


if __name__ == "__main__":
    main()
