"""Which instance serves a request: the `model` a client names, as a run id, a model id or an alias.

A model that is not running is launched on demand when `[serve] launch_on_demand` allows it, through
the same admission (memory check) as the app; two requests for it at once launch it once.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from engines.config.load import Config
from engines.config.serve import ServeConfig
from engines.errors import LlmTuiError, ModelNotFound
from engines.launch import SnapshotSource, default_options, launch
from engines.manager import EngineManager
from engines.presets import Preset
from engines.server.errors import ApiError, from_exception, model_not_found
from engines.types import InstanceInfo, InstanceState, LaunchOptions

NOT_LAUNCHABLE = (
    "no running instance, catalog id, alias or file in the models folder has that name (GET /v1/models lists them)"
)
"""The one answer for a name launch-on-demand does not take: the same for a path that exists and one that doesn't."""

LISTING_TTL_S = 10.0
"""How long the launchable models found on disk are reused by GET /v1/models."""


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """One row of GET /v1/models."""

    id: str
    created: int
    running: bool
    run_id: str | None = None
    engine: str | None = None
    state: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "object": "model",
            "created": self.created,
            "owned_by": "llm-tui",
            "llm_tui": {"running": self.running, "run_id": self.run_id, "engine": self.engine, "state": self.state},
        }


