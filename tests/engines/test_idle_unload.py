"""Idle unload, last use and footprint in InstanceInfo: the manager over the fake engine with a scripted clock."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from engines.adapters.fake import FakeEngine
from engines.errors import InstanceNotFound
from engines.footprint import MemoryChanges, ProcessMemory, measure
from engines.manager import EngineManager
from engines.types import ChatMessage, InstanceInfo, InstanceState, LaunchOptions, ModelSpec

SPEC = ModelSpec(id="fake-model", format="fake")
ASK = [ChatMessage("user", "hi")]
MIB = 1 << 20


class Clock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def stopped() -> list[InstanceInfo]:
    return []


@pytest.fixture
def manager(clock: Clock, stopped: list[InstanceInfo]) -> Iterator[EngineManager]:
    with EngineManager(idle_clock=clock, reap_interval_s=None, on_stopped=stopped.append) as mgr:
        yield mgr


def idle_after(seconds: float) -> LaunchOptions:
    return LaunchOptions(n_ctx=512, idle_unload_s=seconds)


def test_an_idle_instance_is_unloaded_after_its_timeout(
    manager: EngineManager, clock: Clock, stopped: list[InstanceInfo]
) -> None:
    engine = FakeEngine()
    run_id = manager.start(SPEC, idle_after(300), engine=engine)
    clock.now += 299
    assert manager.reap_idle() == []
    info = manager.info(run_id)
    assert info.idle and info.idle_s == pytest.approx(299)
    clock.now += 1
    assert manager.reap_idle() == [run_id]
    assert engine.spec is None  # unloaded
    assert manager.instances() == []
    with pytest.raises(InstanceNotFound):
        manager.info(run_id)
    (gone,) = manager.stopped()
    assert gone.run_id == run_id and gone.state is InstanceState.STOPPED
    assert gone.stop_reason == "idle for 300 s"
    assert stopped == [gone]


def test_a_busy_instance_is_not_unloaded(manager: EngineManager, clock: Clock) -> None:
    gate = threading.Event()
    engine = FakeEngine(gate=gate)
    run_id = manager.start(SPEC, idle_after(60), engine=engine)
    running = manager.submit(run_id, ASK)
    queued = manager.submit(run_id, ASK)
    assert engine.started.wait(10)
    clock.now += 3600
    assert manager.reap_idle() == []
    info = manager.info(run_id)
    assert info.state is InstanceState.BUSY and info.pending_requests == 2 and info.idle_s == 0
    assert not manager.stop_if_idle(run_id, reason="make room")
    gate.set()
    assert running.result().text == "Echo: hi" and queued.result().text == "Echo: hi"
    # Idle time counts from when the last request finished, not from the load.
    info = manager.info(run_id)
    assert info.idle and info.pending_requests == 0 and info.idle_s == 0
    clock.now += 59
    assert manager.reap_idle() == []
    clock.now += 1
    assert manager.reap_idle() == [run_id]


def test_a_submit_counts_as_use(manager: EngineManager, clock: Clock) -> None:
    run_id = manager.start(SPEC, idle_after(100), engine=FakeEngine())
    clock.now += 90
    manager.submit(run_id, ASK).result()
    clock.now += 90
    assert manager.reap_idle() == []
    assert manager.info(run_id).requests_served == 1


def test_without_idle_unload_s_an_instance_stays(manager: EngineManager, clock: Clock) -> None:
    run_id = manager.start(SPEC, LaunchOptions(), engine=FakeEngine())
    clock.now += 10**7
    assert manager.reap_idle() == []
    assert manager.info(run_id).idle_s == pytest.approx(10**7)


def test_info_carries_options_timing_and_footprint(manager: EngineManager) -> None:
    options = LaunchOptions(n_ctx=777, n_gpu_layers=3, idle_unload_s=42.0)
    run_id = manager.start(SPEC, options, engine=FakeEngine(ram_bytes=64 * MIB))
    info = manager.info(run_id)
    assert info.options == options
    assert info.load_s is not None and info.load_s >= 0
    assert info.last_used_at >= info.started_at
    assert info.stop_reason is None
    # The engine declares 64 MiB; the RSS delta of a fake load is tiny, so the declared figure stands.
    assert info.footprint.ram_bytes is not None and info.footprint.ram_bytes >= 64 * MIB
    assert info.footprint.measured_ram_bytes is not None
    assert info.footprint.measured_ram_bytes < 64 * MIB


def test_a_stop_records_its_reason(manager: EngineManager, stopped: list[InstanceInfo]) -> None:
    run_id = manager.start(SPEC, engine=FakeEngine())
    manager.stop(run_id, reason="closed by the user")
    assert [(i.run_id, i.stop_reason) for i in stopped] == [(run_id, "closed by the user")]
    with pytest.raises(InstanceNotFound):
        manager.submit(run_id, ASK)
    assert manager.stopped()[-1].state is InstanceState.STOPPED


def test_requests_queued_when_a_stop_begins_are_answered(manager: EngineManager) -> None:
    gate = threading.Event()
    engine = FakeEngine(gate=gate)
    run_id = manager.start(SPEC, engine=engine)
    first = manager.submit(run_id, ASK)
    assert engine.started.wait(10)
    later = manager.submit(run_id, ASK)
    manager.stop(run_id, timeout=10)
    assert first.result().done is not None
    late = later.result()
    assert late.error is not None and late.error.kind == "stopped"


def test_the_reaper_thread_unloads_on_its_own() -> None:
    gone = threading.Event()
    reasons: list[str | None] = []

    def heard(info: InstanceInfo) -> None:
        reasons.append(info.stop_reason)
        gone.set()

    with EngineManager(reap_interval_s=0.02, on_stopped=heard) as mgr:
        run_id = mgr.start(SPEC, LaunchOptions(idle_unload_s=0.05), engine=FakeEngine())
        assert gone.wait(10)
        assert reasons == ["idle for 0.05 s"]
        assert run_id not in [i.run_id for i in mgr.instances()]


def test_a_listener_that_raises_does_not_break_the_stop(manager: EngineManager, clock: Clock) -> None:
    def broken(info: InstanceInfo) -> None:
        raise RuntimeError("listener broke")

    manager.on_stopped = broken
    run_id = manager.start(SPEC, idle_after(1), engine=FakeEngine())
    clock.now += 2
    assert manager.reap_idle() == [run_id]
    assert manager.instances() == []


def test_overlapping_loads_are_not_measured() -> None:
    changes = MemoryChanges()
    a = changes.begin()
    assert changes.end(a) is False
    a = changes.begin()
    b = changes.begin()
    assert changes.end(b) is True and changes.end(a) is True
    readings = iter([ProcessMemory(100, 40), ProcessMemory(350, 290)])
    growth = measure(lambda: None, read=lambda: next(readings))
    assert (growth.rss_bytes, growth.mapped_bytes) == (250, 250)
