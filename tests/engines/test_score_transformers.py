"""TransformersEngine.score_choices on the real Gemma 3 270M (converted once, shared), against a raw
AutoModelForCausalLM forward over the same converted folder."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from engines.adapters.transformers_engine import TransformersEngine
from engines.errors import BadRequest, Cancelled, ContextLengthExceeded
from engines.templates.chat import load_builtin_template
from engines.types import Capability, LaunchOptions, ModelSpec

pytestmark = pytest.mark.real_model

LETTERS = (" A", " B", " C", " D")
PREFIX = (
    "The following are multiple choice questions (with answers).\n\n"
    "What is 2 + 2?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer: B\n\n"
    "Which planet is closest to the Sun?\nA. Venus\nB. Earth\nC. Mercury\nD. Mars\nAnswer: C\n\n"
)
PROMPTS = (
    PREFIX + "What is the capital of France?\nA. Berlin\nB. Madrid\nC. Paris\nD. Rome\nAnswer:",
    PREFIX + "How many days are in a week?\nA. Five\nB. Six\nC. Seven\nD. Eight\nAnswer:",
    PREFIX + "What do bees make?\nA. Milk\nB. Silk\nC. Honey\nD. Wool\nAnswer:",
)


@pytest.fixture(scope="module")
def engine(gemma_path: Path, transformers_cache: Path) -> Iterator[TransformersEngine]:
    eng = TransformersEngine(cache_dir=transformers_cache)
    spec = ModelSpec(
        id="gemma-3-270m",
        path=gemma_path,
        format="gguf",
        chat_template=load_builtin_template("base-qa"),
        engines=("transformers",),
    )
    eng.load(spec, LaunchOptions(n_ctx=512, n_threads=2))
    yield eng
    eng.unload()


@pytest.fixture(scope="module")
def raw(engine: TransformersEngine) -> Iterator[tuple[Any, Any]]:
    """The converted folder loaded by hand (in eval mode, as from_pretrained leaves it): a second, independent copy."""
    import transformers

    assert engine.model_dir is not None
    folder = str(engine.model_dir)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype="float32")
    yield model, tokenizer
    del model


def raw_scores(raw: tuple[Any, Any], prompt: str, choices: Sequence[str]) -> list[float]:
    """Sum of each choice's token log-probabilities from one full forward over prompt + choice."""
    import torch

    model, tokenizer = raw
    ids = tokenizer(prompt)["input_ids"]  # the tokenizer adds Gemma's BOS itself
    out = []
    for choice in choices:
        cont = tokenizer(choice, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = model(torch.tensor([ids + cont])).logits[0].double()
        logprobs = torch.log_softmax(logits, dim=-1)
        out.append(sum(float(logprobs[len(ids) - 1 + i, t]) for i, t in enumerate(cont)))
    return out


def test_letters_match_a_raw_forward(engine: TransformersEngine, raw: tuple[Any, Any]) -> None:
    assert engine.supports(Capability.SCORE)
    for prompt in PROMPTS:
        got = engine.score_choices(prompt, LETTERS, threading.Event())
        want = raw_scores(raw, prompt, LETTERS)
        assert got == pytest.approx(want, abs=1e-3)
        assert max(range(4), key=got.__getitem__) == max(range(4), key=want.__getitem__)
        assert all(s < 0 for s in got)


def test_choices_of_several_tokens(engine: TransformersEngine, raw: tuple[Any, Any]) -> None:
    prompt = "The capital of France is"
    choices = (" Paris", " the city of Paris", " London")
    assert len(raw[1](choices[1], add_special_tokens=False)["input_ids"]) > 1
    got = engine.score_choices(prompt, choices, threading.Event())
    assert got == pytest.approx(raw_scores(raw, prompt, choices), abs=1e-3)
    assert got[0] > got[2]


def test_cancel_and_bad_input(engine: TransformersEngine) -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        engine.score_choices(PROMPTS[0], LETTERS, cancel)
    with pytest.raises(ContextLengthExceeded, match="context holds 512"):
        engine.score_choices("word " * 600, LETTERS, threading.Event())
    with pytest.raises(BadRequest, match="choice 2 to score is empty"):
        engine.score_choices(PROMPTS[0], (" A", ""), threading.Event())