class Router:
    """Finds (or launches) the instance for a model name; all methods block, so call them off the event loop."""

    def __init__(
        self,
        manager: EngineManager,
        config: Config,
        serve: ServeConfig,
        *,
        snapshot: SnapshotSource | None = None,
        launchable: Callable[[], dict[str, str]] | None = None,
    ) -> None:
        self.manager = manager
        self.config = config
        self.serve = serve
        self.snapshot = snapshot
        self._launchable = launchable or self._models_on_disk
        self._launch_lock = threading.Lock()
        self._listing: tuple[float, dict[str, str]] | None = None
        self._launched: dict[str, str] = {}
        """Names launched on demand → their run ids (a model launched by path has another model id)."""

    def preset_for(self, name: str) -> Preset | None:
        """The preset `name` names, unless a running instance or an alias goes by that name (they come first)."""
        preset = self.config.presets.get(name)
        if preset is None or name in self.config.aliases or self._running(name) is not None:
            return None
        return preset

    def instance_for(self, name: str, options: LaunchOptions | None = None) -> InstanceInfo:
        """The ready instance that serves `name` (launched with `options` when it must be); ApiError 404 (unknown /
        not running), 503 (not ready), 429 (full)."""
        info = self._running(name)
        if info is None:
            info = self._launch(name, options)
        if info.state is InstanceState.LOADING:
            info = self._wait_loaded(info)
        if info.state not in (InstanceState.READY, InstanceState.BUSY):
            detail = f": {info.error}" if info.error else ""
            raise ApiError(503, f"{name} is {info.state.value}{detail}", type="server_error", code="model_unavailable")
        # pending_requests counts the running request too: max_queue is how many may wait besides it.
        waiting = max(info.pending_requests - 1, 0)
        if waiting >= self.serve.max_queue:
            raise ApiError(
                429,
                f"{name} has {waiting} requests waiting (max_queue {self.serve.max_queue}); try again shortly",
                type="server_error",
                code="overloaded",
                headers=(("Retry-After", "1"),),
            )
        return info

    def _running(self, name: str) -> InstanceInfo | None:
        current = self.manager.instances()
        for info in current:
            if info.run_id == name:
                return info
        from engines.catalog.resolve import follow_aliases

        target = follow_aliases(name, self.config.aliases)
        launched = self._launched.get(name)
        matches = [i for i in current if i.model_id in (name, target) or i.run_id == launched]
        live = [i for i in matches if i.state in (InstanceState.READY, InstanceState.BUSY)]
        # The least loaded of the instances that run it; a loading one only when none is live.
        pool = live or matches
        return min(pool, key=lambda i: i.pending_requests) if pool else None

    def _launch(self, name: str, options: LaunchOptions | None) -> InstanceInfo:
        if not self.serve.launch_on_demand:
            why = self._why_not_running(name)
            raise model_not_found(name, why)
        with self._launch_lock:
            info = self._running(name)  # another request may have launched it meanwhile
            if info is not None:
                return info
            return self._start(name, options, None)

    def launch_new(self, name: str, *, engine: str | None = None, options: LaunchOptions | None = None) -> InstanceInfo:
        """Launch `name` as a new instance, whether or not one runs it (the admin route), by the rules of
        launch-on-demand (catalog ids, aliases, files inside models_dir; memory admission); blocks until loaded.
        ApiError 404 (not launchable), 400 (unknown engine), 503 (not enough memory, load failed)."""
        if engine is not None:
            from engines.adapters import registry

            if registry.ALIASES.get(engine, engine) not in registry.ENGINES:
                known = ", ".join(sorted(registry.ENGINES))
                raise ApiError(400, f"unknown engine {engine!r} (known: {known})", param="engine", code="invalid_value")
        with self._launch_lock:
            return self._start(name, options, engine)

    def _start(self, name: str, options: LaunchOptions | None, engine: str | None) -> InstanceInfo:
        """Launch what `name` names (the launch lock held)."""
        ref = self._launch_ref(name)
        if ref is None:  # one answer whether or not such a file exists: no probing the disk through us
            raise model_not_found(name, NOT_LAUNCHABLE)
        before = {i.run_id for i in self.manager.instances()}
        try:
            launched = launch(
                self.manager,
                ref,
                self.config,
                engine=engine,
                options=self.served_options(options or default_options(self.config)),
                snapshot=self.snapshot,
            )
        except ModelNotFound as exc:
            raise model_not_found(name, str(exc)) from None
        except LlmTuiError as exc:
            self._forget_failed(before)
            error = from_exception(exc)
            error.message = f"cannot load {name!r}: {error.message}"
            raise error from None
        except Exception:
            self._forget_failed(before)
            raise
        self._launched[name] = launched.run_id
        return self.manager.info(launched.run_id)

    def served_options(self, options: LaunchOptions) -> LaunchOptions:
        """`options` with the server's idle unload ([serve] idle_unload_s, --idle-unload) unless they set their own."""
        if options.idle_unload_s is not None or self.serve.idle_unload_s is None:
            return options
        return replace(options, idle_unload_s=self.serve.idle_unload_s)

    def _launch_ref(self, name: str) -> str | None:
        """What `name` launches: a model found on disk (by its listed name), an alias, a catalog id, or a file
        or folder inside models_dir (symlinks resolved first); None for anything else."""
        from engines.catalog.builtin import find_entry

        listed = self._cached_launchable()
        if name in listed:
            return listed[name]
        if name in self.config.aliases or find_entry(name) is not None:
            return name
        path = inside_models_dir(name, self.config.models_dir)
        return str(path) if path is not None else None

    def _forget_failed(self, before: set[str]) -> None:
        """Stop the instance a failed launch left behind (in its error state), so no error row lingers."""
        for info in self.manager.instances():
            if info.run_id not in before and info.state is InstanceState.ERROR:
                with contextlib.suppress(LlmTuiError):  # already gone
                    self.manager.stop(info.run_id, reason=f"launch on demand of {info.model_id} failed")

    def _why_not_running(self, name: str) -> str:
        if self._launch_ref(name) is None:
            return NOT_LAUNCHABLE
        return (
            "it is known but not running; start it in llm-tui or with `llm-tui serve --model`, "
            "or set [serve] launch_on_demand"
        )

    def _wait_loaded(self, info: InstanceInfo) -> InstanceInfo:
        try:
            return self.manager.wait_ready(info.run_id, timeout=600.0)
        except LlmTuiError as exc:
            raise ApiError(503, str(exc), type="server_error", code="model_unavailable") from None

    def models(self) -> list[ModelEntry]:
        """Running instances (by run id and by model id), then what could be launched on demand, then presets."""
        out: list[ModelEntry] = []
        seen: set[str] = set()
        for info in self.manager.instances():
            created = int(info.started_at or time.time())
            for name in (info.model_id, info.run_id):
                if name not in seen:
                    seen.add(name)
                    out.append(ModelEntry(name, created, True, info.run_id, info.engine, info.state.value))
        now = int(time.time())
        if self.serve.launch_on_demand:
            out.extend(ModelEntry(name, now, False) for name in self._cached_launchable() if name not in seen)
            seen.update(e.id for e in out)
        # Presets are asked for by name like models: listed when a request for one can be served.
        for name, preset in self.config.presets.items():
            usable = preset.model and (self.serve.launch_on_demand or self._running(preset.model) is not None)
            if usable and name not in seen:
                out.append(ModelEntry(name, now, False))
        return out

    def launchable_names(self) -> list[str]:
        """The names of the models on disk and the aliases that can be launched (the cached listing)."""
        return sorted(self._cached_launchable())

    def _cached_launchable(self) -> dict[str, str]:
        cached = self._listing
        if cached is not None and time.monotonic() - cached[0] < LISTING_TTL_S:
            return cached[1]
        names = self._launchable()
        self._listing = (time.monotonic(), names)
        return names

    def _models_on_disk(self) -> dict[str, str]:
        """Models found in the models folder and the HF cache (by catalog id where they have one) and the
        aliases, each with the reference that launches it."""
        from engines.catalog.listing import build_listing

        listing = build_listing(self.config, local_only=True, include_network=False)
        out: dict[str, str] = {}
        for row in listing.rows:
            if row.status == "ok" and row.source in ("local", "hf-cache") and row.path is not None:
                out.setdefault(row.catalog_id or row.id, row.catalog_id or str(row.path))
        for alias in self.config.aliases:
            out.setdefault(alias, alias)
        return out


def inside_models_dir(name: str, models_dir: Path) -> Path | None:
    """The file or folder `name` names inside `models_dir` (relative names are taken from there), with symlinks
    resolved; None when it resolves elsewhere, is the folder itself or does not exist."""
    try:
        root = models_dir.expanduser().resolve()
        given = Path(name)
        target = (given if given.is_absolute() else root / given).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):  # missing, a symlink loop, a NUL byte in the name
        return None
    if target == root or not target.is_relative_to(root):
        return None
    return target
