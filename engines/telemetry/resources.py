"""Free memory as the fit check wants it, from a telemetry snapshot."""

from __future__ import annotations

from engines.catalog.fit import GpuFree, Resources
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
