"""An embedding never holds an instance past its caller (issue 18, item 10): stopping the instance cancels a running
one, and a caller that stops waiting (timeout, Ctrl-C) cancels its job, so the next request runs at once."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from engines.adapters.fake import FakeEngine
from engines.errors import Cancelled, LlmTuiError
from engines.manager import EngineManager
from engines.types import ModelSpec

SPEC = ModelSpec("fake-model", format="fake", engines=("fake",))


@pytest.fixture
def manager() -> Iterator[EngineManager]:
    with EngineManager() as m:
        yield m


def test_stopping_the_instance_cancels_a_running_embedding(manager: EngineManager) -> None:
    gate = threading.Event()  # never set: the embedding would run for ever
    engine = FakeEngine(embed_gate=gate)
    run_id = manager.start(SPEC, engine=engine)
    manager.wait_ready(run_id, 10)
    raised: list[BaseException] = []

    def embed() -> None:
        try:
            manager.embed(run_id, ["a long text"], timeout=30)
        except BaseException as exc:
            raised.append(exc)

    caller = threading.Thread(target=embed)
    caller.start()
    assert engine.embed_started.wait(10)
    manager.stop(run_id, timeout=10)
    caller.join(10)
    gate.set()
    assert not caller.is_alive() and len(raised) == 1 and isinstance(raised[0], Cancelled)
    assert engine.embedded == 0


def test_a_caller_that_stops_waiting_cancels_its_embedding(manager: EngineManager) -> None:
    gate = threading.Event()
    engine = FakeEngine(embed_gate=gate)
    run_id = manager.start(SPEC, engine=engine)
    manager.wait_ready(run_id, 10)
    with pytest.raises(LlmTuiError, match="did not finish"):
        manager.embed(run_id, ["slow"], timeout=0.2)
    gate.set()  # the abandoned job was cancelled first: it ends without embedding anything
    job = manager.embed(run_id, ["next"], timeout=10)
    assert job.vectors is not None and engine.embedded == 1
