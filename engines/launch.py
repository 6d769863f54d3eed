"""From a model reference to a running instance: resolve, pick an engine, start it."""

from __future__ import annotations

from dataclasses import dataclass

from engines.adapters import registry
from engines.adapters.base import Engine
from engines.catalog.packaged import Progress
from engines.catalog.resolve import resolve_model
from engines.config import Config
from engines.errors import EngineUnavailable
from engines.manager import EngineManager
from engines.types import LaunchOptions, ModelSpec


@dataclass(frozen=True, slots=True)
class Launched:
    """A model that was started: its run id, spec and engine name."""

    run_id: str
    spec: ModelSpec
    engine: str


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
    )


def launch(
    manager: EngineManager,
    ref: str,
    config: Config,
    *,
    engine: str | Engine | None = None,
    options: LaunchOptions | None = None,
    progress: Progress | None = None,
) -> Launched:
    """Resolve `ref`, choose an engine and load the model; blocks until it is ready."""
    spec = resolve_model(ref, models_dir=config.models_dir, aliases=config.aliases, progress=progress)
    chosen: str | Engine = engine if isinstance(engine, Engine) else pick_engine(spec, engine)
    run_id = manager.start(spec, options or default_options(config), chosen)
    return Launched(run_id, spec, chosen if isinstance(chosen, str) else chosen.name)
