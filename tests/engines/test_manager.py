"""EngineManager over the fake engine: queueing, cancellation, errors, metrics."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from engines.adapters.fake import FAIL_MARKER, FakeEngine
from engines.errors import (
    BadModelFile,
    BadRequest,
    EngineUnavailable,
    InstanceNotFound,
    InstanceNotReady,
)
from engines.manager import Coalescing, EngineManager
from engines.types import ChatMessage, Delta, Done, Error, InstanceState, ModelSpec, Params, StreamEvent

SPEC = ModelSpec(id="fake-model", format="fake")


def ask(text: str) -> list[ChatMessage]:
    return [ChatMessage("user", text)]


@pytest.fixture
def manager() -> EngineManager:
    with EngineManager() as mgr:
        yield mgr


def test_reply_streams_and_ends_with_metrics(manager: EngineManager) -> None:
    run_id = manager.start(SPEC, engine=FakeEngine())
    result = manager.submit(run_id, ask("hello there")).result()
    assert result.text == "Echo: hello there"
    assert result.done is not None and result.done.finish_reason == "stop"
    assert result.done.usage.completion_tokens == 3
    metrics = result.done.metrics
    assert metrics is not None and metrics.ttft_ms >= 0 and metrics.total_ms >= metrics.ttft_ms
    info = manager.info(run_id)
    assert info.state is InstanceState.READY and info.requests_served == 1


def test_first_delta_is_not_held_back_by_coalescing() -> None:
    # Even with an hour-long coalescing window the first token arrives alone,
    # and the rest arrive (flushed at the end) without loss.
    with EngineManager(coalescing=Coalescing(interval_s=3600, max_chars=10**9)) as mgr:
        run_id = mgr.start(SPEC, engine=FakeEngine(reply="a b c d"))
        events = list(mgr.submit(run_id, ask("x")))
    deltas = [e.text for e in events if isinstance(e, Delta)]
    assert deltas == ["a", " b c d"]
    assert isinstance(events[-1], Done)


def test_coalescing_by_size_splits_long_replies() -> None:
    words = " ".join(f"w{i:03d}" for i in range(200))
    with EngineManager(coalescing=Coalescing(interval_s=3600, max_chars=100)) as mgr:
        run_id = mgr.start(SPEC, engine=FakeEngine(reply=words))
        events = list(mgr.submit(run_id, ask("x")))
    deltas = [e.text for e in events if isinstance(e, Delta)]
    assert "".join(deltas) == words
    assert all(len(d) <= 100 + 5 for d in deltas)
    assert len(deltas) > 5


class Overlap(FakeEngine):
    """The fake engine, logging when each reply starts and ends, so a test can see whether two ever overlapped."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.log: list[str] = []

    def chat(
        self, messages: Sequence[ChatMessage], params: Params, cancel: threading.Event, session: str | None = None
    ) -> Iterator[StreamEvent]:
        said = messages[-1].content
        self.log.append(f"start {said}")
        try:
            yield from super().chat(messages, params, cancel, session)
        finally:
            self.log.append(f"end {said}")


def test_two_requests_queue_on_one_instance(manager: EngineManager) -> None:
    gate = threading.Event()
    engine = Overlap(gate=gate)
    run_id = manager.start(SPEC, engine=engine)
    first = manager.submit(run_id, ask("one"))
    second = manager.submit(run_id, ask("two"))
    # The worker holds the first request at the gate; the second waits its turn.
    assert engine.started.wait(10)
    info = manager.info(run_id)
    assert info.state is InstanceState.BUSY and info.pending_requests == 2
    gate.set()
    assert first.result().text == "Echo: one"
    second_result = second.result()
    assert second_result.text == "Echo: two"
    assert second_result.done is not None and second_result.done.metrics is not None
    assert second_result.done.metrics.queue_ms > 0
    # One at a time: the second reply started only after the first had ended (the log is complete once both
    # results are in, with no wait on the clock).
    assert engine.log == ["start one", "end one", "start two", "end two"]


