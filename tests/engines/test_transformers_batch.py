"""The transformers engine's batches on the real Gemma 3 270M (converted once, shared): concurrent requests in one
forward pass per step give each its lone greedy reply, and end, stop and cancel one by one."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from engines.adapters.transformers_batch import TransformersBatch
from engines.adapters.transformers_engine import TransformersEngine
from engines.manager import EngineManager
from engines.requests import ChatResult, RequestHandle
from engines.templates.chat import load_builtin_template
from engines.types import ChatMessage, Delta, Done, LaunchOptions, ModelSpec, Params

pytestmark = pytest.mark.real_model

PROMPTS = ("Write a long story about a dragon.", "Write a long poem about the sea.", "Write a long essay on dogs.")
GREEDY = Params(temperature=0, max_tokens=24)


def _spec(path: Path) -> ModelSpec:
    return ModelSpec(
        id="gemma-3-270m",
        path=path,
        format="gguf",
        chat_template=load_builtin_template("base-qa"),
        engines=("transformers",),
        stop=("\nQuestion:",),
    )


def ask(text: str) -> list[ChatMessage]:
    return [ChatMessage("user", text)]


@pytest.fixture(scope="module")
def alone(gemma_path: Path, transformers_cache: Path) -> Iterator[TransformersEngine]:
    engine = TransformersEngine(cache_dir=transformers_cache)
    engine.load(_spec(gemma_path), LaunchOptions(n_ctx=1024, n_threads=2))
    yield engine
    engine.unload()


def lone(engine: TransformersEngine, text: str, params: Params = GREEDY) -> tuple[str, Done]:
    events = list(engine.chat(ask(text), params, threading.Event()))
    done = events[-1]
    assert isinstance(done, Done)
    return "".join(e.text for e in events if isinstance(e, Delta)), done


def together(
    gemma_path: Path, cache: Path, requests: Sequence[tuple[str, Params]], *, cancel_second_after: int = 0
) -> tuple[list[ChatResult], TransformersBatch]:
    """Every request queued while the model loads, so they start as one batch."""
    engine = TransformersEngine(cache_dir=cache)
    with EngineManager() as manager:
        options = LaunchOptions(n_ctx=1024, n_threads=2, parallel=len(requests))
        run_id = manager.start(_spec(gemma_path), options, engine, wait=False)
        handles: list[RequestHandle] = []
        for text, params in requests:
            handles.append(manager.submit(run_id, ask(text), params))
        cancelled: ChatResult | None = None
        if cancel_second_after:
            seen, parts = 0, []
            for event in handles[1]:
                if isinstance(event, Delta):
                    seen += 1
                    parts.append(event.text)
                    if seen == cancel_second_after:
                        handles[1].cancel()
                else:
                    cancelled = ChatResult("".join(parts), event if isinstance(event, Done) else None, None)
        results = [cancelled if i == 1 and cancelled else h.result() for i, h in enumerate(handles)]
        batcher = engine.batcher()
        assert batcher is not None
    return results, batcher


def test_requests_in_one_batch_get_their_lone_greedy_replies(
    alone: TransformersEngine, gemma_path: Path, transformers_cache: Path
) -> None:
    results, batcher = together(gemma_path, transformers_cache, [(p, GREEDY) for p in PROMPTS])
    assert batcher.batches == 1
    for prompt, result in zip(PROMPTS, results, strict=True):
        expected, done = lone(alone, prompt)
        assert result.text == expected and result.text.strip()
        assert result.done is not None and result.done.usage == done.usage


def test_each_row_ends_by_its_own_limit_stop_or_cancel(
    alone: TransformersEngine, gemma_path: Path, transformers_cache: Path
) -> None:
    full, _ = lone(alone, PROMPTS[2], Params(temperature=0, max_tokens=40))
    stop_word = full.split()[3]
    requests = [
        (PROMPTS[0], Params(temperature=0, max_tokens=5)),
        (PROMPTS[1], Params(temperature=0, max_tokens=40)),
        (PROMPTS[2], Params(temperature=0, max_tokens=40, stop=(stop_word,))),
        (PROMPTS[0], Params(temperature=0.9, seed=11, max_tokens=12)),
    ]
    results, _ = together(gemma_path, transformers_cache, requests, cancel_second_after=3)
    short, cancelled, stopped, sampled = results
    assert short.done is not None and (short.done.finish_reason, short.done.usage.completion_tokens) == ("length", 5)
    assert cancelled.done is not None and cancelled.done.finish_reason == "cancelled"
    assert stopped.done is not None and stopped.done.finish_reason == "stop"
    assert stopped.text == full[: full.index(stop_word)]
    assert sampled.done is not None and sampled.text.strip()
    again, _ = together(gemma_path, transformers_cache, requests[3:] * 2)  # the same seed draws the same reply
    assert again[0].text == again[1].text == sampled.text


def test_a_prompt_past_the_context_is_refused_for_that_request_only(gemma_path: Path, transformers_cache: Path) -> None:
    results, _ = together(gemma_path, transformers_cache, [("word " * 2000, GREEDY), (PROMPTS[1], GREEDY)])
    assert results[0].error is not None and "the context holds 1024" in results[0].error.message
    assert results[1].done is not None and results[1].text.strip()
