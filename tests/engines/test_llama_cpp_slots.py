"""llama.cpp slots against the real Gemma 3 270M GGUF: several requests in one batch, each with its own
params, stops, grammar, cancel and errors; prefix reuse per slot; prompt-lookup speculative decoding.

Greedy replies are compared token for token with the one-request engine. A lone request on fresh slots
computes exactly what it computes without slots (its log-probabilities equal to the bit). Beside other
sequences, the attention's F16 sums run over a wider KV view in another order: log-probabilities move by up
to 0.075 nats here (measured), and a greedy pick changes only where the model has a near-tie; these prompts
have none, so their batched replies are the lone ones.
"""

from __future__ import annotations

import importlib.util
import json
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

import engines.adapters.llama_cpp_slots as slots_module
from engines.adapters.llama_cpp import LlamaCppEngine
from engines.adapters.llama_cpp_slots import SlotScheduler
from engines.errors import ContextLengthExceeded
from engines.manager import EngineManager
from engines.requests import RequestHandle
from engines.templates.chat import load_builtin_template
from engines.types import (
    ChatMessage,
    Delta,
    Done,
    Error,
    LaunchOptions,
    ModelSpec,
    Params,
    StreamEvent,
    TokenLogprob,
)

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python missing"),
    pytest.mark.real_model,
]

N_CTX = 1024
GREEDY = Params(temperature=0, max_tokens=24)
QUESTIONS = ("Describe a cat.", "Write a poem about the sea.", "What is 2+2?", "Tell me about dogs.")
"""Prompts without a near-tie in their first tokens ("Name three colors." has one: its batched reply may differ)."""


def _spec(path: Path) -> ModelSpec:
    return ModelSpec(id="gemma-3-270m", path=path, chat_template=load_builtin_template("gemma3"))


def _load(path: Path, cache: Path, **options: object) -> LlamaCppEngine:
    engine = LlamaCppEngine(selftest_cache_dir=cache)
    engine.load(_spec(path), LaunchOptions(n_ctx=N_CTX, n_threads=2, **options))  # type: ignore[arg-type]
    return engine


@pytest.fixture(scope="module")
def alone(gemma_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaCppEngine]:
    """The one-request engine (no slots): the reference."""
    engine = _load(gemma_path, tmp_path_factory.mktemp("selftest"))
    yield engine
    engine.unload()


@pytest.fixture
def slotted(gemma_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaCppEngine]:
    """Four fresh slots (what other slots hold changes the attention's summing order, see the module doc)."""
    engine = _load(gemma_path, tmp_path_factory.mktemp("selftest"), parallel=4)
    yield engine
    engine.unload()


def ask(text: str) -> list[ChatMessage]:
    return [ChatMessage("user", text)]


def text_of(events: Sequence[StreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, Delta))


def reply(engine: LlamaCppEngine, messages: Sequence[ChatMessage], params: Params = GREEDY) -> tuple[str, Done]:
    """The reply of a new conversation, its prompt evaluated whole (a reused prefix changes the batches, and this
    base model's near-ties can then go the other way)."""
    if engine.batcher() is None:
        engine.clear_prompt_cache()
    events = list(engine.chat(messages, params, threading.Event()))
    done = events[-1]
    assert isinstance(done, Done), done
    return text_of(events), done


def scheduler(engine: LlamaCppEngine) -> SlotScheduler:
    batcher = engine.batcher()
    assert isinstance(batcher, SlotScheduler)
    return batcher


def batch(
    engine: LlamaCppEngine, requests: Sequence[tuple[Sequence[ChatMessage], Params]], *, cancel_after: int | None = None
) -> list[list[StreamEvent]]:
    """Admit every request at once and step until all have ended; with `cancel_after`, the second request is
    cancelled after that many steps."""
    slots = scheduler(engine)
    outputs: list[list[StreamEvent]] = [[] for _ in requests]
    handles = []
    for out, (messages, params) in zip(outputs, requests, strict=True):
        handle = RequestHandle("r", list(messages), params)
        slots.admit(handle, out.append)
        handles.append(handle)
    steps = 0
    while slots.busy_slots():
        slots.step()
        steps += 1
        if cancel_after is not None and steps == cancel_after:
            handles[1].cancel()
    return outputs


def test_a_lone_greedy_reply_is_the_same_with_slots_on_or_off(alone: LlamaCppEngine, slotted: LlamaCppEngine) -> None:
    params = Params(temperature=0, max_tokens=48)
    expected, done = reply(alone, ask(QUESTIONS[0]), params)
    got, got_done = reply(slotted, ask(QUESTIONS[0]), params)
    assert got == expected and got.strip()
    assert got_done.usage == done.usage and got_done.finish_reason == done.finish_reason


