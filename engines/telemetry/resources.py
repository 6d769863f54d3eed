"""Free memory as the fit check wants it, from a telemetry snapshot."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from engines.catalog.fit import GpuFree, Resources, current_resources
from engines.telemetry.snapshot import Snapshot


def resources_from(snapshot: Snapshot) -> Resources:
    """Free RAM, free VRAM of each readable GPU, and free disk where models go (0 when RAM is N/A)."""
    gpus = tuple(
        GpuFree(index=g.index, name=g.name or f"GPU {g.index}", free_bytes=free)
        for g in snapshot.gpus
        if (free := g.memory_free_bytes) is not None and g.error is None
    )
    host = snapshot.host
    return Resources(ram_free_bytes=host.ram_available_bytes or 0, gpus=gpus, disk_free_bytes=host.disk_free_bytes)


def machine_resources(models_dir: Path) -> Resources:
    """Free RAM and disk (where models go) now, and the free VRAM of each GPU telemetry can read (none without
    NVML): what a fit check outside the app, which has no poller running, checks against."""
    from engines.telemetry.nvml import open_gpu_source
    from engines.telemetry.poller import take_snapshot
    from engines.telemetry.sources import PsutilSource

    gpu = open_gpu_source()
    try:
        gpus = resources_from(take_snapshot(gpu, PsutilSource(models_dir))).gpus
    finally:
        gpu.close()
    return replace(current_resources(models_dir), gpus=gpus)
