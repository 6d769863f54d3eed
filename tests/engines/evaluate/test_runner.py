"""run_eval on the fake engine, whose `<<X>>` marker rule (in the prompt's last question) makes answers known:
log-likelihood and generation, progress, cancel, prompts too long for the context, a server without logprobs."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import ClassVar

import pytest

from engines.adapters.fake import FakeEngine
from engines.errors import BadRequest, CapabilityNotSupported, ContextLengthExceeded
from engines.evaluate.prompts import CHOICE_TOKENS, build_prompt
from engines.evaluate.runner import parse_letter, run_eval, select_items
from engines.evaluate.types import EvalItem, EvalOptions, EvalProgress, EvalSet, Method
from engines.manager import EngineManager
from engines.types import Capability, ModelSpec

SPEC = ModelSpec(id="fake-eval")


def item(subject: str, index: int, question: str, answer: str, n: int = 4) -> EvalItem:
    choices = tuple(f"choice {k}" for k in range(n))
    return EvalItem(subject, index, question, choices, answer, f"{subject}_test.csv:{index + 1}")


def marked_set(n: int = 20) -> EvalSet:
    """n items over two subjects; the even ones carry the right marker, the odd ones a wrong one: 50 % exactly."""
    items = []
    for i in range(n):
        subject = "astro" if i < n // 2 else "law"
        answer = "ABCD"[(i // 2) % 4]
        shown = answer if i % 2 == 0 else "ABCD"[("ABCD".index(answer) + 1) % 4]
        items.append(item(subject, i if i < n // 2 else i - n // 2, f"Question {i}? <<{shown}>>", answer))
    dev = {s: tuple(item(s, k, f"Shot {k}? <<D>>", "D") for k in range(5)) for s in ("astro", "law")}
    return EvalSet("marked", tuple(items), dev, sha256="f" * 64)


def expected_predictions(data: EvalSet) -> list[str]:
    return [q.question.split("<<")[1][0] for q in data.test]


@pytest.fixture
def manager() -> Iterator[EngineManager]:
    with EngineManager() as mgr:
        yield mgr


def start(manager: EngineManager, engine: FakeEngine | None = None) -> str:
    return manager.start(SPEC, engine=engine or FakeEngine())


@pytest.mark.parametrize("method", [None, Method.LOGLIK, Method.GENERATE])
def test_half_marked_right_gives_half_accuracy(manager: EngineManager, method: Method | None) -> None:
    data = marked_set()
    report = run_eval(manager, start(manager), data, EvalOptions(shots=3, method=method))
    assert report.method is (method or Method.LOGLIK)
    assert [r.predicted for r in report.items] == expected_predictions(data)
    assert report.overall.items == 20 and report.overall.correct == 10 and report.overall.accuracy == 0.5
    assert [(s.subject, s.correct, s.items) for s in report.subjects] == [("astro", 5, 10), ("law", 5, 10)]
    assert report.model == "fake-eval" and report.engine == "fake" and report.data_sha256 == "f" * 64
    assert report.state == "finished" and report.items_per_s == pytest.approx(20 / report.elapsed_s)
    if report.method is Method.LOGLIK:
        first = report.items[0].scores
        assert first is not None and first[0] == pytest.approx(-0.1) and first[1] == pytest.approx(-3.0)
    else:
        assert report.items[0].scores is None


def test_generation_by_chat_when_the_engine_cannot_complete(manager: EngineManager) -> None:
    class ChatOnly(FakeEngine):
        capabilities: ClassVar[Capability] = FakeEngine.capabilities & ~Capability.COMPLETION

    engine = ChatOnly()
    data = marked_set(8)
    report = run_eval(manager, start(manager, engine), data, EvalOptions(shots=2, method=Method.GENERATE))
    assert [r.predicted for r in report.items] == expected_predictions(data)
    assert len(engine.calls) == 8 and engine.calls[0][0].content == build_prompt(data.test[0], data.dev["astro"][:2])
    assert all(p.temperature == 0.0 and p.max_tokens is not None and p.max_tokens <= 8 for p in engine.params)


def test_limit_subjects_and_unknown_subject(manager: EngineManager) -> None:
    data = marked_set()
    report = run_eval(manager, start(manager), data, EvalOptions(shots=0, limit=3, subjects=("law",)))
    assert [(r.subject, r.index) for r in report.items] == [("law", 0), ("law", 1), ("law", 2)]
    assert report.limit == 3 and report.shots == 0
    with pytest.raises(BadRequest, match="no subject nope in marked; it has astro, law"):
        select_items(data, EvalOptions(subjects=("nope",)))


def test_progress_is_throttled_and_ends_with_the_last(manager: EngineManager) -> None:
    seen: list[EvalProgress] = []
    data = marked_set()
    report = run_eval(manager, start(manager), data, EvalOptions(shots=1), progress=seen.append)
    assert seen[-1].done == 20 and seen[-1].total == 20 and seen[-1].correct == 10 and seen[-1].subject == "law"
    assert len(seen) <= report.elapsed_s / 0.25 + 2
    assert [p.done for p in seen] == sorted(p.done for p in seen)


def test_cancel_keeps_the_items_done(manager: EngineManager) -> None:
    cancel = threading.Event()
    data = marked_set(40)

    def stop_at_first(p: EvalProgress) -> None:
        cancel.set()

    report = run_eval(manager, start(manager), data, EvalOptions(shots=1), progress=stop_at_first, cancel=cancel)
    assert report.state == "cancelled"
    assert 1 <= len(report.items) < 40
    assert [r.predicted for r in report.items] == expected_predictions(data)[: len(report.items)]
    assert report.overall.items == len(report.items)


class ShortContext(FakeEngine):
    """Scores like the fake, but refuses a prompt longer than `limit` characters, as llama.cpp does."""

    capabilities: ClassVar[Capability] = FakeEngine.capabilities | Capability.SCORE

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.accepted: list[str] = []

    def score_choices(self, prompt: str, choices: Sequence[str], cancel: threading.Event) -> list[float]:
        if len(prompt) > self.limit:
            raise ContextLengthExceeded(f"{len(prompt)} characters do not fit {self.limit}")
        self.accepted.append(prompt)
        return super().score_choices(prompt, choices, cancel)


def test_a_prompt_too_long_drops_shots_until_it_fits(manager: EngineManager) -> None:
    data = marked_set(8)
    long_item = item("astro", 4, "Long? " + "x" * 600 + " <<B>>", "B")
    data = EvalSet(data.name, (*data.test[:4], long_item, *data.test[5:]), data.dev)
    two_shots = len(build_prompt(data.test[0], data.dev["astro"][:2]))
    engine = ShortContext(limit=two_shots + 5)  # 5 shots never fit, 2 do; the long item never fits
    report = run_eval(manager, start(manager, engine), data, EvalOptions(shots=5))
    predictions = [r.predicted for r in report.items]
    expected = expected_predictions(data)
    expected[4] = None  # type: ignore[call-overload]
    assert predictions == expected
    assert report.items[4].scores is None and not report.items[4].correct
    assert report.state == "finished" and len(report.items) == 8
    assert engine.accepted[0] == build_prompt(data.test[0], data.dev["astro"][:2])
    assert "8 item(s) ran with fewer shots" in report.notes[0] and "astro #4 (did not fit)" in report.notes[0]
    assert "astro #0 (2 shots)" in report.notes[0]


def test_no_logprobs_at_run_time_switches_to_generation(manager: EngineManager) -> None:
    class NoLogprobs(FakeEngine):
        capabilities: ClassVar[Capability] = FakeEngine.capabilities | Capability.SCORE

        def score_choices(self, prompt: str, choices: Sequence[str], cancel: threading.Event) -> list[float]:
            raise CapabilityNotSupported(self.name, "log-probabilities (the server returned none)")

    data = marked_set(8)
    report = run_eval(manager, start(manager, NoLogprobs()), data, EvalOptions(shots=1))
    assert report.method is Method.GENERATE
    assert [r.predicted for r in report.items] == expected_predictions(data)
    assert "no log-probabilities after 0 item(s): the other 8 were answered by generation" in report.notes[0]


def test_loglik_refused_where_the_engine_cannot_score(manager: EngineManager) -> None:
    class NoScore(FakeEngine):
        capabilities: ClassVar[Capability] = FakeEngine.capabilities & ~Capability.SCORE

    run_id = start(manager, NoScore())
    with pytest.raises(CapabilityNotSupported):
        run_eval(manager, run_id, marked_set(4), EvalOptions(method=Method.LOGLIK))
    assert run_eval(manager, run_id, marked_set(4), EvalOptions()).method is Method.GENERATE


def test_choice_tokens_and_letter_parsing() -> None:
    assert CHOICE_TOKENS(4) == (" A", " B", " C", " D")
    assert [parse_letter(t) for t in (" B", '"C"', "**D**", "Answer: A.", "none", "")] == [
        "B",
        "C",
        "D",
        "A",
        None,
        None,
    ]
