"""A giant prompt or embedding input is refused after tokenizing a prefix, not all of it (issue 18: a 15 MB
prompt, under the 16 MiB body limit, cost 17 s of the instance before its 400)."""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from engines.adapters.token_bound import CUT_MARGIN, tokenize_within
from engines.errors import ContextLengthExceeded, EmbedInputTooLong
from engines.templates.chat import load_builtin_template
from engines.types import ChatMessage, LaunchOptions, ModelSpec, Params


def words(data: bytes) -> list[int]:
    """A stand-in tokenizer: one token per space-separated word."""
    return [len(w) for w in data.split()]


def test_short_text_is_tokenized_whole() -> None:
    data = b"word " * 100
    assert tokenize_within(words, data, 1000) == (words(data), True)


def test_text_just_past_the_limit_is_counted_exactly() -> None:
    # Within the first prefix's reach: the whole text is tokenized, and the caller sees the exact count.
    tokens, whole = tokenize_within(words, b"word " * 1100, 1000)
    assert whole and len(tokens) == 1100


def test_giant_text_stops_at_a_prefix_certainly_past_the_limit() -> None:
    seen: list[int] = []

    def counting(data: bytes) -> list[int]:
        seen.append(len(data))
        return words(data)

    data = b"word " * 3_000_000  # 15 MB
    tokens, whole = tokenize_within(counting, data, 1000)
    assert not whole and len(tokens) > 1000 + CUT_MARGIN
    assert sum(seen) < 100_000  # bytes tokenized: bounded by the limit, not by the 15 MB


def test_long_tokens_are_followed_until_the_limit_is_certain() -> None:
    # 40-byte "tokens": the first prefix holds too few, so bigger ones are tried, never the whole text.
    data = (b"x" * 39 + b" ") * 200_000
    tokens, whole = tokenize_within(words, data, 1000)
    assert not whole and len(tokens) > 1000 + CUT_MARGIN


real = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python missing")
N_CTX = 1024
GIANT = "word " * 3_000_000  # 15 MB


@pytest.fixture(scope="module")
def engine(gemma_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from engines.adapters.llama_cpp import LlamaCppEngine

    eng = LlamaCppEngine(selftest_cache_dir=tmp_path_factory.mktemp("selftest"))
    spec = ModelSpec(id="gemma-3-270m", path=gemma_path, chat_template=load_builtin_template("gemma3"))
    eng.load(spec, LaunchOptions(n_ctx=N_CTX, n_threads=2))
    yield eng
    eng.unload()


@real
@pytest.mark.real_model
def test_giant_prompts_are_refused_after_tokenizing_a_small_part(
    engine: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counted in bytes handed to llama.cpp's tokenizer, not in seconds (a loaded machine makes any time bound
    flaky): tokenizing all 15 MB took 17 s; a prefix of tens of KB is enough to know the text cannot fit."""
    import llama_cpp

    from engines.adapters.llama_cpp import LlamaCppEngine

    assert isinstance(engine, LlamaCppEngine)
    tokenized: list[int] = []
    original = llama_cpp.Llama.tokenize

    def counting(self: llama_cpp.Llama, text: bytes, *args: object, **kwargs: object) -> list[int]:
        tokenized.append(len(text))
        return original(self, text, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(llama_cpp.Llama, "tokenize", counting)
    params = Params(temperature=0, max_tokens=4)
    for run in (
        lambda: list(engine.complete(GIANT, params, threading.Event())),
        lambda: list(engine.chat([ChatMessage("user", GIANT)], params, threading.Event())),
        lambda: engine.embed([GIANT]),
    ):
        tokenized.clear()
        with pytest.raises((ContextLengthExceeded, EmbedInputTooLong), match=r"is over \d+ tokens"):
            run()
        assert tokenized and sum(tokenized) < len(GIANT) // 100, tokenized  # 1 % of the text at most
    # Just past the context: still the exact count.
    with pytest.raises(ContextLengthExceeded, match=r"the prompt is \d+ tokens but the context holds 1024"):
        list(engine.complete("word " * 1100, params, threading.Event()))