def test_a_raw_completion_through_a_slot_matches(alone: LlamaCppEngine, slotted: LlamaCppEngine) -> None:
    params = Params(temperature=0, max_tokens=16)
    expected = list(alone.complete("The capital of France is", params, threading.Event()))
    got = list(slotted.complete("The capital of France is", params, threading.Event()))
    assert text_of(got) == text_of(expected) and got[-1] == expected[-1]


def test_four_requests_in_one_batch_give_each_its_lone_reply(alone: LlamaCppEngine, slotted: LlamaCppEngine) -> None:
    outputs = batch(slotted, [(ask(q), GREEDY) for q in QUESTIONS])
    for question, events in zip(QUESTIONS, outputs, strict=True):
        expected, done = reply(alone, ask(question))
        assert text_of(events) == expected
        assert events[-1] == done


def test_params_and_stops_stay_per_slot(
    alone: LlamaCppEngine, slotted: LlamaCppEngine, gemma_path: Path, tmp_path: Path
) -> None:
    full, _ = reply(alone, ask(QUESTIONS[1]), Params(temperature=0, max_tokens=40))
    stop_word = full.split()[3]
    sampled = Params(temperature=0.9, seed=7, max_tokens=20)
    requests = [
        (ask(QUESTIONS[0]), Params(temperature=0, max_tokens=5)),
        (ask(QUESTIONS[1]), Params(temperature=0, max_tokens=40, stop=(stop_word,))),
        (ask(QUESTIONS[2]), sampled),
        (ask(QUESTIONS[3]), GREEDY),
    ]
    outputs = batch(slotted, requests)
    short, stopped, drawn, plain = outputs
    assert isinstance(short[-1], Done) and short[-1].finish_reason == "length"
    assert short[-1].usage.completion_tokens == 5
    assert isinstance(stopped[-1], Done) and stopped[-1].finish_reason == "stop"
    assert text_of(stopped) == full[: full.index(stop_word)]
    assert text_of(plain) == reply(alone, ask(QUESTIONS[3]))[0]
    # A seeded sampled slot draws the same reply again beside the same requests on fresh slots. (Beside other
    # ones, or over other cached cells, a draw that falls near a boundary between two tokens may go otherwise.)
    fresh = _load(gemma_path, tmp_path, parallel=4)
    try:
        again = batch(fresh, requests)
    finally:
        fresh.unload()
    assert text_of(again[2]) == text_of(drawn) and text_of(drawn)


def test_cancelling_one_slot_mid_batch_leaves_the_others(alone: LlamaCppEngine, slotted: LlamaCppEngine) -> None:
    outputs = batch(slotted, [(ask(q), GREEDY) for q in QUESTIONS[:3]], cancel_after=4)
    cancelled = outputs[1][-1]
    assert isinstance(cancelled, Done) and cancelled.finish_reason == "cancelled"
    assert 0 < cancelled.usage.completion_tokens < GREEDY.max_tokens  # type: ignore[operator]
    for i in (0, 2):
        assert text_of(outputs[i]) == reply(alone, ask(QUESTIONS[i]))[0]


def test_a_grammar_in_one_slot_and_none_in_another(alone: LlamaCppEngine, slotted: LlamaCppEngine) -> None:
    schema = {
        "type": "object",
        "properties": {"color": {"type": "string", "enum": ["red", "green", "blue"]}, "count": {"type": "integer"}},
        "required": ["color", "count"],
    }
    constrained = Params(temperature=0, max_tokens=40, json_schema=json.dumps(schema))
    outputs = batch(slotted, [(ask("Pick a color as JSON."), constrained), (ask(QUESTIONS[3]), GREEDY)])
    value = json.loads(text_of(outputs[0]))
    assert value["color"] in ("red", "green", "blue") and isinstance(value["count"], int)
    assert text_of(outputs[1]) == reply(alone, ask(QUESTIONS[3]))[0]


def test_an_error_in_one_request_ends_only_that_request(
    alone: LlamaCppEngine, slotted: LlamaCppEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: object) -> None:
        raise RuntimeError("log-softmax exploded")

    monkeypatch.setattr(slots_module, "token_logprob", broken)  # only the request asking for logprobs calls it
    outputs = batch(
        slotted, [(ask(QUESTIONS[0]), Params(temperature=0, max_tokens=8, logprobs=2)), (ask(QUESTIONS[2]), GREEDY)]
    )
    failed = outputs[0][-1]
    assert isinstance(failed, Error) and "log-softmax exploded" in failed.message
    assert text_of(outputs[1]) == reply(alone, ask(QUESTIONS[2]))[0]
    monkeypatch.undo()
    assert text_of(batch(slotted, [(ask(QUESTIONS[0]), GREEDY)])[0]) == reply(alone, ask(QUESTIONS[0]))[0]


