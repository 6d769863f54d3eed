"""Where telemetry comes from: a GPU source (NVML or a fake) and the host source (psutil)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol, TypeVar

from engines.telemetry.snapshot import GpuStats, HostStats


class GpuSource(Protocol):
    """Samples every GPU it can see. Must never raise: missing data is None, a reason goes in `status`."""

    def sample(self, pids: Mapping[int, str]) -> tuple[tuple[GpuStats, ...], str | None]:
        """(GPUs, status). `pids` maps process ids to our run ids, to name our instances' processes."""
        ...

    def close(self) -> None:
        """Release the library (nvmlShutdown)."""
        ...


class NoGpuSource:
    """No GPU source could be opened; says why on every sample."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def sample(self, pids: Mapping[int, str]) -> tuple[tuple[GpuStats, ...], str | None]:
        return (), self.reason

    def close(self) -> None:
        pass


class PsutilSource:
    """Host CPU, RAM, swap, this process's RSS and threads, and free disk where models go."""

    def __init__(self, disk_path: Path | None = None, *, pid: int | None = None) -> None:
        import psutil

        self._psutil = psutil
        self.disk_path = disk_path
        self._process = psutil.Process(pid or os.getpid())
        # cpu_percent() compares with the previous call: prime it so the first sample means something.
        psutil.cpu_percent(percpu=True)
        self._process.cpu_percent()

    def sample(self) -> HostStats:
        psutil = self._psutil
        per_cpu: tuple[float, ...] = tuple(_safe(lambda: list(psutil.cpu_percent(percpu=True))) or ())
        mem = _safe(psutil.virtual_memory)
        swap = _safe(psutil.swap_memory)
        info = _safe(self._process.memory_info)
        threads = _safe(self._process.num_threads)
        disk, where = None, None
        if self.disk_path is not None:
            where = _existing(self.disk_path)
            disk = _safe(lambda: psutil.disk_usage(str(where)))
        return HostStats(
            cpu_pct=sum(per_cpu) / len(per_cpu) if per_cpu else None,
            per_cpu_pct=per_cpu,
            ram_used_bytes=None if mem is None else int(mem.total - mem.available),
            ram_total_bytes=None if mem is None else int(mem.total),
            ram_available_bytes=None if mem is None else int(mem.available),
            swap_used_bytes=None if swap is None else int(swap.used),
            swap_total_bytes=None if swap is None else int(swap.total),
            process_rss_bytes=None if info is None else int(info.rss),
            process_threads=threads,
            disk_free_bytes=None if disk is None else int(disk.free),
            disk_total_bytes=None if disk is None else int(disk.total),
            disk_path=None if where is None else str(where),
        )


T = TypeVar("T")


def _safe(read: Callable[[], T], default: T | None = None) -> T | None:
    try:
        return read()
    except Exception:  # psutil.Error, OSError, a container hiding /proc: the field is N/A, the sample goes on
        return default


def _existing(path: Path) -> Path:
    """The path, or its nearest existing parent (the models directory may not exist yet)."""
    target = path.expanduser().absolute()
    while not target.exists() and target != target.parent:
        target = target.parent
    return target
