"""The compare planner and runner over fake engines: parallel when the models fit together, one after another
(load, run, unload) when they do not, a pane that cannot fit alone fails on its own, Stop ends every pane."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from engines.adapters.fake import FakeEngine
from engines.admission import MARGIN_MIN_BYTES, Need
from engines.compare.plan import Target, plan_compare, together
from engines.compare.runner import CompareRunner
from engines.compare.types import (
    CompareEvent,
    CompareModel,
    CompareRequest,
    PaneResult,
    PaneStatus,
    PaneStream,
    Planned,
    RunEnded,
    rank,
)
from engines.config.load import Config, load_config
from engines.errors import BadModelFile, BadRequest
from engines.manager import Coalescing, EngineManager
from engines.store.records import TurnMetrics
from engines.telemetry.snapshot import HostStats, Snapshot
from engines.types import ChatMessage, Delta, Done, LaunchOptions, ModelSpec, Params
from tests.engines.gguf_corpus import write_gguf

MB = 10**6
OPTIONS = LaunchOptions(n_ctx=1024)


class RecordingEngine(FakeEngine):
    """A fake engine that writes its loads and unloads, by model id, into a shared journal."""

    def __init__(self, journal: list[str], **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.journal = journal

    def load(self, spec: ModelSpec, options: LaunchOptions) -> None:
        self.journal.append(f"load {spec.id}")
        super().load(spec, options)

    def unload(self) -> None:
        if self.spec is not None:
            self.journal.append(f"unload {self.spec.id}")
        super().unload()


def host(free: int, total: int = 4000 * MB) -> Snapshot:
    return Snapshot(taken_at=0.0, host=HostStats(ram_total_bytes=total, ram_available_bytes=free))


@pytest.fixture
def config(isolated_dirs: Path) -> Config:
    return load_config(env={}, cwd=isolated_dirs)


@pytest.fixture
def manager() -> Iterator[EngineManager]:
    with EngineManager(coalescing=Coalescing(interval_s=0.0, max_chars=1)) as m:
        yield m


@pytest.fixture
def models(tmp_path: Path) -> list[Path]:
    """Three tiny GGUFs with real headers, so memory estimates exist (about 100 MB each at n_ctx 1024)."""
    return [write_gguf(tmp_path / f"{name}.gguf") for name in ("alpha", "beta", "gamma")]


def one_need(path: Path) -> int:
    from engines.launch import estimate_need

    need = estimate_need(ModelSpec(id=path.stem, path=path), OPTIONS)
    assert need is not None
    return need.ram_bytes


class Run:
    """A runner over the given engines (by model file), collecting every event it sends."""

    def __init__(
        self,
        manager: EngineManager,
        config: Config,
        models: list[CompareModel],
        engines: Mapping[str, FakeEngine],
        *,
        free: int | None = None,
        prompt: str = "compare this",
    ) -> None:
        self.events: list[CompareEvent] = []
        self.lock = threading.Lock()
        snapshot = None if free is None else (lambda: host(free))
        self.runner = CompareRunner(
            manager,
            CompareRequest(prompt, tuple(models), params=Params(max_tokens=16)),
            self.sink,
            config=config,
            snapshot=snapshot,
            engine_for=lambda m: engines.get(m.ref or "") or m.engine,
        )

    def sink(self, event: CompareEvent) -> None:
        with self.lock:
            self.events.append(event)

    def statuses(self, index: int) -> list[str]:
        with self.lock:
            return [e.detail for e in self.events if isinstance(e, PaneStatus) and e.index == index]

    def ended(self) -> RunEnded:
        last = self.events[-1]
        assert isinstance(last, RunEnded)
        return last

    def plan(self) -> Planned:
        return next(e for e in self.events if isinstance(e, Planned))


def launch(path: Path) -> CompareModel:
    return CompareModel(ref=str(path), options=OPTIONS)


# -- the planner ---------------------------------------------------------------------------------------------


def target(index: int, ram: int | None, *, running: bool = False) -> Target:
    model = CompareModel(run_id=f"r{index}") if running else CompareModel(ref=f"m{index}")
    if running:
        return Target(index, model, f"m{index}", "fake")
    need = None if ram is None else Need(f"m{index}", ram)
    return Target(index, model, f"m{index}", "fake", ModelSpec(id=f"m{index}"), "fake", OPTIONS, need)


def test_models_that_fit_together_run_in_parallel() -> None:
    plan = plan_compare([target(0, 300 * MB), target(1, 300 * MB)], host(2000 * MB), [])
    assert plan.mode == "parallel"
    assert plan.reason == "together they need 600 MB RAM + 268 MB margin; 2.0 GB free"
    assert [p.error for p in plan.panes] == [None, None]


def test_models_that_fit_only_one_at_a_time_run_sequentially_and_say_why() -> None:
    free = 300 * MB + MARGIN_MIN_BYTES + 100 * MB  # room for one of them, with the margin, not two
    plan = plan_compare([target(0, 300 * MB), target(1, 300 * MB)], host(free), [])
    assert plan.mode == "sequential"
    assert plan.reason == "together they need 600 MB RAM + 268 MB margin; 668 MB free"
    assert plan.summary.startswith("sequential — one after another (load, run, unload): together they need")
    assert [p.error for p in plan.panes] == [None, None]


def test_a_model_that_cannot_fit_even_alone_fails_its_pane_and_the_others_still_run() -> None:
    plan = plan_compare([target(0, 300 * MB), target(1, 5000 * MB), target(2, 300 * MB)], host(2000 * MB), [])
    assert plan.panes[1].error is not None
    assert plan.panes[1].error.startswith("does not fit even on its own: needs 5.0 GB RAM")
    assert plan.panes[0].error is None and plan.panes[2].error is None
    assert plan.mode == "parallel"  # the two that can run fit together


def test_running_instances_are_not_loaded_again_and_unknown_sizes_are_said() -> None:
    plan = plan_compare([target(0, None, running=True), target(1, 300 * MB)], host(2000 * MB), [])
    assert plan.mode == "parallel" and plan.reason == "one model to load"
    assert [p.loads for p in plan.panes] == [False, True]
    plan = plan_compare([target(0, None), target(1, 300 * MB)], host(2000 * MB), [])
    assert plan.mode == "parallel" and "m0: size unknown, counted as 0" in plan.reason
    plan = plan_compare([target(0, 300 * MB), target(1, 300 * MB)], None, [])
    assert plan.mode == "parallel" and plan.reason.startswith("free memory unknown")


def test_together_sums_ram_and_vram_per_gpu() -> None:
    needs = [Need("a", 100, 50, 0), Need("b", 200, 70, 0), Need("c", 300, 10, 1), Need("d", 5)]
    assert together(needs) == [Need("a + b + c + d", 605, 120, 0), Need("a + b + c + d", 605, 10, 1)]


def test_a_request_needs_a_prompt_and_two_to_four_models() -> None:
    two = (CompareModel(ref="a"), CompareModel(ref="b"))
    with pytest.raises(BadRequest, match="2 to 4 models"):
        CompareRequest("hi", two[:1]).validate()
    with pytest.raises(BadRequest, match="2 to 4 models"):
        CompareRequest("hi", two * 3).validate()
    with pytest.raises(BadRequest, match="prompt"):
        CompareRequest("  ", two).validate()
    with pytest.raises(BadRequest, match="either a running instance or a model to launch"):
        CompareModel()
    assert CompareRequest("hi", two, system_prompt="Be brief.").messages() == [
        ChatMessage("system", "Be brief."),
        ChatMessage("user", "hi"),
    ]


# -- the runner ----------------------------------------------------------------------------------------------


def test_parallel_run_launches_both_streams_them_at_once_and_stops_what_it_launched(
    manager: EngineManager, config: Config, models: list[Path]
) -> None:
    gate = threading.Event()
    journal: list[str] = []
    engines = {str(p): RecordingEngine(journal, gate=gate) for p in models[:2]}
    run = Run(manager, config, [launch(p) for p in models[:2]], engines, free=4000 * MB)
    run.runner.start()
    # Both requests are in their engines before either may produce a token: they run at the same time.
    for engine in engines.values():
        assert engine.started.wait(10)
    assert journal == ["load alpha", "load beta"]
    gate.set()
    assert run.runner.join(10)
    ended = run.ended()
    assert ended.plan is not None and ended.plan.mode == "parallel" and not ended.stopped
    assert [(r.model_id, r.status, r.text) for r in ended.results] == [
        ("alpha", "done", "Echo: compare this"),
        ("beta", "done", "Echo: compare this"),
    ]
    for result in ended.results:
        assert result.metrics is not None and result.metrics.completion_tokens == 3
        assert result.metrics.ttft_ms is not None and result.ram_bytes == 64 * 1024 * 1024
        assert result.unloaded
    assert journal[2:] and sorted(journal[2:]) == ["unload alpha", "unload beta"]
    assert manager.instances() == []
    assert run.statuses(0)[:3] == ["preparing…", "waiting for the loads", "loading 1/2"]
    assert run.statuses(1)[-3:] == ["done", "done · unloading", "done · unloaded"]
    streamed = [e for e in run.events if isinstance(e, PaneStream) and e.index == 0]
    assert "".join(e.event.text for e in streamed if isinstance(e.event, Delta)) == "Echo: compare this"
    assert streamed[-1].live.ttft_ms is not None and streamed[-1].live.chars == len("Echo: compare this")
    assert isinstance(streamed[-1].event, Done)


def test_sequential_run_unloads_each_model_before_the_next_loads_and_keeps_the_users_instance(
    manager: EngineManager, config: Config, models: list[Path]
) -> None:
    journal: list[str] = []
    engines = {str(p): RecordingEngine(journal) for p in models}
    users = RecordingEngine(journal)
    mine = manager.start(ModelSpec(id="mine", path=models[0]), OPTIONS, users)
    free = one_need(models[0]) + MARGIN_MIN_BYTES + 50 * MB  # one model at a time
    chosen = [launch(models[0]), CompareModel(run_id=mine), launch(models[1]), launch(models[2])]
    run = Run(manager, config, chosen, engines, free=free)
    results = run.runner.run()
    assert run.plan().plan.mode == "sequential"
    assert "together they need" in run.plan().plan.reason
    assert journal == [
        "load mine",
        "load alpha",
        "unload alpha",
        "load beta",
        "unload beta",
        "load gamma",
        "unload gamma",
    ]
    assert [(r.model_id, r.status, r.unloaded) for r in results] == [
        ("alpha", "done", True),
        ("mine", "done", False),
        ("beta", "done", True),
        ("gamma", "done", True),
    ]
    assert [i.run_id for i in manager.instances()] == [mine]  # the user's instance is never stopped
    assert run.statuses(3)[:4] == ["preparing…", "waiting · runs 4/4", "loading 4/4", "running"]
    assert run.statuses(0)[-2:] == ["done · unloading", "done · unloaded"]
    assert results[1].run_id == mine and results[1].ref is None


class RemoteLike(FakeEngine):
    """Stands in for the remote engine: its model is on another machine; here it holds only a client."""

    name = "remote"


def test_a_remote_panes_memory_is_not_reported_as_local_ram_and_every_pane_names_its_instance(
    manager: EngineManager, config: Config, models: list[Path]
) -> None:
    mine = manager.start(ModelSpec(id="served", path=models[1]), OPTIONS, RemoteLike(ram_bytes=733_000))
    run = Run(manager, config, [launch(models[0]), CompareModel(run_id=mine)], {str(models[0]): FakeEngine()})
    results = run.runner.run()
    assert [r.status for r in results] == ["done", "done"]
    assert results[0].ram_bytes == 64 * 1024 * 1024
    assert (results[1].engine, results[1].ram_bytes, results[1].vram_bytes) == ("remote", None, None)
    remote = [e for e in run.events if isinstance(e, PaneStatus) and e.index == 1]
    assert remote and all(e.footprint is None for e in remote)
    assert all(e.run_id == mine for e in remote if e.detail != "preparing…")
    launched = {e.run_id for e in run.events if isinstance(e, PaneStatus) and e.index == 0 and e.state == "running"}
    assert len(launched) == 1 and None not in launched  # the run's own instance is named while it runs


def test_a_pane_whose_load_fails_or_that_cannot_fit_errors_while_the_others_finish(
    manager: EngineManager, config: Config, models: list[Path], tmp_path: Path
) -> None:
    huge = write_gguf(tmp_path / "huge.gguf", context_length=1 << 20, blocks=200, kv_heads=4)
    engines = {
        str(models[0]): FakeEngine(),
        str(models[1]): FakeEngine(load_error=BadModelFile(str(models[1]), "truncated")),
        str(huge): FakeEngine(),
    }
    chosen = [launch(models[0]), launch(models[1]), CompareModel(ref=str(huge), options=LaunchOptions(n_ctx=1 << 20))]
    run = Run(manager, config, chosen, engines, free=1000 * MB)
    results = run.runner.run()
    assert [r.status for r in results] == ["done", "error", "error"]
    assert results[1].error is not None and "truncated" in results[1].error
    assert results[2].error is not None and results[2].error.startswith("does not fit even on its own")
    assert manager.instances() == []


def test_a_missing_model_or_instance_fails_only_its_own_pane(
    manager: EngineManager, config: Config, models: list[Path], tmp_path: Path
) -> None:
    chosen = [launch(models[0]), CompareModel(ref=str(tmp_path / "nope.gguf")), CompareModel(run_id="r99-fake")]
    run = Run(manager, config, chosen, {str(models[0]): FakeEngine()})
    results = run.runner.run()
    assert [r.status for r in results] == ["done", "error", "error"]
    assert "no such model file" in (results[1].error or "")
    assert results[2].error == "instance r99-fake is no longer running"


def test_stop_mid_run_ends_every_pane_as_stopped_and_unloads(
    manager: EngineManager, config: Config, models: list[Path]
) -> None:
    gate = threading.Event()  # never set: the replies would wait for ever
    engines = {str(p): FakeEngine(gate=gate) for p in models[:2]}
    run = Run(manager, config, [launch(p) for p in models[:2]], engines, free=4000 * MB)
    run.runner.start()
    for engine in engines.values():
        assert engine.started.wait(10)
    run.runner.stop()
    assert run.runner.join(10)
    ended = run.ended()
    assert ended.stopped
    assert [r.status for r in ended.results] == ["stopped", "stopped"]
    assert all(r.metrics is not None and r.metrics.finish_reason == "cancelled" for r in ended.results)
    assert manager.instances() == []


def test_stop_in_sequential_mode_leaves_the_waiting_panes_stopped_and_never_loads_them(
    manager: EngineManager, config: Config, models: list[Path]
) -> None:
    gate = threading.Event()
    journal: list[str] = []
    engines = {str(p): RecordingEngine(journal, gate=gate) for p in models}
    free = one_need(models[0]) + MARGIN_MIN_BYTES + 50 * MB
    run = Run(manager, config, [launch(p) for p in models], engines, free=free)
    run.runner.start()
    assert engines[str(models[0])].started.wait(10)
    run.runner.stop()
    assert run.runner.join(10)
    assert [r.status for r in run.ended().results] == ["stopped", "stopped", "stopped"]
    assert journal == ["load alpha", "unload alpha"]
    assert run.statuses(2)[-1] == "stopped"


def test_rank_orders_finished_panes_by_speed_and_first_token() -> None:
    def result(index: int, model: str, tps: float, ttft: float, status: str = "done") -> PaneResult:
        return PaneResult(index, model, "fake", status, metrics=TurnMetrics(ttft, tps))  # type: ignore[arg-type]

    results = [result(0, "slow", 10.0, 50.0), result(1, "fast", 40.5, 120.0), result(2, "broken", 99.0, 1.0, "error")]
    assert rank(results) == "tok/s: 2 fast 40.5 › 1 slow 10.0 · TTFT: 1 slow 50 ms › 2 fast 120 ms"
    assert rank([result(0, "x", 1.0, 1.0, "stopped")]) == ""
