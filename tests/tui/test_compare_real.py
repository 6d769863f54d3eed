"""The compare runner on the real Gemma 3 270M: llama.cpp against transformers, both panes complete with their
metrics; and sequential mode holds one model at a time (peak RSS near one model's load growth, not the sum)."""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from engines.adapters.base import Engine
from engines.admission import margin_bytes
from engines.compare.runner import CompareRunner
from engines.compare.types import CompareEvent, CompareModel, CompareRequest, Planned
from engines.config.load import Config, load_config
from engines.footprint import process_memory
from engines.launch import estimate_need, resolve_ref
from engines.manager import EngineManager
from engines.telemetry.poller import take_snapshot
from engines.telemetry.snapshot import HostStats, Snapshot
from engines.telemetry.sources import NoGpuSource, PsutilSource
from engines.types import LaunchOptions, Params

pytestmark = pytest.mark.real_model

OPTIONS = LaunchOptions(n_ctx=1024, n_threads=2)
PARAMS = Params(temperature=0.0, max_tokens=16, seed=1)
PROMPT = "Name three colors."


@pytest.fixture
def config(gemma_path: Path, isolated_dirs: Path) -> Config:
    """The app's configuration with the models directory holding the real Gemma GGUF (catalog id gemma-3-270m)."""
    return load_config(env={"LLM_TUI_MODELS_DIR": str(gemma_path.parent)}, cwd=isolated_dirs)


@pytest.fixture
def manager() -> Iterator[EngineManager]:
    with EngineManager() as m:
        yield m


def transformers_engine(cache: Path) -> Engine:
    """Transformers with the conversion cache the other real-model tests share (it outlives the run); without
    torch and transformers the test is skipped, saying so (scripts/test.sh installs them, so it runs there)."""
    missing = [name for name in ("torch", "transformers") if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(
            f"llama.cpp against transformers needs {' and '.join(missing)}: pip install -e '.[transformers]' "
            "(comparing llama.cpp with itself would not test what this test is named for)"
        )
    from engines.adapters.transformers_engine import TransformersEngine

    return TransformersEngine(cache_dir=cache)


@dataclass
class Collected:
    events: list[CompareEvent]
    lock: threading.Lock

    def __call__(self, event: CompareEvent) -> None:
        with self.lock:
            self.events.append(event)


def test_gemma_on_llama_cpp_against_transformers(
    config: Config, manager: EngineManager, transformers_cache: Path
) -> None:
    pytest.importorskip("llama_cpp")
    other = transformers_engine(transformers_cache)
    models = (
        CompareModel(ref="gemma-3-270m", engine="llama.cpp", options=OPTIONS),
        CompareModel(ref="gemma-3-270m", engine="transformers", options=OPTIONS),
    )
    collected = Collected([], threading.Lock())
    runner = CompareRunner(
        manager,
        CompareRequest(PROMPT, models, params=PARAMS),
        collected,
        config=config,
        snapshot=lambda: take_snapshot(NoGpuSource("not needed here"), PsutilSource(config.models_dir)),
        engine_for=lambda m: other if m.engine == "transformers" else m.engine,
    )
    results = runner.run()
    plan = next(e.plan for e in collected.events if isinstance(e, Planned))
    assert plan.reason  # the decision is explained (parallel on this host: the two fit together)
    assert [r.engine for r in results] == ["llama.cpp", "transformers"]
    for result in results:
        assert result.status == "done", result.error
        assert result.text.strip()
        metrics = result.metrics
        assert metrics is not None and metrics.ttft_ms is not None and metrics.ttft_ms > 0
        assert metrics.tokens_per_s is not None and metrics.tokens_per_s > 0
        assert metrics.completion_tokens is not None and 0 < metrics.completion_tokens <= 16
        assert result.ram_bytes is not None and result.ram_bytes > 0
    assert manager.instances() == []  # both launched by the run, both stopped at its end


class PeakRss:
    """Samples this process's RSS on a thread until stopped; keeps the highest."""

    def __init__(self) -> None:
        self.peak = process_memory().rss_bytes
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(5)

    def _sample(self) -> None:
        while not self._done.wait(0.005):
            self.peak = max(self.peak, process_memory().rss_bytes)


def test_sequential_mode_holds_one_model_at_a_time(config: Config, manager: EngineManager) -> None:
    pytest.importorskip("llama_cpp")
    spec = resolve_ref("gemma-3-270m", config)
    need = estimate_need(spec, OPTIONS)
    assert need is not None
    total = 64 << 30
    # A host with room for one Gemma (and the margin admission keeps free), not for two: the plan is sequential.
    free = need.ram_bytes + margin_bytes(total) + need.ram_bytes // 2

    def host() -> Snapshot:
        return Snapshot(taken_at=0.0, host=HostStats(ram_total_bytes=total, ram_available_bytes=free))

    model = CompareModel(ref="gemma-3-270m", engine="llama.cpp", options=OPTIONS)
    collected = Collected([], threading.Lock())
    runner = CompareRunner(
        manager, CompareRequest(PROMPT, (model, model), params=PARAMS), collected, config=config, snapshot=host
    )
    baseline = process_memory().rss_bytes
    with PeakRss() as rss:
        results = runner.run()
    assert next(e.plan for e in collected.events if isinstance(e, Planned)).mode == "sequential"
    assert [r.status for r in results] == ["done", "done"] and all(r.unloaded for r in results)
    growths = [i.footprint.measured_ram_bytes for i in manager.stopped()[-2:]]
    assert all(g is not None and g > 0 for g in growths), growths
    one_model = max(g for g in growths if g is not None)
    grew = rss.peak - baseline
    print(f"\nsequential peak RSS growth {grew / 1e6:.0f} MB; one model's load growth {one_model / 1e6:.0f} MB")
    assert grew < 1.5 * one_model  # near one model, not the sum of two
