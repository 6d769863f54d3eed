"""Memory admission: does a new launch fit beside the running instances, or which idle ones must go first?

Pure decision logic: the caller passes what the launch needs (from catalog.fit.estimate), a
telemetry Snapshot and the running instances; nothing here measures or stops anything.

Free RAM is the host's available memory less the model files that running instances keep
mapped: the kernel counts those file pages as available (they are page cache), but evicting a
loaded model's weights only trades memory for disk reads on its next token. Unloading an
instance therefore frees its whole RAM footprint in these terms, and its VRAM on its GPU.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from engines.catalog.fit import Estimate, human_bytes, human_duration
from engines.errors import InsufficientMemory
from engines.telemetry.snapshot import Snapshot
from engines.types import InstanceInfo, InstanceState

MIB = 1 << 20
_RUNNING = (InstanceState.LOADING, InstanceState.READY, InstanceState.BUSY)

MARGIN_FRACTION = 0.05
"""Keep this share of a device's total memory free after a launch (estimates are good to about ±35%)..."""
MARGIN_MIN_BYTES = 256 * MIB
"""...but at least this much..."""
MARGIN_MAX_BYTES = 1024 * MIB
"""...and at most this much: 5% of a 128 GB host or an 80 GB GPU would leave gigabytes idle."""


class Verdict(enum.StrEnum):
    """What admission decided."""

    ADMIT = "admit"
    UNLOAD = "unload"
    """It fits once the offered idle instances are unloaded."""
    REFUSE = "refuse"


@dataclass(frozen=True, slots=True)
class Need:
    """What a launch needs: RAM, and VRAM on one GPU."""

    model_id: str
    ram_bytes: int
    vram_bytes: int = 0
    gpu_index: int | None = None
    """The GPU the VRAM goes to (None with no VRAM)."""

    @classmethod
    def from_estimate(cls, model_id: str, est: Estimate, gpu_index: int | None = 0) -> Need:
        """The need of an estimate; its VRAM goes to `gpu_index`."""
        gpu = gpu_index if est.vram_bytes > 0 else None
        return cls(model_id, est.ram_bytes, est.vram_bytes if gpu is not None else 0, gpu)


@dataclass(frozen=True, slots=True)
class Check:
    """One device: what the launch needs there against what is free (None: telemetry could not tell)."""

    device: str
    """"RAM" or "GPU 1"."""
    needed_bytes: int
    free_bytes: int | None
    margin_bytes: int
    freed_bytes: int = 0
    """Freed there by unloading the offered instances."""

    @property
    def fits(self) -> bool:
        """Known to fit, or unknown (admitted on trust)."""
        return self.free_bytes is None or self.shortfall_bytes <= 0

    @property
    def shortfall_bytes(self) -> int:
        """Bytes still missing after the offered unloads (0 when unknown)."""
        if self.free_bytes is None:
            return 0
        return self.needed_bytes + self.margin_bytes - self.free_bytes - self.freed_bytes


@dataclass(frozen=True, slots=True)
class Unload:
    """An idle instance offered for unloading, with what it frees."""

    run_id: str
    model_id: str
    idle_s: float
    ram_bytes: int
    vram_bytes: int
    gpu_index: int | None


@dataclass(frozen=True, slots=True)
class Admission:
    """The decision, with the numbers and a one-line reason a user can act on."""

    verdict: Verdict
    need: Need
    checks: tuple[Check, ...]
    unload: tuple[Unload, ...] = ()
    """UNLOAD: the least recently used idle instances to stop, oldest first; REFUSE: every idle one (not enough)."""
    reason: str = ""
    notes: tuple[str, ...] = ()

    @property
    def admitted(self) -> bool:
        return self.verdict is Verdict.ADMIT

    @property
    def unload_run_ids(self) -> tuple[str, ...]:
        """The run ids to stop before retrying (empty unless verdict is UNLOAD)."""
        return tuple(u.run_id for u in self.unload) if self.verdict is Verdict.UNLOAD else ()


class NotEnoughMemory(InsufficientMemory):
    """A launch was refused by admission; `admission` holds the numbers and any idle instances to unload."""

    def __init__(self, admission: Admission) -> None:
        self.admission = admission
        super().__init__(admission.reason)


def gpu_index_of(device: str) -> int | None:
    """The GPU a device string names: "cuda:1" → 1; "cuda", "gpu" or "auto" → 0; "cpu" → None."""
    name, _, index = device.strip().lower().partition(":")
    if name in ("cpu", "", "mps"):
        return None
    return int(index) if index.isdigit() else 0


