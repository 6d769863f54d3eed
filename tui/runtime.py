"""What every screen shares: the configuration, the engine manager, the store, the active instance."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engines.config.load import Config
from engines.errors import LlmTuiError
from engines.store.sessions import Store

if TYPE_CHECKING:
    from engines.adapters.base import Engine
    from engines.catalog.fit import Resources
    from engines.catalog.listing import Listing
    from engines.catalog.packaged import Progress
    from engines.config.serve import ServeConfig
    from engines.downloads.queue import DescribeHub, DownloadQueue, Transfer
    from engines.downloads.tasks import DownloadTask
    from engines.instance_log import InstanceLog
    from engines.launch import Launched
    from engines.manager import EngineManager
    from engines.mcp.client import McpHub
    from engines.server.runner import ServerThread
    from engines.telemetry.poller import TelemetryPoller
    from engines.telemetry.sources import GpuSource
    from engines.types import InstanceInfo, LaunchOptions
    from tui.screens.tune_hooks import TuneHandle

EngineChoice = Callable[[str], "str | Engine | None"]
"""Maps a model reference to the engine to use (tests hand in a fake engine here)."""
ListingSource = Callable[[Config, "int | None"], "Listing"]
"""Builds the catalog listing for a context size (tests hand in fixed rows and free memory here)."""


@dataclass(frozen=True, slots=True)
class LaunchRecord:
    """What a launch asked for: enough to do it again."""

    ref: str
    engine: str | None
    options: LaunchOptions | None


@dataclass(frozen=True, slots=True)
class ActiveModel:
    """The instance the chat talks to, as the header shows it."""

    run_id: str
    model_id: str
    engine: str


class Runtime:
    """Owns the long-lived objects behind the UI; safe to use from worker threads."""

    def __init__(
        self,
        config: Config,
        *,
        manager: EngineManager | None = None,
        store: Store | None = None,
        engine_choice: EngineChoice | None = None,
        listing: ListingSource | None = None,
        gpu_source: Callable[[], GpuSource] | None = None,
        transfer: Transfer | None = None,
        describe_hub: DescribeHub | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """`env` is read for the API server's LLM_TUI_API_KEY / LLM_TUI_SERVE_HOST / _PORT (the entry point
        hands in os.environ; tests leave it empty)."""
        self.config = config
        self._env: Mapping[str, str] = env or {}
        self._serve_settings: tuple[Config, ServeConfig] | None = None
        self._api: ServerThread | None = None
        self._manager: EngineManager | None = None
        self.store = store or Store(config.db_path)
        self._engine_choice = engine_choice
        self._listing = listing
        self._gpu_source = gpu_source
        self.launches: dict[str, LaunchRecord] = {}
        """How each instance was launched (run id → ref, engine, options), to restart it."""
        self.instance_log: InstanceLog | None = None
        self._telemetry: TelemetryPoller | None = None
        self._downloads: DownloadQueue | None = None
        self.download_finished: Callable[[DownloadTask], None] = lambda task: None
        """Told (from a download's thread) when a download completes or fails; the app sets it."""
        self._transfer = transfer
        self._describe_hub = describe_hub
        self._lock = threading.Lock()
        self._active: ActiveModel | None = None
        self._mcp: McpHub | None = None
        self.tune_handles: dict[str, TuneHandle] = {}
        """Fine-tuning processes this app started (the Tune screen's), by run name: stopped with a checkpoint when
        the app closes, so a quit never leaves a child training unseen (`r` resumes the run)."""
        self.active_replaced: Callable[[ActiveModel, ActiveModel | None], None] = lambda old, new: None
        """Told (old, new) when the active instance stopped or failed and the most recently used ready one took
        its place (new is None when none is ready); from the thread that noticed. The app sets it."""
        if manager is not None:
            self._adopt(manager)

    @property
    def manager(self) -> EngineManager:
        """The engine manager, created on first use: it and the engine registry load after the first frame."""
        manager = self._manager
        if manager is None:
            from engines.manager import EngineManager

            with self._lock:
                if self._manager is None:
                    self._adopt(EngineManager())
                manager = self._manager
        assert manager is not None
        return manager

    def _adopt(self, manager: EngineManager) -> None:
        if manager.on_stopped is None:
            manager.on_stopped = self._instance_stopped
        self._manager = manager

    @property
    def active(self) -> ActiveModel | None:
        """The instance new chat turns go to, if any."""
        with self._lock:
            return self._active

    def set_active(self, launched: Launched | ActiveModel | None) -> None:
        """Make an instance the one the chat uses."""
        with self._lock:
            if launched is None or isinstance(launched, ActiveModel):
                self._active = launched
            else:
                self._active = ActiveModel(launched.run_id, launched.spec.id, launched.engine)

    def _instance_stopped(self, info: InstanceInfo) -> None:
        self.replace_gone_active()  # from the thread that stopped it (F4, the palette, the idle reaper)

    def replace_gone_active(self) -> ActiveModel | None:
        """When the active instance has stopped or failed, make the most recently used ready (or busy) instance
        active instead of leaving the chat on "no model", and tell `active_replaced`.

        Returns the new active instance; None when nothing changed or no other instance is ready (it is then
        cleared)."""
        from engines.types import InstanceState

        gone = self.active
        if gone is None:
            return None
        try:
            state = self.manager.info(gone.run_id).state
        except LlmTuiError:  # InstanceNotFound: stopped and forgotten
            state = InstanceState.STOPPED
        if state not in (InstanceState.ERROR, InstanceState.STOPPING, InstanceState.STOPPED):
            return None
        usable = [
            i
            for i in self.manager.instances()
            if i.run_id != gone.run_id and i.state in (InstanceState.READY, InstanceState.BUSY)
        ]
        latest = max(usable, key=lambda i: i.last_used_at, default=None)
        new = ActiveModel(latest.run_id, latest.model_id, latest.engine) if latest is not None else None
        with self._lock:
            if self._active != gone:
                return None  # a launch or a pick changed it meanwhile: that choice stands
            self._active = new
        self.active_replaced(gone, new)
        return new

    def active_info(self) -> InstanceInfo | None:
        """The active instance's current state, or None when it is gone."""
        active = self.active
        if active is None:
            return None
        try:
            return self.manager.info(active.run_id)
        except Exception:
            return None

    def launch(
        self,
        ref: str,
        *,
        engine: str | None = None,
        options: LaunchOptions | None = None,
        progress: Progress | None = None,
        unload: Sequence[str] = (),
    ) -> Launched:
        """Resolve and load a model after the memory check (blocking: call it from a worker thread).

        `unload` names idle instances to stop first (what a NotEnoughMemory refusal offered).
        Raises NotEnoughMemory with the numbers when the model does not fit beside what runs.
        """
        chosen = self.engine_for(ref, engine)
        from engines.instance_log import install
        from engines.launch import unload_and_launch  # the catalog and registry: not needed for the first frame

        self.instance_log = install()
        launched = unload_and_launch(
            self.manager,
            ref,
            self.config,
            unload,
            engine=chosen,
            options=options,
            progress=progress,
            snapshot=self.telemetry.sample_now,
        )
        with self._lock:
            self.launches[launched.run_id] = LaunchRecord(ref, engine, options)
        self.set_active(launched)
        return launched

    def engine_for(self, ref: str, engine: str | None) -> str | Engine | None:
        """The engine to launch `ref` on: the app's engine choice (tests: a fake engine) first, else `engine`."""
        if self._engine_choice is not None:
            return self._engine_choice(ref) or engine
        return engine

    def resources(self) -> Resources:
        """Free RAM, VRAM per GPU and disk now, from telemetry (a fresh sample if none was taken yet)."""
        from engines.telemetry.resources import resources_from

        poller = self.telemetry
        return resources_from(poller.latest or poller.sample_now())

    def catalog_listing(self, n_ctx: int | None = None) -> Listing:
        """Every model here and in the catalog with fits at `n_ctx` (blocking: scans disks and daemons)."""
        if self._listing is not None:
            return self._listing(self.config, n_ctx)
        from engines.catalog.listing import build_listing

        return build_listing(self.config, n_ctx=n_ctx, resources=self.resources())

    def apply_config(self, config: Config) -> None:
        """Run on a new configuration (a saved settings screen): telemetry samples at its interval from the next
        sample on, the download queue takes its limits, token and endpoints for the downloads that start next."""
        self.config = config
        with self._lock:
            poller, queue = self._telemetry, self._downloads
        if poller is not None:
            poller.interval_s = config.telemetry_interval_s
        if queue is not None:
            from engines.downloads.queue import QueueSettings

            queue.apply(QueueSettings.from_config(config))
        with self._lock:
            hub = self._mcp
            if hub is not None and hub.servers != config.mcp_servers:
                self._mcp = None  # the next use starts the servers as now configured
            else:
                hub = None
        if hub is not None:
            hub.close()

    @property
    def mcp(self) -> McpHub:
        """The configured MCP servers (none started until a chat lists or calls their tools)."""
        from engines.mcp.client import McpHub

        with self._lock:
            if self._mcp is None:
                self._mcp = McpHub(self.config.mcp_servers, self.config.env)
            return self._mcp

    def set_alias(self, name: str, ref: str) -> None:
        """Save alias `name` for `ref` in the config file in use (or the user's) and use it from now on."""
        from engines.config.edit import reload_config, set_alias
        from engines.config.load import user_config_path

        path = self.config.source or user_config_path()
        set_alias(path, name, ref)
        # Reloaded over the read-only defaults underneath, so their aliases stay in use beside the new one.
        self.config = reload_config(path, self.config)

    @property
    def downloads(self) -> DownloadQueue:
        """The download queue (tasks in the store), created on first use.

        Tasks a restart interrupted come back paused.
        """
        with self._lock:
            if self._downloads is None:
                from engines.downloads.queue import DownloadQueue, QueueSettings

                settings = QueueSettings.from_config(self.config)
                self._downloads = DownloadQueue(
                    self.store.downloads,
                    settings,
                    transfer=self._transfer,
                    describe_hub=self._describe_hub,
                    on_finish=lambda task: self.download_finished(task),
                )
            return self._downloads

    def resume_downloads(self) -> list[int]:
        """At start: if the queue has work left, open it and start what may run.

        Returns the tasks a previous run left downloading: paused now, or
        queued again when `downloads_resume_on_start` is set.
        """
        if not self.store.downloads.unfinished():
            return []
        queue = self.downloads
        queue.pump()
        return queue.recovered

    @property
    def telemetry(self) -> TelemetryPoller:
        """The one telemetry poller (GPUs and host), created and started on first use.

        Screens read `latest` / `history()` or take `sample_now()`; it samples every
        `telemetry_interval_s` in its own thread.
        """
        with self._lock:
            if self._telemetry is None:
                from engines.telemetry.poller import TelemetryPoller
                from engines.telemetry.sources import PsutilSource

                gpu = self._gpu_source() if self._gpu_source is not None else _open_gpu_source()
                self._telemetry = TelemetryPoller(
                    gpu,
                    PsutilSource(self.config.models_dir),
                    interval_s=self.config.telemetry_interval_s,
                    pids=self._our_pids,
                )
                self._telemetry.start()
            return self._telemetry

    def _our_pids(self) -> dict[int, str]:
        """Our instances run in this process: its GPU memory is theirs (named by run id)."""
        running = [i.run_id for i in self.manager.instances() if i.state.value not in ("stopped", "error")]
        return {os.getpid(): ", ".join(running)} if running else {}

    @property
    def api(self) -> ServerThread | None:
        """The OpenAI-compatible API server the app runs, while it runs."""
        with self._lock:
            return self._api

    def serve_settings(self, *, fresh: bool = False) -> ServeConfig:
        """[serve] from the config with the environment's keys, host and port (ConfigError for a bad port).

        Kept while the config stays the same: the instances screen shows it every second, and a keys_file would be
        read each time. `fresh` reads it again (starting the server: a key just removed from the file must not
        get in)."""
        cached = self._serve_settings
        if not fresh and cached is not None and cached[0] is self.config:
            return cached[1]
        serve = self.config.serve.with_env(self._env)
        self._serve_settings = (self.config, serve)
        return serve

    def start_api(self) -> ServerThread:
        """Serve the running instances over the OpenAI-compatible API (blocking: call it from a worker thread).

        Raises ServeUnavailable without the `serve` extra, ServeError for a taken port or an address
        beyond loopback without an API key."""
        from engines.server import require_serve_extra

        require_serve_extra()
        from engines.server.app import ServerContext
        from engines.server.runner import ServerThread, prepare

        with self._lock:
            if self._api is not None and self._api.running:
                return self._api
        poller = self.telemetry
        serve = self.serve_settings(fresh=True)
        context = ServerContext(self.manager, self.config, serve, snapshot=lambda: poller.latest or poller.sample_now())
        server = ServerThread(prepare(context))
        server.start()
        with self._lock:
            self._api = server
        return server

    def stop_api(self) -> None:
        """Stop the API server (open streams end, their generation is cancelled); a no-op when it is off."""
        with self._lock:
            server = self._api
        if server is not None:
            server.stop()  # still `api` until its port is free, so a quick restart cannot find it taken
            with self._lock:
                if self._api is server:
                    self._api = None

    def close(self) -> None:
        """Stop the API server, downloads (they resume next time), every instance and the telemetry poller;
        close the store."""
        self.stop_api()
        for handle in list(self.tune_handles.values()):
            with contextlib.suppress(Exception):  # gone already: nothing to stop
                handle.stop()
        if self._mcp is not None:
            self._mcp.close()
        if self._downloads is not None:
            self._downloads.close()
        if self._telemetry is not None:
            self._telemetry.stop()
        if self._manager is not None:
            self._manager.stop_all(timeout=10)
        self.store.close()


def _open_gpu_source() -> GpuSource:
    """NVML when it can be opened, else a source that says why there is no GPU."""
    from engines.telemetry.nvml import open_gpu_source

    return open_gpu_source()
