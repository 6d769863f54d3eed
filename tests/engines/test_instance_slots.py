"""The instance's slot loop over the fake engine's slots: admission while slots are free, the queue behind
them, and one request's cancel or failure leaving the others alone."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from engines.adapters.fake import FAIL_MARKER, FakeEngine
from engines.manager import EngineManager
from engines.requests import RequestHandle
from engines.types import ChatMessage, Delta, Done, Error, InstanceState, LaunchOptions, ModelSpec, Params

SPEC = ModelSpec(id="fake-model", format="fake")
WORDS = " ".join(f"w{i}" for i in range(12))


def ask(text: str) -> list[ChatMessage]:
    return [ChatMessage("user", text)]


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


@pytest.fixture
def manager() -> EngineManager:
    with EngineManager() as mgr:
        yield mgr


def start(manager: EngineManager, engine: FakeEngine, parallel: int) -> str:
    return manager.start(SPEC, LaunchOptions(parallel=parallel), engine)


def test_requests_share_the_batch_up_to_the_slots_and_the_rest_wait(manager: EngineManager) -> None:
    gate = threading.Event()
    engine = FakeEngine(reply=WORDS, gate=gate)
    run_id = start(manager, engine, parallel=2)
    handles = [manager.submit(run_id, ask(f"q{i}")) for i in range(3)]
    wait_for(lambda: manager.info(run_id).slots_busy == 2)
    info = manager.info(run_id)
    assert (info.slots, info.slots_busy, info.pending_requests, info.queued) == (2, 2, 3, 1)
    assert info.state is InstanceState.BUSY
    gate.set()
    results = [h.result() for h in handles]
    assert [r.text for r in results] == [WORDS] * 3
    assert all(r.done is not None and r.done.finish_reason == "stop" and r.done.metrics for r in results)
    slots = engine.batcher()
    assert slots is not None and slots.widest == 2  # never more than two at once, and two did run together
    info = manager.info(run_id)
    assert (info.state, info.slots_busy, info.pending_requests, info.requests_served) == (InstanceState.READY, 0, 0, 3)


def test_interleaved_tokens_reach_each_request_in_order(manager: EngineManager) -> None:
    run_id = start(manager, FakeEngine(), parallel=4)
    seen: dict[int, list[str]] = {i: [] for i in range(4)}

    def sink_for(i: int) -> Callable[[object], None]:
        def sink(event: object) -> None:
            if isinstance(event, Delta):
                seen[i].append(event.text)

        return sink

    handles: list[RequestHandle] = []
    for i in range(4):
        handles.append(manager.submit(run_id, ask(f"number {i} " + "x " * 20), sink=sink_for(i)))
    for h in handles:
        assert h.wait(10)
    for i in range(4):
        assert "".join(seen[i]) == f"Echo: number {i} " + "x " * 20


def test_cancelling_one_request_leaves_the_others_running(manager: EngineManager) -> None:
    engine = FakeEngine(reply=WORDS, token_delay_s=0.01)
    run_id = start(manager, engine, parallel=3)
    handles = [manager.submit(run_id, ask(f"q{i}")) for i in range(3)]
    wait_for(lambda: manager.info(run_id).slots_busy == 3)
    handles[1].cancel()
    results = [h.result() for h in handles]
    assert results[1].done is not None and results[1].done.finish_reason == "cancelled"
    assert results[0].text == results[2].text == WORDS


def test_a_failing_request_ends_alone(manager: EngineManager) -> None:
    run_id = start(manager, FakeEngine(token_delay_s=0.002), parallel=2)
    bad = manager.submit(run_id, ask(f"{FAIL_MARKER} one two three four"))
    good = manager.submit(run_id, ask("one two three four five six"))
    failed, fine = bad.result(), good.result()
    assert failed.error is not None and "failure after two tokens" in failed.error.message
    assert failed.text  # what came before the failure is delivered
    assert fine.text == "Echo: one two three four five six" and fine.done is not None
    assert manager.info(run_id).state is InstanceState.READY


def test_a_request_refused_at_admission_ends_alone(manager: EngineManager) -> None:
    class Refusing(FakeEngine):
        def chat(self, messages, params, cancel, session=None):  # type: ignore[no-untyped-def]
            if "refuse" in messages[-1].content:
                raise ValueError("refused at once")
            return super().chat(messages, params, cancel, session)

    run_id = start(manager, Refusing(reply=WORDS), parallel=2)
    refused = manager.submit(run_id, ask("refuse me"))
    fine = manager.submit(run_id, ask("hello"))
    error = refused.result().error
    assert error is not None and "refused at once" in error.message
    assert fine.result().text == WORDS


def test_stop_cancels_running_slots_and_drains_the_queue(manager: EngineManager) -> None:
    engine = FakeEngine(reply=WORDS, token_delay_s=0.05)
    run_id = start(manager, engine, parallel=2)
    handles = [manager.submit(run_id, ask(f"q{i}")) for i in range(4)]
    wait_for(lambda: manager.info(run_id).slots_busy == 2)
    manager.stop(run_id, timeout=10)
    finals = [h.result() for h in handles]
    assert [f.done.finish_reason for f in finals[:2] if f.done] == ["cancelled", "cancelled"]
    assert all(f.error is not None and f.error.kind == "stopped" for f in finals[2:])


def test_a_job_runs_between_steps(manager: EngineManager) -> None:
    engine = FakeEngine(reply=WORDS, token_delay_s=0.01)
    run_id = start(manager, engine, parallel=2)
    chat = manager.submit(run_id, ask("hello"))
    wait_for(lambda: manager.info(run_id).slots_busy == 1)
    job = manager.embed(run_id, ["abc"], timeout=10)
    assert job.error is None and job.vectors is not None
    assert not chat.finished  # the embedding did not wait for the reply to end
    assert chat.result().text == WORDS


def test_params_stay_per_request(manager: EngineManager) -> None:
    run_id = start(manager, FakeEngine(reply=WORDS), parallel=3)
    short = manager.submit(run_id, ask("a"), Params(max_tokens=3))
    stopped = manager.submit(run_id, ask("b"), Params(stop=("w5",)))
    whole = manager.submit(run_id, ask("c"))
    cut = short.result()
    assert cut.text == "w0 w1 w2" and cut.done is not None and cut.done.finish_reason == "length"
    assert stopped.result().text == "w0 w1 w2 w3 w4 "
    assert whole.result().text == WORDS


def test_one_slot_runs_requests_one_by_one() -> None:
    engine = FakeEngine(reply="a b")
    with EngineManager() as mgr:
        run_id = mgr.start(SPEC, LaunchOptions(parallel=1), engine)
        assert engine.batcher() is None
        info = mgr.info(run_id)
        assert (info.slots, info.slots_busy, info.queued) == (1, 0, 0)
        assert mgr.submit(run_id, ask("x")).result().text == "a b"


def test_errors_are_events_not_exceptions(manager: EngineManager) -> None:
    run_id = start(manager, FakeEngine(reply=WORDS), parallel=2)
    handle = manager.submit(run_id, ask(f"{FAIL_MARKER} a b c"))
    events = list(handle)
    assert isinstance(events[-1], Error) and not any(isinstance(e, Done) for e in events)
