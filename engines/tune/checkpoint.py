"""Resumable checkpoints: `checkpoints/step-N/` with the adapter, optimizer, scheduler, RNG states and state.json.

A checkpoint is written into `checkpoints/.step-N.<pid>.tmp/` and renamed into place in one step, state.json last
inside it: a kill mid-save leaves a `.tmp` folder (removed by the next save) and never a `step-N` that `latest`
would pick. Only the newest KEEP checkpoints are kept. torch is imported inside the functions that use it.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engines.atomic import atomic_write
from engines.tune.paths import CHECKPOINTS

KEEP = 2
STATE = "state.json"
_STEP_DIR = re.compile(r"^step-(\d+)$")
_MAX_STATE = 64 * 1024


@dataclass(frozen=True, slots=True)
class TrainState:
    """Where training stands after `step` optimizer steps: the next micro-batch is `position` in epoch `epoch`'s
    order (an order that depends only on the seed and the epoch)."""

    step: int
    epoch: int
    position: int

    def to_json(self) -> dict[str, int]:
        return {"step": self.step, "epoch": self.epoch, "position": self.position}


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    return run_dir / CHECKPOINTS / f"step-{step}"


def latest(run_dir: Path) -> tuple[Path, TrainState] | None:
    """The newest complete checkpoint of a run and its state, or None."""
    root = run_dir / CHECKPOINTS
    if not root.is_dir():
        return None
    found: list[tuple[int, Path]] = []
    for child in root.iterdir():
        match = _STEP_DIR.match(child.name)
        if match and child.is_dir():
            found.append((int(match.group(1)), child))
    for step, folder in sorted(found, reverse=True):
        state = read_state(folder)
        if state is not None and state.step == step:
            return folder, state
    return None


def read_state(folder: Path) -> TrainState | None:
    """state.json of a checkpoint; None when missing or malformed (an incomplete checkpoint)."""
    try:
        with open(folder / STATE, "rb") as f:
            data = json.loads(f.read(_MAX_STATE))
        state = TrainState(int(data["step"]), int(data["epoch"]), int(data["position"]))
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return state if state.step >= 0 and state.epoch >= 0 and state.position >= 0 else None


def save(run_dir: Path, state: TrainState, model: Any, optimizer: Any, scheduler: Any) -> Path:
    """Write checkpoint `state.step` (replacing one of the same step) and prune to the newest KEEP."""
    import torch

    root = run_dir / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".step-*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = root / f".step-{state.step}.{os.getpid()}.tmp"
    tmp.mkdir()
    try:
        model.save_pretrained(str(tmp))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save(rng_state(), tmp / "rng.pt")
        atomic_write(tmp / STATE, json.dumps(state.to_json()).encode(), private=False)
        final = checkpoint_dir(run_dir, state.step)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    prune(run_dir)
    return final


def prune(run_dir: Path, keep: int = KEEP) -> None:
    """Remove all but the newest `keep` complete checkpoints."""
    root = run_dir / CHECKPOINTS
    steps = sorted(
        (int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name)) and read_state(p) is not None
    )
    for _, folder in steps[:-keep]:
        shutil.rmtree(folder, ignore_errors=True)


def load(folder: Path, model: Any, optimizer: Any, scheduler: Any) -> None:
    """Restore the adapter weights, optimizer, scheduler and RNG states saved in `folder`."""
    import peft
    import torch
    from safetensors.torch import load_file

    weights = folder / "adapter_model.safetensors"
    device = next(p.device for p in model.parameters())
    peft.set_peft_model_state_dict(model, load_file(str(weights), device=str(device)))
    optimizer.load_state_dict(torch.load(folder / "optimizer.pt", map_location=device, weights_only=True))
    scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=True))
    set_rng_state(torch.load(folder / "rng.pt", weights_only=True))


def rng_state() -> dict[str, Any]:
    import torch

    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import torch

    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        with contextlib.suppress(RuntimeError):
            torch.cuda.set_rng_state_all(state["cuda"])
