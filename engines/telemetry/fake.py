"""A scripted GPU source for tests and demos: two GPUs whose values follow a script, one able to disappear."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from engines.telemetry.snapshot import GpuProcess, GpuStats

GIB = 1 << 30


def default_gpus() -> tuple[GpuStats, ...]:
    """Two GPUs as a small workstation has them."""
    return (
        GpuStats(
            index=0,
            name="NVIDIA RTX 4090 (fake)",
            uuid="GPU-fake-0",
            utilization_pct=63.0,
            memory_used_bytes=14 * GIB,
            memory_total_bytes=24 * GIB,
            temperature_c=66.0,
            power_w=287.0,
            power_limit_w=450.0,
        ),
        GpuStats(
            index=1,
            name="NVIDIA RTX 3060 (fake)",
            uuid="GPU-fake-1",
            utilization_pct=4.0,
            memory_used_bytes=1 * GIB,
            memory_total_bytes=12 * GIB,
            temperature_c=41.0,
            power_w=18.0,
            power_limit_w=170.0,
        ),
    )


@dataclass(frozen=True, slots=True)
class FakeProcess:
    """A process the fake reports on a GPU."""

    gpu: int
    pid: int
    used_bytes: int
    name: str = "python"


class FakeGpuSource:
    """Reports `gpus` (default: two) with per-process memory; each sample() steps through `script` if given.

    `script` is a list of per-sample overrides: {gpu index: GpuStats or None}; None means that GPU is lost
    (it is then reported with its fields N/A and error "GPU is lost"). Thread-safe.
    """

    def __init__(
        self,
        gpus: Sequence[GpuStats] | None = None,
        *,
        processes: Sequence[FakeProcess] = (),
        script: Sequence[Mapping[int, GpuStats | None]] = (),
    ) -> None:
        self.gpus = list(gpus if gpus is not None else default_gpus())
        self.processes = list(processes)
        self.script = list(script)
        self.samples = 0
        self._lock = threading.Lock()

    def sample(self, pids: Mapping[int, str]) -> tuple[tuple[GpuStats, ...], str | None]:
        with self._lock:
            step = self.script[min(self.samples, len(self.script) - 1)] if self.script else {}
            self.samples += 1
            out = []
            for gpu in self.gpus:
                if gpu.index in step and step[gpu.index] is None:
                    out.append(GpuStats(index=gpu.index, name=gpu.name, uuid=gpu.uuid, error="GPU is lost"))
                    continue
                current = step.get(gpu.index) or gpu
                procs = tuple(
                    GpuProcess(p.pid, p.used_bytes, p.name, pids.get(p.pid))
                    for p in self.processes
                    if p.gpu == gpu.index
                )
                out.append(replace(current, processes=procs))
            return tuple(out), None

    def close(self) -> None:
        pass
