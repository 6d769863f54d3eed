"""An app wired to a fake engine and a store in a temporary folder."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from engines.adapters.fake import FakeEngine
from engines.config.load import load_config
from engines.downloads.queue import DescribeHub, Transfer
from engines.errors import LlmTuiError
from engines.manager import Coalescing, EngineManager
from engines.telemetry.sources import GpuSource
from tui.app import LlmTuiApp
from tui.runtime import ListingSource, Runtime

if TYPE_CHECKING:
    from tests.tui.sweep_states import Env

AppFactory = Callable[..., LlmTuiApp]


def offline_transfer(*args: object, **_: object) -> Any:
    """Tests never reach the network: a queued download (or asking the Hub about it) fails at once, saying so."""
    raise LlmTuiError(f"no network in tests ({', '.join(map(str, args))})")


@pytest.fixture
def fake_model(isolated_dirs: Path) -> Path:
    """A file the fake engine 'loads'."""
    path = isolated_dirs / "tiny.gguf"
    path.write_bytes(b"GGUF")
    return path


@pytest.fixture
def models_dir(isolated_dirs: Path) -> Path:
    """The models directory of make_app's config, holding the catalog fixture's files."""
    from tests.tui.catalog_fixture import populate

    folder = load_config(env={}, cwd=isolated_dirs).models_dir
    folder.mkdir(parents=True)
    populate(folder)
    return folder


@pytest.fixture
def make_app(isolated_dirs: Path, fake_model: Path) -> Iterator[AppFactory]:
    """Build an app whose models all run on a FakeEngine configured by the test."""
    runtimes: list[Runtime] = []

    def factory(
        *,
        engine: FakeEngine | None = None,
        screen: str = "chat",
        launch: bool = True,
        listing: ListingSource | None = None,
        gpu_source: Callable[[], GpuSource] | None = None,
        transfer: Transfer | None = None,
        describe_hub: DescribeHub | None = None,
        env: dict[str, str] | None = None,
    ) -> LlmTuiApp:
        config = load_config(env={}, cwd=isolated_dirs)
        chosen = engine or FakeEngine()
        # Coalescing off: each fake token is its own event, so tests see every step.
        # A scripted clock (10 ms per reading) makes the metrics under each reply reproducible.
        ticks = itertools.count()
        manager = EngineManager(coalescing=Coalescing(interval_s=0.0, max_chars=1), clock=lambda: next(ticks) * 0.01)
        runtime = Runtime(
            config,
            manager=manager,
            engine_choice=lambda ref: chosen,
            listing=listing,
            gpu_source=gpu_source,
            transfer=transfer or offline_transfer,
            describe_hub=describe_hub or offline_transfer,
            env=env,
        )
        runtimes.append(runtime)
        return LlmTuiApp(runtime, screen=screen, model=str(fake_model) if launch else None)

    yield factory
    for runtime in runtimes:
        runtime.close()
    # The crash guard keeps the app running where Textual would have ended it and failed the test: what it caught
    # fails the test here instead (tests that make it catch on purpose remove the log).
    crash_log = load_config(env={}, cwd=isolated_dirs).state_dir / "crash.log"
    caught = crash_log.read_text(encoding="utf-8", errors="replace") if crash_log.exists() else ""
    if caught.strip():
        pytest.fail(f"the app's crash guard caught an exception:\n{caught}", pytrace=False)


@pytest.fixture
def env(make_app: AppFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    """The sweep states' shared environment (key sweep, monkey run, rule tests), released after the test."""
    from tests.tui.sweep_states import Env as SweepEnv  # it imports this module

    built = SweepEnv(make_app, tmp_path, monkeypatch)
    yield built
    built.release_all()


@pytest.fixture
def gates() -> Iterator[tuple[threading.Event, threading.Event]]:
    """(load gate, token gate) for fake engines: a load or a reply held until the test sets it; both set after."""
    load_gate, token_gate = threading.Event(), threading.Event()
    yield load_gate, token_gate
    load_gate.set()
    token_gate.set()
