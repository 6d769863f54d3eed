"""Planning a comparison: resolve each pane's model, then decide with the memory manager whether the models
that must be loaded fit together (run them at the same time) or not (one after another: load, run, unload).

Instances the user already runs count as loaded (admission sees them among the manager's instances); the
models the run must launch are summed and admitted as one. A model that does not fit even alone, beside
what already runs, makes its pane fail with admission's reason; the other panes still run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from engines.adapters.base import Engine
from engines.admission import Admission, Check, Need, admit
from engines.catalog.fit import human_bytes
from engines.compare.types import CompareModel, ComparePlan, CompareRequest, Mode, PanePlan
from engines.config.load import Config
from engines.errors import InstanceNotFound, LlmTuiError
from engines.launch import default_options, estimate_need, pick_engine, resolve_ref
from engines.manager import EngineManager
from engines.telemetry.snapshot import Snapshot
from engines.types import InstanceInfo, InstanceState, LaunchOptions, ModelSpec

EngineFor = Callable[[CompareModel], "str | Engine | None"]
"""The engine to launch a compared model on (tests hand in fake engines here); default: the model's own."""
Resolve = Callable[[str], ModelSpec]
"""What a reference names (default: `engines.launch.resolve_ref` with the config)."""

_SERVING = (InstanceState.READY, InstanceState.BUSY)


@dataclass(frozen=True, slots=True)
class Target:
    """A pane's model, resolved: the spec, engine and options to launch (and their memory need), or the user's
    running instance (`spec` None), or why it cannot run (`error`)."""

    index: int
    model: CompareModel
    model_id: str
    engine_name: str
    spec: ModelSpec | None = None
    engine: str | Engine | None = None
    options: LaunchOptions | None = None
    need: Need | None = None
    """RAM/VRAM the launch takes (None: not launched, or no estimate for its format)."""
    error: str | None = None

    @property
    def loads(self) -> bool:
        """Whether the run must launch it."""
        return self.spec is not None and self.error is None


def resolve_targets(
    request: CompareRequest,
    manager: EngineManager,
    config: Config,
    *,
    engine_for: EngineFor | None = None,
    resolve: Resolve | None = None,
) -> list[Target]:
    """Each model of `request` resolved (blocking: a packaged model may be assembled, headers are read)."""
    engine_for = engine_for or (lambda model: model.engine)
    resolve = resolve or (lambda ref: resolve_ref(ref, config))
    out: list[Target] = []
    for index, model in enumerate(request.models):
        if model.run_id is not None:
            out.append(_running(index, model, manager))
            continue
        assert model.ref is not None
        try:
            spec = resolve(model.ref)
            wanted = engine_for(model)
            chosen: str | Engine = wanted if isinstance(wanted, Engine) else pick_engine(spec, wanted)
            options = model.options or default_options(config)
            need = estimate_need(spec, options)
        except LlmTuiError as exc:
            out.append(Target(index, model, model.ref, model.engine or "?", error=str(exc)))
            continue
        name = chosen if isinstance(chosen, str) else chosen.name
        out.append(Target(index, model, spec.id, name, spec, chosen, options, need))
    return out


def _running(index: int, model: CompareModel, manager: EngineManager) -> Target:
    run_id = model.run_id or ""
    try:
        info = manager.info(run_id)
    except InstanceNotFound:
        return Target(index, model, run_id, "?", error=f"instance {run_id} is no longer running")
    error = None if info.state in _SERVING else f"instance {run_id} is {info.state.value}"
    return Target(index, model, info.model_id, info.engine, error=error)


def plan_compare(
    targets: Sequence[Target],
    snapshot: Snapshot | None,
    instances: Sequence[InstanceInfo],
    *,
    gpu_fraction: float = 1.0,
) -> ComparePlan:
    """Parallel when every model to launch fits beside what runs, all together; else sequential.

    Each model to launch must also fit alone: one that does not gets admission's reason as its error.
    `gpu_fraction`: the share of each GPU models may fill (config `gpu_memory_fraction`).
    """
    errors: dict[int, str] = {t.index: t.error for t in targets if t.error is not None}
    for target in targets:
        if target.loads and target.need is not None:
            alone = admit(target.need, snapshot, instances, gpu_fraction=gpu_fraction)
            if not alone.admitted:
                errors[target.index] = f"does not fit even on its own: {alone.reason}"
    launching = [t for t in targets if t.loads and t.index not in errors]
    mode, reason = _decide(launching, snapshot, instances, gpu_fraction)
    panes = tuple(PanePlan(t.index, t.model_id, t.engine_name, t.loads, errors.get(t.index)) for t in targets)
    return ComparePlan(mode, reason, panes)


def _decide(
    launching: Sequence[Target], snapshot: Snapshot | None, instances: Sequence[InstanceInfo], gpu_fraction: float
) -> tuple[Mode, str]:
    if not launching:
        return "parallel", "every model is already running"
    unknown = [t.model_id for t in launching if t.need is None]
    needs = [t.need for t in launching if t.need is not None]
    note = f" ({', '.join(unknown)}: size unknown, counted as 0)" if unknown else ""
    if len(launching) == 1:
        return "parallel", f"one model to load{note}"
    if not needs:
        return "parallel", f"the sizes of the models to load are unknown{note}"
    admissions = [admit(need, snapshot, instances, gpu_fraction=gpu_fraction) for need in together(needs)]
    checks = [c for a in admissions for c in a.checks]
    if all(a.admitted for a in admissions):
        if any(c.free_bytes is None for c in checks):
            return "parallel", "free memory unknown (telemetry N/A): assumed to fit" + note
        return "parallel", _numbers(_unique(checks)) + note
    return "sequential", _numbers(_unique(c for c in checks if not c.fits)) + note


def together(needs: Sequence[Need]) -> list[Need]:
    """What loading all of `needs` at once takes: the RAM summed, and the VRAM summed per GPU (one Need per
    GPU, each carrying the whole RAM, since admission checks RAM and one GPU at a time)."""
    ram = sum(n.ram_bytes for n in needs)
    per_gpu: dict[int, int] = {}
    for need in needs:
        if need.gpu_index is not None and need.vram_bytes:
            per_gpu[need.gpu_index] = per_gpu.get(need.gpu_index, 0) + need.vram_bytes
    name = " + ".join(n.model_id for n in needs)
    if not per_gpu:
        return [Need(name, ram)]
    return [Need(name, ram, vram, gpu) for gpu, vram in sorted(per_gpu.items())]


def _unique(checks: Iterable[Check]) -> list[Check]:
    """One check per device (each per-GPU admission repeats the RAM check)."""
    seen: dict[str, Check] = {}
    for check in checks:
        seen.setdefault(check.device, check)
    return list(seen.values())


def _numbers(checks: Sequence[Check]) -> str:
    parts = []
    for c in checks:
        free = "free unknown" if c.free_bytes is None else f"{human_bytes(c.free_bytes)} free"
        need = f"{human_bytes(c.needed_bytes)} {c.device} + {human_bytes(c.margin_bytes)} margin"
        parts.append(f"together they need {need}; {free}")
    return "; ".join(parts)


def admission_of(
    target: Target, snapshot: Snapshot | None, instances: Sequence[InstanceInfo], *, gpu_fraction: float = 1.0
) -> Admission | None:
    """Admission for launching `target` now, beside `instances` (None when its size cannot be estimated)."""
    return None if target.need is None else admit(target.need, snapshot, instances, gpu_fraction=gpu_fraction)
