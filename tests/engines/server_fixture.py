"""An in-process `llm-tui serve` over fake-engine instances, on 127.0.0.1 and a free port."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from engines.adapters.fake import FakeEngine
from engines.config.load import Config, default_config
from engines.config.serve import ServeConfig
from engines.launch import SnapshotSource
from engines.manager import EngineManager
from engines.server.app import ServerContext
from engines.server.runner import ServerThread, prepare
from engines.types import ModelSpec


@dataclass
class Served:
    url: str
    manager: EngineManager
    context: ServerContext
    run_ids: dict[str, str]
    engines: dict[str, FakeEngine]


@contextmanager
def served(
    models: dict[str, FakeEngine] | None = None,
    serve: ServeConfig | None = None,
    config: Config | None = None,
    manager: EngineManager | None = None,
    models_dir: Path | None = None,
    snapshot: SnapshotSource | None = None,
) -> Iterator[Served]:
    """Start the named fake models and a server over them; stop both after."""
    engines = {"tiny": FakeEngine()} if models is None else models
    manager = manager or EngineManager()
    config = config or default_config()
    if models_dir is not None:
        config = replace(config, models_dir=models_dir)
    run_ids = {
        name: manager.start(ModelSpec(name, format="fake", engines=("fake",)), engine=e) for name, e in engines.items()
    }
    context = ServerContext(manager, config, replace(serve or ServeConfig(), port=0), snapshot=snapshot)
    server = ServerThread(prepare(context))
    server.start()
    try:
        yield Served(server.url, manager, context, run_ids, engines)
    finally:
        for engine in engines.values():
            if engine.gate is not None:
                engine.gate.set()
        server.stop()
        manager.close()
