"""What telemetry sees at one moment. Every field a source cannot read is None (shown as N/A), never an error."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class GpuProcess:
    """A process holding memory on a GPU; `run_id` names our instance when it is one of ours."""

    pid: int
    used_bytes: int | None
    name: str | None = None
    run_id: str | None = None


@dataclass(frozen=True, slots=True)
class GpuStats:
    """One GPU at one moment."""

    index: int
    name: str | None = None
    uuid: str | None = None
    utilization_pct: float | None = None
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None
    temperature_c: float | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    processes: tuple[GpuProcess, ...] = ()
    error: str | None = None
    """Why fields are missing (e.g. "GPU is lost"), or None."""

    @property
    def memory_free_bytes(self) -> int | None:
        if self.memory_used_bytes is None or self.memory_total_bytes is None:
            return None
        return max(0, self.memory_total_bytes - self.memory_used_bytes)


@dataclass(frozen=True, slots=True)
class HostStats:
    """The machine and this process at one moment."""

    cpu_pct: float | None = None
    per_cpu_pct: tuple[float, ...] = ()
    ram_used_bytes: int | None = None
    ram_total_bytes: int | None = None
    ram_available_bytes: int | None = None
    swap_used_bytes: int | None = None
    swap_total_bytes: int | None = None
    process_rss_bytes: int | None = None
    process_threads: int | None = None
    disk_free_bytes: int | None = None
    disk_total_bytes: int | None = None
    disk_path: str | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """GPUs and host sampled together; `gpu_status` says why `gpus` is empty or partial."""

    taken_at: float
    """time.time() of the sample."""
    gpus: tuple[GpuStats, ...] = ()
    host: HostStats = field(default_factory=HostStats)
    gpu_status: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The `llm-tui gauges --once --json` object (see CLI.md)."""
        out = asdict(self)
        for gpu, raw in zip(self.gpus, out["gpus"], strict=True):
            raw["memory_free_bytes"] = gpu.memory_free_bytes
        out["host"]["per_cpu_pct"] = list(self.host.per_cpu_pct)
        return out