def test_cancel_mid_stream_stops_within_one_token(manager: EngineManager) -> None:
    reply = " ".join(["tok"] * 1000)
    run_id = manager.start(SPEC, engine=FakeEngine(reply=reply, token_delay_s=0.005))
    handle = manager.submit(run_id, ask("long"))
    received = []
    for event in handle:
        received.append(event)
        if len(received) == 1:
            handle.cancel()
    done = received[-1]
    assert isinstance(done, Done) and done.finish_reason == "cancelled"
    assert done.usage.completion_tokens <= 2
    # The instance serves the next request normally.
    after = manager.submit(run_id, ask("next"), Params(max_tokens=2)).result()
    assert after.text == "tok tok" and after.done is not None and after.done.finish_reason == "length"


def test_cancel_of_queued_request_never_runs_it(manager: EngineManager) -> None:
    gate = threading.Event()
    engine = FakeEngine(gate=gate)
    run_id = manager.start(SPEC, engine=engine)
    first = manager.submit(run_id, ask("one"))
    queued = manager.submit(run_id, ask("two"))
    queued.cancel()
    gate.set()
    first.result()
    result = queued.result()
    assert result.done is not None and result.done.finish_reason == "cancelled"
    assert len(engine.calls) == 1


def test_engine_error_reaches_caller_as_event_and_instance_survives(manager: EngineManager) -> None:
    run_id = manager.start(SPEC, engine=FakeEngine())
    result = manager.submit(run_id, ask(f"please {FAIL_MARKER} now")).result()
    assert result.error is not None
    assert "fake engine failure" in result.error.message
    assert result.text == "Echo: please"  # text before the failure is kept
    assert manager.info(run_id).state is InstanceState.READY
    assert manager.submit(run_id, ask("again")).result().text == "Echo: again"


def test_load_failure_is_raised_and_listed(manager: EngineManager, tmp_path: Path) -> None:
    missing = ModelSpec(id="gone", path=tmp_path / "missing.gguf")
    with pytest.raises(BadModelFile, match="does not exist"):
        manager.start(missing, engine=FakeEngine())
    (info,) = manager.instances()
    assert info.state is InstanceState.ERROR and "does not exist" in (info.error or "")
    with pytest.raises(InstanceNotReady, match="error"):
        manager.submit(info.run_id, ask("hi"))


def test_load_without_wait_reports_loading_then_ready(manager: EngineManager) -> None:
    run_id = manager.start(SPEC, engine=FakeEngine(), wait=False)
    assert manager.info(run_id).state in (InstanceState.LOADING, InstanceState.READY)
    assert manager.wait_ready(run_id, timeout=10).state is InstanceState.READY


def test_stop_cancels_current_and_queued_then_forgets(manager: EngineManager) -> None:
    gate = threading.Event()
    engine = FakeEngine(gate=gate)
    run_id = manager.start(SPEC, engine=engine)
    running = manager.submit(run_id, ask("one"))
    queued = manager.submit(run_id, ask("two"))
    assert engine.started.wait(10)  # the first request is running, held at the gate
    manager.stop(run_id, timeout=10)
    running_result = running.result()
    assert running_result.done is not None and running_result.done.finish_reason == "cancelled"
    queued_result = queued.result()
    assert queued_result.error is not None and queued_result.error.kind == "stopped"
    assert engine.spec is None  # unloaded
    with pytest.raises(InstanceNotFound):
        manager.info(run_id)


def test_sink_receives_events_on_worker_thread(manager: EngineManager) -> None:
    run_id = manager.start(SPEC, engine=FakeEngine(reply="x y"))
    seen: list[tuple[object, str]] = []
    handle = manager.submit(run_id, ask("q"), sink=lambda e: seen.append((e, threading.current_thread().name)))
    assert handle.wait(10)
    assert isinstance(seen[-1][0], Done)
    assert all(name == f"instance-{run_id}" for _, name in seen)
    with pytest.raises(Exception, match="sink"):
        list(handle)


