"""Seeded sampling on the real Gemma GGUF gives the same text whatever ran on the instance before (issue 18, item 11).

The prefix cache made it differ: a prompt evaluated after another one reuses the shared prefix and evaluates the
rest in other batches, and llama.cpp's logits depend on how a token was batched (by up to 0.5 here), so a seeded
reply at temperature 1.0 drew other tokens.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from engines.adapters.llama_cpp import LlamaCppEngine
from engines.templates.chat import load_builtin_template
from engines.types import ChatMessage, Delta, LaunchOptions, ModelSpec, Params

pytestmark = [
    pytest.mark.real_model,
    pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python missing"),
]

POEM = [ChatMessage("user", "Write a short poem about the sea.")]
HELLO = [ChatMessage("user", "Hello")]
SEEDED = Params(temperature=1.0, seed=7, max_tokens=16)


@pytest.fixture(scope="module")
def engine(gemma_path: Path) -> Iterator[LlamaCppEngine]:
    """Gemma with the transcript template the catalog gives this base model (and its stop), as `serve` loads it."""
    eng = LlamaCppEngine(selftest=False)  # the native self-test has its own tests
    spec = ModelSpec(id="gemma-3-270m", path=gemma_path, chat_template=load_builtin_template("base-qa"))
    eng.load(spec, LaunchOptions(n_ctx=1024, n_threads=1))
    yield eng
    eng.unload()


def _text(engine: LlamaCppEngine, messages: list[ChatMessage], params: Params) -> str:
    return "".join(e.text for e in engine.chat(messages, params, threading.Event()) if isinstance(e, Delta))


def test_seeded_reply_is_the_same_after_another_request(engine: LlamaCppEngine) -> None:
    first = _text(engine, POEM, SEEDED)
    again = _text(engine, POEM, SEEDED)  # the whole prompt is cached now
    _text(engine, HELLO, Params(temperature=1.0, max_tokens=5))  # another short request in between
    after = _text(engine, POEM, SEEDED)
    assert first and first == again == after


def test_unseeded_requests_still_reuse_the_prefix(engine: LlamaCppEngine) -> None:
    _text(engine, POEM, Params(temperature=0, max_tokens=4))
    _text(engine, POEM, Params(temperature=0, max_tokens=4))
    assert engine.prompt_tokens_evaluated == 1  # only the last prompt token, for fresh logits
