"""LlamaCppEngine.score_choices on the real Gemma 3 270M GGUF, against log-probabilities computed directly with
llama-cpp-python (a fresh Llama, the whole prompt evaluated from scratch, numpy log-softmax)."""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from engines.adapters.llama_cpp import LlamaCppEngine
from engines.errors import BadRequest, Cancelled, CapabilityNotSupported, ContextLengthExceeded
from engines.templates.chat import load_builtin_template
from engines.types import ChatMessage, Delta, Done, LaunchOptions, ModelSpec, Params

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python missing"),
    pytest.mark.real_model,
]

N_CTX = 1024
LETTERS = (" A", " B", " C", " D")
COLORS = [ChatMessage("user", "Name three colors.")]
GREEDY = Params(temperature=0, max_tokens=12)

SHOTS = (
    ("What is 2 + 2?", ("3", "4", "5", "6"), "B"),
    ("Which planet is closest to the Sun?", ("Venus", "Earth", "Mercury", "Mars"), "C"),
    ("What colour is the sky on a clear day?", ("Blue", "Green", "Red", "Black"), "A"),
    ("How many legs does a spider have?", ("Six", "Four", "Ten", "Eight"), "D"),
    ("Which of these is a mammal?", ("Shark", "Whale", "Trout", "Octopus"), "B"),
)
QUESTIONS = (
    ("What is the capital of France?", ("Berlin", "Madrid", "Paris", "Rome")),
    ("What is 10 - 3?", ("7", "6", "8", "5")),
    ("Which gas do plants take in?", ("Oxygen", "Carbon dioxide", "Helium", "Neon")),
    ("What is frozen water called?", ("Steam", "Ice", "Sand", "Glass")),
    ("How many days are in a week?", ("Five", "Six", "Seven", "Eight")),
)


def block(question: str, options: Sequence[str], answer: str | None) -> str:
    lines = [question, *(f"{letter.strip()}. {text}" for letter, text in zip(LETTERS, options, strict=True))]
    return "\n".join(lines) + "\nAnswer:" + (f" {answer}\n\n" if answer else "")


HEADER = "The following are multiple choice questions (with answers) about general knowledge.\n\n"
WORDY = " Read every option carefully, think it over, and then pick exactly one letter."
# 5-shot-like, MMLU-sized (~600 tokens): the shared examples fill more than one 512-token batch
PREFIX = HEADER + "".join(block(q + WORDY * 5, o, a) for q, o, a in SHOTS)
PROMPTS = tuple(PREFIX + block(q, o, None) for q, o in QUESTIONS)


@pytest.fixture(scope="module")
def engine(gemma_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaCppEngine]:
    eng = LlamaCppEngine(selftest_cache_dir=tmp_path_factory.mktemp("selftest"))
    spec = ModelSpec(id="gemma-3-270m", path=gemma_path, chat_template=load_builtin_template("gemma3"))
    eng.load(spec, LaunchOptions(n_ctx=N_CTX, n_threads=2))
    yield eng
    eng.unload()


@pytest.fixture(scope="module")
def reference(gemma_path: Path) -> Iterator[Any]:
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(gemma_path), n_ctx=N_CTX, n_threads=2, logits_all=False, verbose=False)
    yield llm
    llm.close()


def reference_logprobs(llm: Any, tokens: list[int]) -> Any:
    """Natural-log probabilities of the next token after `tokens`, evaluated from scratch."""
    import llama_cpp
    import numpy as np

    llm.reset()
    llm.eval(tokens)
    # llama-cpp-python 0.3.x no longer copies the last logits into `llm.scores` unless logits_all: read them
    logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),))
    values = logits.astype(np.float64)
    return values - (values.max() + np.log(np.exp(values - values.max()).sum()))


def reference_scores(llm: Any, prompt: str, choices: Sequence[str]) -> list[float]:
    tokens = llm.tokenize(prompt.encode(), add_bos=True, special=True)
    out = []
    for choice in choices:
        cont = llm.tokenize(choice.encode(), add_bos=False, special=False)
        out.append(sum(float(reference_logprobs(llm, tokens + cont[:i])[t]) for i, t in enumerate(cont)))
    return out


def chat(engine: LlamaCppEngine, session: str | None) -> str:
    events = list(engine.chat(COLORS, GREEDY, threading.Event(), session))
    assert isinstance(events[-1], Done)
    return "".join(e.text for e in events if isinstance(e, Delta))


