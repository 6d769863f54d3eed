"""Encoding rows with the real Gemma 3 tokenizer (from the GGUF's converted folder; only the tokenizer loads): the
tokens are the engine's tokens for the whole conversation, and the learned ones decode exactly to the assistant
replies with their end of turn, nothing of the user's text."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers")

from engines.errors import BadRequest
from engines.templates.chat import load_builtin_template, render_chat
from engines.tune import encode
from engines.tune.data import TrainRow
from engines.tune.encode import IGNORE, Example, chat_template_for, encode_rows, length_stats
from engines.tune.types import DataShape, LengthStats
from engines.types import ChatMessage, ModelSpec

pytestmark = pytest.mark.real_model

CONVERSATION = (
    ChatMessage("system", "Be brief."),
    ChatMessage("user", "What is 2+2?"),
    ChatMessage("assistant", "4, of course."),
    ChatMessage("user", "And 3+3? Tell me."),
    ChatMessage("assistant", "Six."),
)


@pytest.fixture(scope="module")
def tokenizer(gemma_path: Path, transformers_cache: Path) -> Any:
    import transformers

    from engines.adapters.transformers_convert import ensure_converted

    folder = ensure_converted(gemma_path, transformers_cache)
    return transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


@pytest.fixture(scope="module")
def gemma(tokenizer: Any) -> str:
    return chat_template_for(tokenizer, ModelSpec(id="gemma-3-270m", format="gguf"))


def learned_runs(example: Example) -> list[list[int]]:
    """The learned tokens, as runs of neighbours."""
    runs: list[list[int]] = []
    previous = IGNORE
    for label in example.labels:
        if label != IGNORE:
            if previous == IGNORE:
                runs.append([])
            runs[-1].append(label)
        previous = label
    return runs


def reference_ids(tokenizer: Any, template: str, messages: Sequence[ChatMessage]) -> list[int]:
    """What the transformers engine feeds the model for this conversation (tokenize_prompt's rule)."""
    text = render_chat(template, messages, bos_token="<bos>", eos_token="<eos>", add_generation_prompt=False)
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return ids if ids[:1] == [tokenizer.bos_token_id] else [tokenizer.bos_token_id, *ids]


def test_only_the_assistant_replies_and_their_end_of_turn_are_learned(
    tokenizer: Any, gemma: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(encode, "_from_offsets", None)  # Gemma's pieces must agree with the whole rendering
    (example,) = encode_rows(tokenizer, gemma, [TrainRow(1, DataShape.CHAT, CONVERSATION)], 512)
    assert example.input_ids == reference_ids(tokenizer, gemma, CONVERSATION)
    assert example.input_ids[0] == tokenizer.bos_token_id and example.input_ids.count(tokenizer.bos_token_id) == 1
    assert len(example.labels) == len(example.input_ids) and not example.cut
    runs = learned_runs(example)
    assert [tokenizer.decode(run) for run in runs] == ["4, of course.<end_of_turn>\n", "Six.<end_of_turn>\n"]
    for label, token in zip(example.labels, example.input_ids, strict=True):
        assert label in (IGNORE, token)
    assert example.trained_tokens == sum(len(run) for run in runs)
    masked = tokenizer.decode([t for t, lab in zip(example.input_ids, example.labels, strict=True) if lab == IGNORE])
    assert "What is 2+2?" in masked and "And 3+3? Tell me." in masked and "Be brief." in masked
    learned = tokenizer.decode([lab for lab in example.labels if lab != IGNORE])
    assert "2+2" not in learned and "Tell" not in learned and "brief" not in learned and "user" not in learned


def test_an_instruction_row_learns_its_output(tokenizer: Any, gemma: str) -> None:
    row = TrainRow(
        3,
        DataShape.INSTRUCTION,
        (ChatMessage("user", "Translate to French\n\ncat"), ChatMessage("assistant", "le chat")),
    )
    (example,) = encode_rows(tokenizer, gemma, [row], 512)
    assert example.input_ids == reference_ids(tokenizer, gemma, row.messages)
    assert [tokenizer.decode(run) for run in learned_runs(example)] == ["le chat<end_of_turn>\n"]


def test_a_text_row_learns_every_token_with_the_tokenizers_bos(tokenizer: Any, gemma: str) -> None:
    text = "The quick brown fox jumps over the lazy dog."
    (example,) = encode_rows(tokenizer, gemma, [TrainRow(1, DataShape.TEXT, (), text)], 512)
    assert example.input_ids == list(tokenizer(text)["input_ids"])
    assert example.input_ids[0] == tokenizer.bos_token_id
    assert example.labels == example.input_ids
    assert example.trained_tokens == len(example.input_ids) - 1
    assert tokenizer.decode(example.input_ids, skip_special_tokens=True) == text
    assert encode_rows(tokenizer, "", [TrainRow(1, DataShape.TEXT, (), text)], 512) == [example]  # no template needed


def test_long_rows_are_cut_and_counted(tokenizer: Any, gemma: str) -> None:
    rows = [
        TrainRow(1, DataShape.CHAT, CONVERSATION),
        TrainRow(2, DataShape.TEXT, (), "one two three four five six seven eight nine ten eleven twelve"),
        TrainRow(3, DataShape.TEXT, (), "short"),
    ]
    full = encode_rows(tokenizer, gemma, rows, 4096)
    cut = encode_rows(tokenizer, gemma, rows, 12)
    assert [e.cut for e in cut] == [True, True, False]
    for whole, part in zip(full, cut, strict=True):
        assert part.input_ids == whole.input_ids[:12] and part.labels == whole.labels[:12]
        assert part.length == whole.length == len(whole.input_ids)
    assert cut[0].trained_tokens == 0  # the first reply starts after token 12: nothing left to learn
    stats = length_stats(cut, 12)
    lengths = sorted(len(e.input_ids) for e in full)
    assert stats == LengthStats(3, lengths[0], lengths[1], lengths[2], lengths[2], over_max=2)


def test_length_stats_against_hand_figures() -> None:
    examples = [Example([0] * n, [IGNORE] * n, 0, False, n) for n in [5, 1, 9, 3, 7, 100, 2, 8, 4, 6]]
    assert length_stats(examples, 8) == LengthStats(10, 1, 5, 100, 100, over_max=2)
    twenty = [Example([0] * n, [IGNORE] * n, 0, False, n) for n in range(1, 21)]
    assert length_stats(twenty, 100) == LengthStats(20, 1, 10, 19, 20, over_max=0)
    assert length_stats([], 8) == LengthStats(0, 0, 0, 0, 0, 0)


def test_a_template_that_renders_prefixes_unstably_falls_back_to_offsets(tokenizer: Any) -> None:
    # The message count at the top changes with every prefix, so no prefix is a prefix of the whole.
    counting = (
        "{{ bos_token }}{{ messages | length }} turns\n{% for m in messages %}<start_of_turn>{{ m.role }}\n"
        "{{ m.content | trim }}<end_of_turn>\n{% endfor %}"
        "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
    )
    messages = CONVERSATION[1:]
    (example,) = encode_rows(tokenizer, counting, [TrainRow(1, DataShape.CHAT, messages)], 512)
    assert example.input_ids == reference_ids(tokenizer, counting, messages)
    assert [tokenizer.decode(run) for run in learned_runs(example)] == [
        "4, of course.<end_of_turn>",
        "Six.<end_of_turn>",
    ]


def test_pieces_that_tokenize_differently_keep_the_whole_renderings_tokens(tokenizer: Any) -> None:
    glued = "{% for m in messages %}{{ m.content }}{% endfor %}"
    messages = (ChatMessage("user", "unbeliev"), ChatMessage("assistant", "able things happen"))
    pieces = tokenizer("unbeliev", add_special_tokens=False)["input_ids"]
    pieces += tokenizer("able things happen", add_special_tokens=False)["input_ids"]
    assert reference_ids(tokenizer, glued, messages)[1:] != pieces  # "unbelievable" merges across the edge
    (example,) = encode_rows(tokenizer, glued, [TrainRow(1, DataShape.CHAT, messages)], 512)
    assert example.input_ids == reference_ids(tokenizer, glued, messages)
    learned = tokenizer.decode([lab for lab in example.labels if lab != IGNORE])
    assert "things happen" in learned and "unbeliev" not in learned


def test_a_conversation_the_template_refuses_names_its_line(tokenizer: Any, gemma: str) -> None:
    rows = [
        TrainRow(7, DataShape.CHAT, (ChatMessage("user", "a"), ChatMessage("user", "b"), ChatMessage("assistant", "c")))
    ]
    with pytest.raises(BadRequest, match=r"^line 7: .*alternate"):
        encode_rows(tokenizer, gemma, rows, 512)
    with pytest.raises(BadRequest, match="no chat template"):
        encode_rows(tokenizer, "", [TrainRow(1, DataShape.CHAT, CONVERSATION)], 512)


def test_the_template_is_the_engines_choice(tokenizer: Any) -> None:
    gemma3 = load_builtin_template("gemma3")
    assert tokenizer.chat_template is None  # the converted GGUF carries none: the family's built-in is used
    assert chat_template_for(tokenizer, None) == gemma3
    assert chat_template_for(tokenizer, ModelSpec(id="x", chat_template="{{ 'catalog' }}")) == "{{ 'catalog' }}"
    assert chat_template_for(tokenizer, ModelSpec(id="x", chat_template="c"), chosen="chatml") == load_builtin_template(
        "chatml"
    )

    class Own:
        chat_template = "{{ 'own' }}"
        name_or_path = ""

    assert chat_template_for(Own(), ModelSpec(id="gemma-3", chat_template="c")) == "{{ 'own' }}"
    Own.chat_template = ""
    assert chat_template_for(Own(), ModelSpec(id="mystery")) == ""