def test_max_tokens_and_stop_sequences(manager: EngineManager) -> None:
    run_id = manager.start(SPEC, engine=FakeEngine(reply="one two three four five"))
    limited = manager.submit(run_id, ask("q"), Params(max_tokens=2)).result()
    assert limited.text == "one two" and limited.done is not None and limited.done.finish_reason == "length"
    stopped = manager.submit(run_id, ask("q"), Params(stop=("thr",))).result()
    assert stopped.text == "one two " and stopped.done is not None and stopped.done.finish_reason == "stop"


def test_bad_params_are_refused_before_queueing(manager: EngineManager) -> None:
    run_id = manager.start(SPEC, engine=FakeEngine())
    with pytest.raises(BadRequest, match="temperature"):
        manager.submit(run_id, ask("q"), Params(temperature=-1))
    with pytest.raises(BadRequest, match="max_tokens"):
        manager.submit(run_id, ask("q"), Params(max_tokens=0))


def test_unknown_run_id_and_unknown_engine(manager: EngineManager) -> None:
    with pytest.raises(InstanceNotFound):
        manager.submit("nope", ask("q"))
    with pytest.raises(EngineUnavailable, match="unknown engine"):
        manager.start(SPEC, engine="no-such-engine")


def test_sessions_are_passed_to_the_engine(manager: EngineManager) -> None:
    engine = FakeEngine()
    run_id = manager.start(SPEC, engine=engine)
    manager.submit(run_id, ask("a"), session="s1").result()
    manager.submit(run_id, ask("b"), session="s2").result()
    assert engine.sessions == ["s1", "s2"]


def test_errors_are_events_not_exceptions_for_iterators(manager: EngineManager) -> None:
    run_id = manager.start(SPEC, engine=FakeEngine())
    events = list(manager.submit(run_id, ask(FAIL_MARKER + " a b c")))
    assert isinstance(events[-1], Error)


def test_a_sink_that_raises_does_not_kill_the_worker(manager: EngineManager) -> None:
    run_id = manager.start(SPEC, engine=FakeEngine(reply="a b"))

    def broken(event: object) -> None:
        raise ValueError("receiver broke")

    handle = manager.submit(run_id, ask("q"), sink=broken)
    assert handle.wait(10)
    assert isinstance(handle.sink_error, ValueError)
    assert manager.submit(run_id, ask("again")).result().text == "a b"


def test_instance_is_ready_again_when_done_arrives(manager: EngineManager) -> None:
    run_id = manager.start(SPEC, engine=FakeEngine(reply="a b"))
    states: list[InstanceState] = []

    def sink(event: object) -> None:
        if isinstance(event, Done):
            states.append(manager.info(run_id).state)

    assert manager.submit(run_id, ask("q"), sink=sink).wait(10)
    assert states == [InstanceState.READY]
    assert manager.info(run_id).requests_served == 1


def test_embeddings_run_on_the_instance_worker_and_need_the_capability(manager: EngineManager) -> None:
    from engines.errors import BadRequest, CapabilityNotSupported
    from engines.types import Capability

    class NoEmbed(FakeEngine):
        capabilities = Capability.CHAT | Capability.STREAM

    run_id = manager.start(SPEC, engine=FakeEngine())
    manager.wait_ready(run_id, 10)
    job = manager.embed(run_id, ["ab", "b"])
    assert job.vectors is not None and [v[:2] for v in job.vectors] == [[1.0, 1.0], [0.0, 1.0]]
    assert job.elapsed_ms >= 0 and manager.info(run_id).requests_served == 1
    with pytest.raises(BadRequest, match="at least one text"):
        manager.embed(run_id, [])
    other = manager.start(SPEC, engine=NoEmbed())
    manager.wait_ready(other, 10)
    with pytest.raises(CapabilityNotSupported, match="the fake engine does not support embed"):
        manager.embed(other, ["x"])
