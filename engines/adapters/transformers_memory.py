"""What a transformers model holds: its parameters' bytes by device, and torch's reserved CUDA memory."""

from __future__ import annotations

from typing import Any

from engines.types import Footprint


def parameter_footprint(model: Any, *, cuda: bool) -> Footprint:
    """Parameter bytes, split between GPU and host memory by where each parameter lives (VRAM None off CUDA)."""
    ram = vram = 0
    for p in model.parameters():
        size = int(p.numel()) * int(p.element_size())
        if p.device.type == "cuda":
            vram += size
        else:
            ram += size
    return Footprint(ram_bytes=ram, vram_bytes=vram if cuda else None)


def reserved_vram(model: Any) -> int:
    """torch's reserved CUDA memory on the devices the model's parameters are on."""
    import torch

    devices = {p.device for p in model.parameters() if p.device.type == "cuda"}
    return sum(int(torch.cuda.memory_reserved(d)) for d in devices)
