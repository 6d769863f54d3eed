"""From a model reference to a running instance: resolve, pick an engine, check memory, start it."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from engines.adapters import registry
from engines.adapters.base import Engine
from engines.admission import Admission, Need, NotEnoughMemory, admit, gpu_index_of
from engines.catalog.packaged import Progress
from engines.catalog.resolve import resolve_model
from engines.config.load import Config
from engines.errors import EngineUnavailable, InstanceNotFound, LlmTuiError
from engines.manager import EngineManager
from engines.telemetry.snapshot import Snapshot
from engines.types import LaunchOptions, ModelSpec

SnapshotSource = Callable[[], Snapshot | None]
"""Where admission gets free memory from, e.g. TelemetryPoller.sample_now (None: telemetry has nothing yet)."""

_SPLIT = re.compile(r"^(?P<stem>.+)-(?P<part>\d{5})-of-(?P<count>\d{5})\.gguf$")


@dataclass(frozen=True, slots=True)
class Launched:
    """A model that was started: its run id, spec and engine name."""

    run_id: str
    spec: ModelSpec
    engine: str
    admission: Admission | None = None
    """The memory check it passed (with its notes), None when no snapshot was given or the format has no estimate."""


def pick_engine(spec: ModelSpec, requested: str | None) -> str:
    """The engine to use: the requested one, else the first installed that loads the model."""
    if requested:
        entry = registry.entry(requested)
        if spec.format not in entry.formats:
            raise EngineUnavailable(entry.name, f"it cannot load {spec.format} models like {spec.id}")
        return entry.name
    candidates = [e for e in spec.engines if e in registry.ENGINES] or registry.engines_for_format(spec.format)
    for name in candidates:
        if registry.is_installed(name):
            return name
    if not candidates:
        raise EngineUnavailable(spec.format, f"no engine can load {spec.format} models yet")
    first = registry.entry(candidates[0])
    raise EngineUnavailable(first.name, "its Python package is not installed", first.install_hint)


def default_options(config: Config, seed: int | None = None) -> LaunchOptions:
    """Launch options from the configuration."""
    return LaunchOptions(
        n_ctx=config.n_ctx,
        n_threads=config.n_threads,
        n_gpu_layers=config.n_gpu_layers,
        seed=seed,
        device="cpu" if config.n_gpu_layers == 0 else "auto",
        parallel=config.parallel,
        speculative=config.speculative,
    )


def resolve_ref(ref: str, config: Config, progress: Progress | None = None) -> ModelSpec:
    """What a reference names: an Ollama or remote model, else a catalog id, alias or path (a remote endpoint's
    key comes from the file, or from the variable it names in the environment the config was loaded from)."""
    from engines.catalog.resolve import follow_aliases
    from engines.catalog.resolve_remote import remote_spec

    target = follow_aliases(ref, config.aliases)
    remote = remote_spec(target, config, config.env)
    if remote is not None:
        return remote
    return resolve_model(ref, models_dir=config.models_dir, aliases=config.aliases, progress=progress)


def launch(
    manager: EngineManager,
    ref: str | ModelSpec,
    config: Config,
    *,
    engine: str | Engine | None = None,
    options: LaunchOptions | None = None,
    progress: Progress | None = None,
    snapshot: SnapshotSource | None = None,
) -> Launched:
    """Resolve `ref` (or take the spec given), choose an engine and load the model; blocks until it is ready.

    With `snapshot`, memory is checked first: NotEnoughMemory carries the Admission, whose
    `unload_run_ids` (when the verdict is UNLOAD) can be passed to `unload_and_launch`.
    """
    spec = ref if isinstance(ref, ModelSpec) else resolve_ref(ref, config, progress)
    chosen: str | Engine = engine if isinstance(engine, Engine) else pick_engine(spec, engine)
    options = options or default_options(config)
    admission = None
    if snapshot is not None:
        admission = check_memory(manager, spec, options, snapshot(), gpu_fraction=config.gpu_memory_fraction)
        if admission is not None and not admission.admitted:
            raise NotEnoughMemory(admission)
    run_id = manager.start(spec, options, chosen)
    return Launched(run_id, spec, chosen if isinstance(chosen, str) else chosen.name, admission)


def unload_and_launch(
    manager: EngineManager,
    ref: str,
    config: Config,
    unload: Sequence[str],
    *,
    engine: str | Engine | None = None,
    options: LaunchOptions | None = None,
    progress: Progress | None = None,
    snapshot: SnapshotSource | None = None,
) -> Launched:
    """Stop the instances in `unload` that are still idle (those busy again are kept), then `launch`.

    Memory is checked again with a fresh snapshot, so a refusal still raises NotEnoughMemory.
    """
    for run_id in unload:
        with contextlib.suppress(InstanceNotFound):  # already gone: stopped, or unloaded for being idle
            manager.stop_if_idle(run_id, reason=f"unloaded to make room for {ref}")
    return launch(manager, ref, config, engine=engine, options=options, progress=progress, snapshot=snapshot)


def check_memory(
    manager: EngineManager,
    spec: ModelSpec,
    options: LaunchOptions,
    snapshot: Snapshot | None,
    *,
    gpu_fraction: float = 1.0,
) -> Admission | None:
    """Admission for loading `spec` beside the manager's instances; None when its memory cannot be estimated."""
    need = estimate_need(spec, options)
    return None if need is None else admit(need, snapshot, manager.instances(), gpu_fraction=gpu_fraction)


def estimate_need(spec: ModelSpec, options: LaunchOptions) -> Need | None:
    """RAM and VRAM that loading `spec` with `options` takes, from its GGUF header (None for other formats)."""
    if spec.format != "gguf" or spec.path is None or not Path(spec.path).is_file():
        return None
    from engines.catalog.fit import ModelShape, estimate
    from engines.catalog.gguf_header import read_gguf_header

    try:
        header = read_gguf_header(spec.path)
        shape = ModelShape.from_gguf_header(header)
        gpu = gpu_index_of(options.device)
        layers = options.n_gpu_layers if gpu is not None else 0
        count = header.metadata.get("split.count")
        if type(count) is int and count > 1:
            shape = replace(shape, weights_bytes=_split_weights(Path(spec.path), count, shape.weights_bytes))
        est = estimate(shape, n_ctx=options.n_ctx, n_gpu_layers=layers, slots=options.parallel)
    except LlmTuiError:  # a bad file or value: the load reports it properly
        return None
    return Need.from_estimate(spec.id, est, gpu)


def _split_weights(first: Path, count: int, first_weights: int) -> int:
    """Tensor bytes of a split GGUF: the sizes of all its parts, or the first part's share times the count."""
    match = _SPLIT.match(first.name)
    if match is None:
        return first_weights * count
    stem = match["stem"]
    parts = [first.with_name(f"{stem}-{i:05d}-of-{count:05d}.gguf") for i in range(1, count + 1)]
    if not all(p.is_file() for p in parts):
        return first_weights * count
    return first_weights + sum(p.stat().st_size for p in parts[1:])
