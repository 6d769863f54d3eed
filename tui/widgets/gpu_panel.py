"""One GPU on the gauges screen: utilisation and memory with history, temperature, power and its processes."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content

from engines.telemetry.snapshot import GpuProcess, GpuStats
from tui.widgets.gauges import (
    NA,
    GaugeRow,
    Readout,
    gauge_line,
    human_bytes,
    label,
    level_style,
    pct,
    ratio,
    used_of,
)

MAX_PROCESSES = 8
"""Processes listed per GPU; the rest are counted (a busy shared GPU would push everything else off screen)."""

Owner = Callable[[GpuProcess], "str | None"]
"""Names the llm-tui instance a process belongs to ("run-1 · qwen2.5-7b"), or None for someone else's."""


def sensors_line(gpu: GpuStats) -> Content:
    """ "temp 66 °C   power 287/450 W   2 processes"."""
    temp = gpu.temperature_c
    temp_style = "$text-muted" if temp is None else level_style(temp, warn=75, alarm=85)
    if gpu.power_w is None:
        power = NA
    elif gpu.power_limit_w:
        power = f"{gpu.power_w:.0f}/{gpu.power_limit_w:.0f} W"
    else:
        power = f"{gpu.power_w:.0f} W"
    count = len(gpu.processes)
    return Content.assemble(
        label("temp"),
        (NA if temp is None else f"{temp:.0f} °C", temp_style),
        ("   power ", "$text-muted"),
        power,
        ("   ", ""),
        (f"{count} process{'es' if count != 1 else ''}" if count else "no processes", "$text-muted"),
    )


def process_lines(processes: Sequence[GpuProcess], owner: Owner) -> Content:
    """One line per process, biggest first: pid, name, memory, and ours named by run id and model."""
    ordered = sorted(processes, key=lambda p: (-(p.used_bytes or 0), p.pid))
    lines: list[Content] = []
    for process in ordered[:MAX_PROCESSES]:
        name = (process.name or NA)[:18]
        ours = owner(process)
        lines.append(
            Content.assemble(
                (f"  pid {process.pid:<8}", "$text-muted"),
                (f"{name:<18} ", "bold" if ours else ""),
                f"{human_bytes(process.used_bytes):>10}",
                (f"  ◀ {ours}" if ours else "", "$accent"),
            )
        )
    if len(ordered) > MAX_PROCESSES:
        lines.append(Content.styled(f"  … {len(ordered) - MAX_PROCESSES} more", "$text-muted"))
    return Content("\n").join(lines)


class GpuPanel(Vertical):
    """A compact panel for one GPU; a lost GPU keeps its name and says N/A instead of numbers."""

    DEFAULT_CSS = """
    GpuPanel {
        height: auto;
    }
    GpuPanel.-lost GaugeRow, GpuPanel.-lost .gpu-sensors, GpuPanel.-lost .gpu-processes {
        display: none;
    }
    GpuPanel .gpu-lost {
        display: none;
        color: $error;
    }
    GpuPanel.-lost .gpu-lost {
        display: block;
    }
    """

    def __init__(self, index: int) -> None:
        super().__init__(id=f"gpu-{index}", classes="gauge-panel")
        self.index = index
        self.border_title = f"GPU {index}"
        self.lost = Readout(classes="gpu-lost")
        self.util = GaugeRow(100.0, classes="gpu-util")
        self.memory = GaugeRow(1.0, classes="gpu-memory")
        self.sensors = Readout(classes="gpu-sensors")
        self.processes = Readout(classes="gpu-processes")
        self.shown: GpuStats | None = None

    def compose(self) -> ComposeResult:
        yield self.lost
        yield self.util
        yield self.memory
        yield self.sensors
        yield self.processes

    def show(self, gpu: GpuStats, util: Sequence[float], memory: Sequence[float], owner: Owner) -> None:
        """Show one sample of this GPU with its history (oldest first); unchanged parts are not repainted."""
        if gpu == self.shown:  # an idle GPU: only its history moved on, skip building the readouts
            self.util.plot(util)
            self.memory.plot(memory)
            return
        self.shown = gpu
        title = f"GPU {gpu.index} · {gpu.name or NA}"
        if self.border_title != title:
            self.border_title = title
        self.set_class(gpu.error is not None, "-lost")
        if gpu.error is not None:
            self.lost.show(f"N/A — {gpu.error}")
            return
        self.util.show(gauge_line("util", ratio(gpu.utilization_pct, 100), pct(gpu.utilization_pct)), util)
        fraction = ratio(gpu.memory_used_bytes, gpu.memory_total_bytes)
        used = used_of(gpu.memory_used_bytes, gpu.memory_total_bytes)
        self.memory.show(gauge_line("mem", fraction, used), memory, top=gpu.memory_total_bytes)
        self.sensors.show(sensors_line(gpu))
        self.processes.display = bool(gpu.processes)
        self.processes.show(process_lines(gpu.processes, owner))
