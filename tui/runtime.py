"""What every screen shares: the configuration, the engine manager, the store, the active instance."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from engines.config import Config
from engines.manager import EngineManager
from engines.store import Store

if TYPE_CHECKING:
    from engines.adapters.base import Engine
    from engines.catalog.listing import Listing
    from engines.catalog.packaged import Progress
    from engines.launch import Launched
    from engines.types import InstanceInfo, LaunchOptions

EngineChoice = Callable[[str], "str | Engine | None"]
"""Maps a model reference to the engine to use (tests hand in a fake engine here)."""
ListingSource = Callable[[Config, "int | None"], "Listing"]
"""Builds the catalog listing for a context size (tests hand in fixed rows and free memory here)."""


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
    ) -> None:
        self.config = config
        self.manager = manager or EngineManager()
        self.store = store or Store(config.db_path)
        self._engine_choice = engine_choice
        self._listing = listing
        self._lock = threading.Lock()
        self._active: ActiveModel | None = None

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
    ) -> Launched:
        """Resolve and load a model (blocking: call it from a worker thread)."""
        chosen: str | Engine | None = engine
        if chosen is None and self._engine_choice is not None:
            chosen = self._engine_choice(ref)
        from engines.launch import launch  # the catalog and adapter registry: not needed for the first frame

        launched = launch(self.manager, ref, self.config, engine=chosen, options=options, progress=progress)
        self.set_active(launched)
        return launched

    def catalog_listing(self, n_ctx: int | None = None) -> Listing:
        """Every model here and in the catalog with fits at `n_ctx` (blocking: scans disks and daemons)."""
        if self._listing is not None:
            return self._listing(self.config, n_ctx)
        from engines.catalog.listing import build_listing

        return build_listing(self.config, n_ctx=n_ctx)

    def set_alias(self, name: str, ref: str) -> None:
        """Save alias `name` for `ref` in the config file in use (or the user's) and use it from now on."""
        from engines.config import user_config_path
        from engines.config_edit import set_alias

        path = self.config.source or user_config_path()
        aliases = set_alias(path, name, ref)
        self.config = replace(self.config, aliases=aliases, source=path)

    def close(self) -> None:
        """Stop every instance and close the store."""
        self.manager.stop_all(timeout=10)
        self.store.close()