def admit(
    need: Need, snapshot: Snapshot | None, instances: Sequence[InstanceInfo], *, gpu_fraction: float = 1.0
) -> Admission:
    """Admit `need`, offer the least recently used idle instances whose unloading makes it fit, or refuse.

    `gpu_fraction` is the share of each GPU's memory models may fill (config `gpu_memory_fraction`): the rest
    is kept free on top of, or instead of, the margin, whichever is larger.

    The offer is the shortest run of idle instances (READY, nothing queued), oldest use first, that
    makes every short device fit; instances that free nothing on a short device are passed over.
    Unknown free memory admits with a note; an unknown footprint counts as freeing 0.
    """
    notes: list[str] = []
    running = [i for i in instances if i.state in _RUNNING]
    checks = [_ram_check(need, snapshot, running, notes)]
    if need.vram_bytes > 0 and need.gpu_index is not None:
        checks.append(_gpu_check(need, snapshot, notes, gpu_fraction))
    short = [c for c in checks if not c.fits]
    if not short:
        return Admission(Verdict.ADMIT, need, tuple(checks), reason="fits: " + _numbers(checks), notes=tuple(notes))

    candidates = sorted((i for i in running if i.idle), key=lambda i: -i.idle_s)
    busy = len(running) - len(candidates)
    offered: list[Unload] = []
    for info in candidates:
        unload = _unload_of(info)
        if info.footprint.ram_bytes is None:
            notes.append(f"{info.model_id} ({info.run_id}): footprint unknown, counted as freeing 0")
        if not any(_frees(unload, c) for c in short):
            continue  # it would free nothing where memory is short: not worth losing it
        offered.append(unload)
        checks = [_with_freed(c, offered) for c in checks]
        if all(c.fits for c in checks):
            reason = f"{_numbers(short)}; unload {_listing(offered)} to make room"
            return Admission(Verdict.UNLOAD, need, tuple(checks), tuple(offered), reason, tuple(notes))

    if busy:
        notes.append(f"{busy} busy or loading instance{'s' if busy > 1 else ''} not counted")
    if offered:
        reason = f"{_numbers(short)}; unloading {_listing(offered)} would not make room"
    else:
        reason = f"{_numbers(short)}; no idle instance to unload would make room"
    return Admission(Verdict.REFUSE, need, tuple(checks), tuple(offered), reason, tuple(notes))


def margin_bytes(total_bytes: int | None) -> int:
    """The memory to keep free on a device of `total_bytes` (the minimum when the total is unknown)."""
    if total_bytes is None:
        return MARGIN_MIN_BYTES
    return min(MARGIN_MAX_BYTES, max(MARGIN_MIN_BYTES, round(total_bytes * MARGIN_FRACTION)))


def _ram_check(need: Need, snapshot: Snapshot | None, running: Sequence[InstanceInfo], notes: list[str]) -> Check:
    host = snapshot.host if snapshot is not None else None
    available = host.ram_available_bytes if host is not None else None
    margin = margin_bytes(host.ram_total_bytes if host is not None else None)
    if available is None:
        notes.append("free RAM unknown (telemetry N/A): admitted without a RAM check")
        return Check("RAM", need.ram_bytes, None, margin)
    mapped = sum(i.footprint.mapped_bytes or 0 for i in running)
    if mapped:
        notes.append(
            f"RAM free is {human_bytes(available)} available less {human_bytes(mapped)}"
            " of model files mapped by running instances"
        )
    return Check("RAM", need.ram_bytes, max(0, available - mapped), margin)


def _gpu_check(need: Need, snapshot: Snapshot | None, notes: list[str], fraction: float) -> Check:
    device = f"GPU {need.gpu_index}"
    gpu = next((g for g in snapshot.gpus if g.index == need.gpu_index), None) if snapshot is not None else None
    free = gpu.memory_free_bytes if gpu is not None else None
    if free is None:
        why = "not seen by telemetry" if gpu is None else (gpu.error or "telemetry N/A")
        notes.append(f"{device} free memory unknown ({why}): admitted without a VRAM check")
    total = gpu.memory_total_bytes if gpu is not None else None
    reserved = round(total * (1.0 - fraction)) if total is not None else 0
    return Check(device, need.vram_bytes, free, max(margin_bytes(total), reserved))


def _unload_of(info: InstanceInfo) -> Unload:
    gpu = gpu_index_of(info.device)
    vram = info.footprint.vram_bytes or 0
    return Unload(
        run_id=info.run_id,
        model_id=info.model_id,
        idle_s=info.idle_s,
        ram_bytes=info.footprint.ram_bytes or 0,
        vram_bytes=vram if gpu is not None else 0,
        gpu_index=gpu if vram else None,
    )


def _frees(unload: Unload, check: Check) -> int:
    """Bytes `unload` frees on the check's device."""
    if check.device == "RAM":
        return unload.ram_bytes
    return unload.vram_bytes if unload.gpu_index is not None and check.device == f"GPU {unload.gpu_index}" else 0


def _with_freed(check: Check, offered: Sequence[Unload]) -> Check:
    freed = sum(_frees(u, check) for u in offered)
    return Check(check.device, check.needed_bytes, check.free_bytes, check.margin_bytes, freed)


def _numbers(checks: Sequence[Check]) -> str:
    parts = []
    for c in checks:
        free = "free unknown" if c.free_bytes is None else f"{human_bytes(c.free_bytes)} free"
        kept = f" (+{human_bytes(c.margin_bytes)} kept free)" if c.free_bytes is not None else ""
        parts.append(f"needs {human_bytes(c.needed_bytes)} {c.device}{kept}, {free}")
    return "; ".join(parts)


def _listing(offered: Sequence[Unload]) -> str:
    items = []
    for u in offered:
        held = [human_bytes(u.ram_bytes)] if u.ram_bytes else []
        if u.vram_bytes:
            held.append(f"{human_bytes(u.vram_bytes)} on GPU {u.gpu_index}")
        items.append(f"{u.model_id} ({u.run_id}, idle {human_duration(u.idle_s)}, {' + '.join(held) or '0 B'})")
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
