"""llama.cpp embeddings on the real Gemma GGUF (issue 18, item 10): a text past the embedding context is refused,
never cut (two long texts that differ only past the limit used to give the same vector); the tokens read are
counted; a cancelled request stops between decodes and, through llama.cpp's abort callback, inside one."""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from engines.adapters.llama_cpp import LlamaCppEngine
from engines.errors import Cancelled, EmbedInputTooLong
from engines.templates.chat import load_builtin_template
from engines.types import LaunchOptions, ModelSpec

pytestmark = [
    pytest.mark.real_model,
    pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python missing"),
]

N_CTX = 256
"""The embedding context follows the instance's (up to 2,048): small here, so the texts stay quick to embed."""


@pytest.fixture(scope="module")
def engine(gemma_path: Path) -> Iterator[LlamaCppEngine]:
    eng = LlamaCppEngine(selftest=False)  # the native self-test has its own tests
    spec = ModelSpec(id="gemma-3-270m", path=gemma_path, chat_template=load_builtin_template("gemma3"))
    eng.load(spec, LaunchOptions(n_ctx=N_CTX, n_threads=1))
    yield eng
    eng.unload()


def words(n: int) -> str:
    return " ".join(["river", "stone", "light", "window", "market"][i % 5] for i in range(n))


def test_texts_past_the_context_are_refused_by_index_not_cut(engine: LlamaCppEngine) -> None:
    common = words(300)
    with pytest.raises(EmbedInputTooLong) as refused:
        engine.embed(["a short one", common + " about apples", common + " about the stock market"])
    assert refused.value.index == 1 and refused.value.tokens > N_CTX and refused.value.limit == N_CTX
    said = str(refused.value)
    assert f"input[1] is {refused.value.tokens} tokens" in said and f"at most {N_CTX}" in said


def test_the_tokens_read_are_counted(engine: LlamaCppEngine) -> None:
    texts = ["a red apple", "a green apple"]
    vectors = engine.embed(texts)
    expected = sum(len(engine._embedder.llama.tokenize(t.encode())) for t in texts)
    assert len(vectors) == 2 and engine.last_embed_tokens == expected > 4


class CancelAfter(threading.Event):
    """An event that reads as set from its `n`-th look on: cancels from inside whatever is checking it."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n
        self.looks = 0

    def is_set(self) -> bool:
        self.looks += 1
        return self.looks >= self.n


def test_cancel_stops_inside_a_decode_and_the_next_request_is_right(engine: LlamaCppEngine) -> None:
    text = words(200)
    whole = engine.embed([text])
    cancel = CancelAfter(3)  # look 1: before the decode; from look 2 on, llama.cpp's abort callback asks
    with pytest.raises(Cancelled):
        engine.embed([text], cancel)
    assert cancel.looks >= 3  # the decode itself was asked, and stopped
    assert engine.embed([text])[0] == pytest.approx(whole[0], abs=1e-4)  # an aborted decode leaves nothing behind


def test_a_request_cancelled_before_it_starts_does_nothing(engine: LlamaCppEngine) -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        engine.embed(["anything"], cancel)
