"""EngineManager.submit_score / score through a real instance of the fake engine: results in order, progress,
cancel between prompts, refusals; and the fake's own `<<X>>` rule that evaluation tests rely on."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from typing import ClassVar

import pytest

from engines.adapters.fake import FakeEngine, fake_scores
from engines.errors import BadRequest, Cancelled, CapabilityNotSupported
from engines.manager import EngineManager
from engines.requests import ScoreJob
from engines.types import Capability, Delta, LaunchOptions, ModelSpec, Params

SPEC = ModelSpec(id="fake-score")
LETTERS = (" A", " B", " C", " D")
SHOT = "Shot? <<D>>\nA. a\nB. b\nC. c\nD. d\nAnswer: D\n\n"
ITEMS = [
    (SHOT + "First? <<B>>\nA. a\nB. b\nC. c\nD. d\nAnswer:", LETTERS),
    (SHOT + "Second?\nA. a\nB. b\nAnswer:", (" A", " B")),
    (SHOT + "Third? <<C>>\nA. a\nB. b\nC. c\nAnswer:", (" A", " B", " C")),
]


@pytest.fixture
def manager() -> Iterator[EngineManager]:
    with EngineManager() as mgr:
        yield mgr


def test_fake_rule() -> None:
    assert fake_scores(ITEMS[0][0], LETTERS) == [-3.0, -0.1, -3.0, -3.0]  # the shot's <<D>> does not count
    plain = fake_scores(ITEMS[1][0], (" A", " B"))
    assert plain == [math.log(0.5) + 0.01, math.log(0.5)]
    engine = FakeEngine()
    engine.load(SPEC, LaunchOptions())
    for prompt, letter in ((ITEMS[0][0], " B"), (ITEMS[1][0], " A")):
        events = list(engine.complete(prompt, Params(), threading.Event()))
        assert "".join(e.text for e in events if isinstance(e, Delta)) == letter
    assert "Echo:" in "".join(
        e.text for e in engine.complete("Hello", Params(), threading.Event()) if isinstance(e, Delta)
    )


def test_scores_arrive_in_order_with_progress(manager: EngineManager) -> None:
    engine = FakeEngine()
    run_id = manager.start(SPEC, engine=engine)
    heard: list[int] = []
    finished = threading.Event()
    job = manager.submit_score(run_id, ITEMS, progress=heard.append, notify=finished.set)
    assert isinstance(job, ScoreJob)
    assert job.result(10) == [fake_scores(p, c) for p, c in ITEMS]
    assert finished.is_set() and heard == [1, 2, 3]
    assert engine.scored == [(p, tuple(c)) for p, c in ITEMS]
    assert manager.score(run_id, ITEMS[:1]) == [[-3.0, -0.1, -3.0, -3.0]]


def test_cancel_between_prompts(manager: EngineManager) -> None:
    engine = FakeEngine()
    run_id = manager.start(SPEC, engine=engine)
    jobs: list[ScoreJob] = []

    def stop_after_first(done: int) -> None:
        if done == 1:
            jobs[0].cancel()

    jobs.append(manager.submit_score(run_id, ITEMS, progress=stop_after_first))
    with pytest.raises(Cancelled):
        jobs[0].result(10)
    assert len(jobs[0].scores) == 1 and len(engine.scored) == 1


def test_cancel_while_a_prompt_waits(manager: EngineManager) -> None:
    engine = FakeEngine()
    engine.score_gate = threading.Event()  # never set: only cancel ends the wait
    run_id = manager.start(SPEC, engine=engine)
    job = manager.submit_score(run_id, ITEMS)
    job.cancel()
    with pytest.raises(Cancelled):
        job.result(10)
    assert engine.scored == []
    engine.score_gate = None
    assert manager.score(run_id, ITEMS[1:2]) == [fake_scores(*ITEMS[1])]  # the instance serves on


def test_refusals(manager: EngineManager) -> None:
    class NoScore(FakeEngine):
        capabilities: ClassVar[Capability] = FakeEngine.capabilities & ~Capability.SCORE

    plain = manager.start(SPEC, engine=NoScore())
    with pytest.raises(CapabilityNotSupported, match="fake engine does not support score"):
        manager.submit_score(plain, ITEMS)
    scorer = manager.start(ModelSpec(id="fake-score-2"), engine=FakeEngine())
    with pytest.raises(BadRequest, match="at least one prompt"):
        manager.submit_score(scorer, [])
    with pytest.raises(BadRequest, match="at least one continuation"):
        manager.submit_score(scorer, [(ITEMS[0][0], ())])
