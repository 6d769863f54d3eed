"""`llm-tui gauges`: GPUs and the host from the command line, once (JSON or a table) or one line per interval."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import TextIO

from engines.config.load import Config
from engines.errors import BadRequest
from engines.telemetry.poller import take_snapshot
from engines.telemetry.snapshot import GpuStats, HostStats, Snapshot
from engines.telemetry.sources import GpuSource, PsutilSource
from engines.telemetry.units import human_bytes

GIB = 1 << 30
SETTLE_S = 0.25
"""CPU percentages compare two readings: wait this long after the first before a one-off sample."""


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    global_options: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Register `gauges` under `sub`."""
    gauges = sub.add_parser("gauges", help="GPU and host telemetry: once, or one line per interval until Ctrl+C")
    gauges.add_argument("--once", action="store_true", help="take one sample and exit")
    gauges.add_argument("--json", action="store_true", help="JSON on stdout (one object per line without --once)")
    gauges.add_argument(
        "--interval", type=float, metavar="SECONDS", help="seconds between samples (default: telemetry_interval_s)"
    )
    gauges.add_argument("--count", type=int, metavar="N", help="stop after N samples (default: until Ctrl+C)")
    global_options(gauges)


def run_gauges(
    args: argparse.Namespace,
    config: Config,
    *,
    gpu_source: GpuSource | None = None,
    out: TextIO = sys.stdout,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Print telemetry as `args` asks; the GPU source is opened here unless one is handed in (tests)."""
    interval = config.telemetry_interval_s if args.interval is None else args.interval
    if not math.isfinite(interval) or interval <= 0:
        raise BadRequest(f"--interval must be a positive number of seconds, got {args.interval}")
    count = 1 if args.once else args.count
    if count is not None and count < 1:
        raise BadRequest(f"--count must be at least 1, got {count}")
    host = PsutilSource(config.models_dir)
    gpu = gpu_source
    if gpu is None:
        from engines.telemetry.nvml import open_gpu_source

        gpu = open_gpu_source()
    try:
        sleep(min(SETTLE_S, interval))
        if args.once:
            snapshot = take_snapshot(gpu, host)
            if args.json:
                json.dump(snapshot.to_json(), out, indent=2, ensure_ascii=False)
                out.write("\n")
            else:
                write_table(snapshot, out)
            return 0
        _stream(gpu, host, out, json_lines=args.json, interval=interval, count=count, sleep=sleep)
        return 0
    finally:
        if gpu_source is None:
            gpu.close()


def _stream(
    gpu: GpuSource,
    host: PsutilSource,
    out: TextIO,
    *,
    json_lines: bool,
    interval: float,
    count: int | None,
    sleep: Callable[[float], None],
) -> None:
    """One line per sample at a fixed rate until `count` samples (or Ctrl+C, which the caller maps to 130)."""
    told: str | None = None
    taken = 0
    while count is None or taken < count:
        started = time.monotonic()
        snapshot = take_snapshot(gpu, host)
        taken += 1
        if json_lines:
            out.write(json.dumps(snapshot.to_json(), ensure_ascii=False) + "\n")
        else:
            if snapshot.gpu_status and snapshot.gpu_status != told:
                # Why there is no GPU column, once (and again only if the reason changes).
                told = snapshot.gpu_status
                print(f"llm-tui: {told}", file=sys.stderr)
            out.write(compact_line(snapshot) + "\n")
        out.flush()
        if count is not None and taken >= count:
            break
        # The time the sample took comes off the wait, so lines keep to the interval.
        sleep(max(0.0, started + interval - time.monotonic()))


def compact_line(snapshot: Snapshot) -> str:
    """`12:01:03  CPU 23%  RAM 7.1/24.0 GiB  ...  GPU0 63% 14.0/24.0 GiB 66°C 287/450 W`, N/A where unknown."""
    host = snapshot.host
    parts = [
        datetime.fromtimestamp(snapshot.taken_at).strftime("%H:%M:%S"),
        f"CPU {_pct(host.cpu_pct)}",
        f"RAM {_pair(host.ram_used_bytes, host.ram_total_bytes)}",
        f"swap {_pair(host.swap_used_bytes, host.swap_total_bytes)}",
        f"RSS {_bytes(host.process_rss_bytes)}",
        f"disk {_bytes(host.disk_free_bytes)} free",
    ]
    parts.extend(_gpu_compact(gpu) for gpu in snapshot.gpus)
    if not snapshot.gpus:
        parts.append("GPU N/A")
    return "  ".join(parts)


def _gpu_compact(gpu: GpuStats) -> str:
    if gpu.error:
        return f"GPU{gpu.index} {gpu.error}"
    return " ".join(
        (
            f"GPU{gpu.index}",
            _pct(gpu.utilization_pct),
            _pair(gpu.memory_used_bytes, gpu.memory_total_bytes),
            _temp(gpu.temperature_c),
            _watts(gpu.power_w, gpu.power_limit_w),
        )
    )


def write_table(snapshot: Snapshot, out: TextIO) -> None:
    """A short human summary: the host, then one row per GPU and one per process on it."""
    out.write("\n".join(_host_lines(snapshot.host)) + "\n\n")
    if not snapshot.gpus:
        out.write(f"GPUs: none ({snapshot.gpu_status or 'no GPU source'})\n")
        return
    if snapshot.gpu_status:
        out.write(f"GPUs: {snapshot.gpu_status}\n")
    header = ("GPU", "NAME", "UTIL", "MEMORY", "TEMP", "POWER", "")
    rows: list[tuple[tuple[str, ...], GpuStats | None]] = [(header, None)]
    rows.extend((_gpu_cells(gpu), gpu) for gpu in snapshot.gpus)
    widths = [max(len(cells[i]) for cells, _ in rows) for i in range(len(header))]
    for cells, gpu in rows:
        out.write("  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip() + "\n")
        for proc in gpu.processes if gpu else ():
            owner = f"  run {proc.run_id}" if proc.run_id else ""
            out.write(f"    pid {proc.pid}  {proc.name or 'N/A'}  {_bytes(proc.used_bytes)}{owner}\n")


def _gpu_cells(gpu: GpuStats) -> tuple[str, ...]:
    name = gpu.name or "N/A"
    if gpu.error:
        return (str(gpu.index), name, "", "", "", "", gpu.error)
    memory = _pair(gpu.memory_used_bytes, gpu.memory_total_bytes)
    watts = _watts(gpu.power_w, gpu.power_limit_w)
    return (str(gpu.index), name, _pct(gpu.utilization_pct), memory, _temp(gpu.temperature_c), watts, "")


def _host_lines(host: HostStats) -> list[str]:
    cores = f" of {len(host.per_cpu_pct)} cores" if host.per_cpu_pct else ""
    threads = "N/A" if host.process_threads is None else str(host.process_threads)
    where = f" at {host.disk_path}" if host.disk_path else ""
    ram = _pair(host.ram_used_bytes, host.ram_total_bytes)
    return [
        f"CPU      {_pct(host.cpu_pct)}{cores}",
        f"RAM      {ram} used, {_bytes(host.ram_available_bytes)} available",
        f"Swap     {_pair(host.swap_used_bytes, host.swap_total_bytes)} used",
        f"llm-tui  RSS {_bytes(host.process_rss_bytes)}, threads: {threads}",
        f"Disk     {_bytes(host.disk_free_bytes)} free of {_bytes(host.disk_total_bytes)}{where}",
    ]


def _pct(value: float | None) -> str:
    return "N/A" if value is None else f"{value:.0f}%"


def _bytes(value: int | None) -> str:
    return human_bytes(value)  # binary units like the GiB pairs and the gauges screen (the JSON stays in bytes)


def _pair(used: int | None, total: int | None) -> str:
    """`14.0/24.0 GiB`: both in GiB, the unit GPU and RAM sizes are sold in, so they compare at a glance."""
    if used is None and total is None:
        return "N/A"
    return f"{_gib(used)}/{_gib(total)} GiB"


def _gib(value: int | None) -> str:
    return "N/A" if value is None else f"{value / GIB:.1f}"


def _temp(value: float | None) -> str:
    return "N/A" if value is None else f"{value:.0f}°C"


def _watts(draw: float | None, limit: float | None) -> str:
    if draw is None and limit is None:
        return "N/A"
    return f"{'N/A' if draw is None else f'{draw:.0f}'}/{'N/A' if limit is None else f'{limit:.0f}'} W"