def test_letters_match_a_fresh_llama(engine: LlamaCppEngine, reference: Any) -> None:
    import numpy as np

    engine.clear_prompt_cache()
    picked, expected = [], []
    for n, prompt in enumerate(PROMPTS):
        got = engine.score_choices(prompt, LETTERS, threading.Event())
        n_tokens = len(engine.llama.tokenize(prompt.encode()))
        assert n_tokens > 512
        # the first 512-token batch of the shared examples is cached: only the rest is evaluated again
        assert engine.prompt_tokens_evaluated == (n_tokens if n == 0 else n_tokens - 512)
        want = reference_scores(reference, prompt, LETTERS)
        assert got == pytest.approx(want, abs=1e-3), f"prompt {n}"
        assert all(s < 0 for s in got)
        picked.append(int(np.argmax(got)))
        expected.append(int(np.argmax(want)))
    assert picked == expected


def test_words_of_several_tokens_sum_their_tokens(engine: LlamaCppEngine, reference: Any) -> None:
    prompt = "The capital of France is"
    choices = (" Paris", " the city of Paris", " London", " Paris")
    assert len(engine.llama.tokenize(choices[1].encode(), add_bos=False)) > 1
    got = engine.score_choices(prompt, choices, threading.Event())
    assert got == pytest.approx(reference_scores(reference, prompt, choices), abs=1e-3)
    assert got[0] == got[3] and got[0] > got[2]
    # the cached prompt is still whole afterwards: the letters give what a fresh Llama gives
    again = engine.score_choices(PROMPTS[0], LETTERS, threading.Event())
    assert again == pytest.approx(reference_scores(reference, PROMPTS[0], LETTERS), abs=1e-3)


def test_chat_after_scoring_is_unchanged(engine: LlamaCppEngine) -> None:
    # A conversation is parked while scoring holds the context, and comes back whole: its reply is the same.
    chat(engine, "talk")
    before = chat(engine, "talk")  # the cached conversation: only its last token is evaluated again
    engine.score_choices(PROMPTS[1], LETTERS, threading.Event())
    engine.score_choices("The capital of France is", (" Paris", " the city of Paris"), threading.Event())
    assert chat(engine, "talk") == before
    # A chat without a session is not parked; it starts again from what scoring left, the same way each time.
    engine.score_choices(PROMPTS[2], LETTERS, threading.Event())
    first = chat(engine, None)
    engine.score_choices(PROMPTS[3], LETTERS, threading.Event())
    engine.score_choices("The capital of France is", (" Paris", " the city of Paris"), threading.Event())
    assert chat(engine, None) == first


class CancelAfter(threading.Event):
    """Reads as set from its `n`-th check on: cancels in the middle of the work, deterministically."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.left = n

    def is_set(self) -> bool:
        self.left -= 1
        return self.left < 0 or super().is_set()


def test_cancel_stops_scoring_and_leaves_a_sound_context(engine: LlamaCppEngine, reference: Any) -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        engine.score_choices(PROMPTS[0], LETTERS, cancel)
    long_prompt = "word " * 250 + PROMPTS[2]  # more than one 512-token batch
    engine.clear_prompt_cache()
    with pytest.raises(Cancelled):
        engine.score_choices(long_prompt, LETTERS, CancelAfter(2))  # after the first batch
    assert 0 < engine.llama.n_tokens < len(engine.llama.tokenize(long_prompt.encode()))
    got = engine.score_choices(PROMPTS[2], LETTERS, threading.Event())
    assert got == pytest.approx(reference_scores(reference, PROMPTS[2], LETTERS), abs=1e-3)


def test_bad_input_is_refused(engine: LlamaCppEngine) -> None:
    too_long = "word " * (N_CTX + 100)
    with pytest.raises(ContextLengthExceeded, match=r"context holds 1024"):
        engine.score_choices(too_long, LETTERS, threading.Event())
    exact = engine.llama.tokenize(("word " * (N_CTX - 2)).encode())
    assert len(exact) <= N_CTX
    long_choice = " and" * 8
    with pytest.raises(ContextLengthExceeded, match=rf"{len(exact)} tokens and its longest choice 8"):
        engine.score_choices("word " * (N_CTX - 2), (" A", long_choice), threading.Event())
    with pytest.raises(BadRequest, match="choice 2 to score is empty"):
        engine.score_choices("Question?", (" A", ""), threading.Event())
    with pytest.raises(BadRequest):
        engine.score_choices("Question?", (), threading.Event())


def test_slots_refuse_scoring(gemma_path: Path, tmp_path: Path) -> None:
    eng = LlamaCppEngine(selftest_cache_dir=tmp_path)
    spec = ModelSpec(id="g", path=gemma_path, chat_template=load_builtin_template("gemma3"))
    eng.load(spec, LaunchOptions(n_ctx=512, n_threads=2, parallel=2))
    try:
        with pytest.raises(CapabilityNotSupported, match="parallel slots"):
            eng.score_choices(PROMPTS[0], LETTERS, threading.Event())
    finally:
        eng.unload()