def logprobs_of(events: Sequence[StreamEvent]) -> list[TokenLogprob]:
    return [lp for e in events if isinstance(e, Delta) for lp in e.logprobs]


def test_logprobs_in_a_slot_match_the_lone_engine(alone: LlamaCppEngine, slotted: LlamaCppEngine) -> None:
    params = Params(temperature=0, max_tokens=6, logprobs=3)
    alone.clear_prompt_cache()
    expected = logprobs_of(list(alone.chat(ask(QUESTIONS[2]), params, threading.Event())))
    lone = logprobs_of(batch(slotted, [(ask(QUESTIONS[2]), params)])[0])
    assert lone == expected  # the same computation, to the bit
    # Beside another sequence: the same tokens, their log-probabilities a little off (measured 0.075 nats).
    shared = logprobs_of(batch(slotted, [(ask(QUESTIONS[2]), params), (ask(QUESTIONS[3]), GREEDY)])[0])
    assert [lp.token for lp in shared] == [lp.token for lp in expected]
    assert [lp.logprob for lp in shared] == pytest.approx([lp.logprob for lp in expected], abs=0.2)


def test_a_prompt_past_the_context_is_refused_before_taking_a_slot(slotted: LlamaCppEngine) -> None:
    slots = scheduler(slotted)
    handle = RequestHandle("r", ask("word " * 2000), GREEDY)
    with pytest.raises(ContextLengthExceeded):
        slots.admit(handle, lambda _event: None)
    assert slots.busy_slots() == 0


def test_each_conversation_keeps_its_prefix_in_its_own_slot(slotted: LlamaCppEngine) -> None:
    slots = scheduler(slotted)
    first = {q: ask(q) for q in QUESTIONS[:2]}
    replies = {q: reply(slotted, first[q])[0] for q in first}  # two conversations, one after the other
    for q in first:
        follow_up = [*first[q], ChatMessage("assistant", replies[q]), ChatMessage("user", "And then?")]
        total = len(slotted.tokenize_prompt(follow_up))
        reply(slotted, follow_up)
        # Only the new turn is evaluated: the other conversation did not evict this one's cache.
        assert slots.prompt_tokens_evaluated < total - len(slotted.tokenize_prompt(first[q])) + 8


def test_prompt_lookup_gives_the_same_greedy_reply_and_accepts_drafts(
    gemma_path: Path, tmp_path: Path, alone: LlamaCppEngine
) -> None:
    code = "\n".join(f"def area_{i}(width, height):\n    return width * height * {i}\n" for i in range(6))
    messages = ask("Copy this code exactly:\n" + code)
    params = Params(temperature=0, max_tokens=60)
    expected, done = reply(alone, messages, params)
    engine = _load(gemma_path, tmp_path, speculative="prompt-lookup")
    try:
        got, got_done = reply(engine, messages, params)
        stats = scheduler(engine).stats()
    finally:
        engine.unload()
    assert got == expected and got_done.usage == done.usage
    assert stats.slots == 1 and stats.draft_proposed > 0 and 0 < stats.draft_accepted <= stats.draft_proposed


def test_an_instance_with_slots_serves_concurrent_requests(gemma_path: Path) -> None:
    with EngineManager() as manager:
        engine = LlamaCppEngine(selftest=False)
        run_id = manager.start(_spec(gemma_path), LaunchOptions(n_ctx=N_CTX, n_threads=2, parallel=2), engine)
        busy: list[tuple[int, int]] = []
        handles = [manager.submit(run_id, ask(q), GREEDY) for q in QUESTIONS[:3]]
        while not all(h.finished for h in handles):
            info = manager.info(run_id)
            busy.append((info.slots_busy, info.queued))
            handles[-1].wait(0.01)
        results = [h.result() for h in handles]
        info = manager.info(run_id)
    for result in results:
        assert result.text.strip() and result.done is not None and result.done.metrics is not None
        assert result.done.usage.completion_tokens == GREEDY.max_tokens or result.done.finish_reason == "stop"
    assert (2, 1) in busy  # two in the batch and the third waiting for a slot
    assert (info.slots, info.slots_busy, info.queued, info.requests_served) == (2, 0, 0, 3)
