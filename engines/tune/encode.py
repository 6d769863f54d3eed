"""Rows to training examples: the chat template rendered in the sandbox, tokenized, and labels that teach only the
assistant's replies.

For a chat row the labels are found by rendering the conversation's prefixes: the prompt up to each assistant
message (with the generation prompt) and the conversation through that message (without it). Where every prefix is
a prefix of the whole rendering, the text splits into prompt pieces (labels -100) and reply pieces (learned: the
reply and what the template writes after it up to the next message, its end-of-turn token included), which are
tokenized one by one; their concatenation must equal the tokens of the whole rendering, which is what the model
sees in chat. When it does not (a template that renders prefixes differently, or tokens that merge across a piece's
edge), the whole rendering's tokens are kept and labelled from the tokenizer's character offsets instead: the tokens
starting inside a reply piece, or, when the prefixes are unusable, inside each reply's text found in order in the
whole rendering, plus the special token that ends it.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engines.errors import BadRequest, ChatTemplateError
from engines.templates.chat import family_template, load_builtin_template, pick_template, render_chat
from engines.tune.data import TrainRow
from engines.tune.types import DataShape, LengthStats
from engines.types import ChatMessage, ModelSpec

IGNORE = -100
"""The label of a token the loss skips (PyTorch's cross-entropy ignore_index)."""

_MAX_CONFIG_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class Example:
    """One row as the model trains on it."""

    input_ids: list[int]
    labels: list[int]
    """IGNORE where nothing is learned; the token id where it is."""
    trained_tokens: int
    """Tokens that give a loss: learned labels after the first position (a causal model never predicts the first)."""
    cut: bool
    """The row was longer than max_seq_len and cut to it."""
    length: int = 0
    """Tokens before the cut."""


def chat_template_for(tokenizer: Any, spec: ModelSpec | None, *, chosen: str | None = None) -> str:
    """The template the transformers engine would use: `chosen` (a built-in's name), else the tokenizer's own, else
    the catalog's (spec.chat_template), else the built-in one of the model's family (Gemma for a GGUF without one);
    "" when none is known."""
    from engines.adapters.transformers_generate import tokenizer_template

    template, _ = pick_template(tokenizer_template(tokenizer), spec.chat_template if spec else None, chosen)
    if template:
        return template
    family = family_template(spec.id if spec else None, _model_type(tokenizer))
    return load_builtin_template(family) if family else ""


def encode_rows(tokenizer: Any, template: str, rows: Sequence[TrainRow], max_seq_len: int) -> list[Example]:
    """One Example per row, in order: chat and instruction rows through `template`, text rows as they are (BOS
    added as the tokenizer adds it); BadRequest naming the row's line when the template refuses a conversation."""
    if max_seq_len < 2:
        raise BadRequest(f"max_seq_len must be at least 2, not {max_seq_len}")
    tok = _Tokens(tokenizer)
    examples: list[Example] = []
    for row in rows:
        if row.shape is DataShape.TEXT:
            ids = tok.ids(row.text or "", special=True)
            labels = list(ids)
        else:
            if not template:
                raise BadRequest("the model has no chat template: choose one, or give text rows")
            try:
                ids, labels = _encode_chat(tok, template, row.messages)
            except (BadRequest, ChatTemplateError) as exc:
                raise BadRequest(f"line {row.line}: {exc}") from None
        length = len(ids)
        cut = length > max_seq_len
        if cut:
            ids, labels = ids[:max_seq_len], labels[:max_seq_len]
        trained = sum(1 for label in labels[1:] if label != IGNORE)
        examples.append(Example(ids, labels, trained, cut, length))
    return examples


def length_stats(examples: Sequence[Example], max_seq_len: int) -> LengthStats:
    """The token lengths (before any cut) of the examples, and how many pass max_seq_len."""
    lengths = sorted(max(e.length, len(e.input_ids)) for e in examples)
    if not lengths:
        return LengthStats(count=0, minimum=0, median=0, p95=0, maximum=0, over_max=0)
    p95 = lengths[max(0, -(-95 * len(lengths) // 100) - 1)]  # nearest rank
    return LengthStats(
        count=len(lengths),
        minimum=lengths[0],
        median=int(statistics.median_low(lengths)),
        p95=p95,
        maximum=lengths[-1],
        over_max=sum(1 for n in lengths if n > max_seq_len),
    )


class _Tokens:
    """The tokenizer as the transformers engine uses it: special tokens parsed from the text, one BOS."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.bos_text: str = tokenizer.bos_token or ""
        self.eos_text: str = tokenizer.eos_token or ""
        self.bos_id: int | None = tokenizer.bos_token_id
        self.add_bos = self.bos_id is not None and tokenizer("", add_special_tokens=True)["input_ids"][:1] == [
            self.bos_id
        ]
        decoder = getattr(tokenizer, "added_tokens_decoder", {}) or {}
        self.special = {int(i) for i, t in decoder.items() if getattr(t, "special", False)}
        self.special |= {int(i) for i in getattr(tokenizer, "all_special_ids", [])}

    def ids(self, text: str, *, special: bool = False) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=special)["input_ids"])

    def bos_missing(self, ids: Sequence[int]) -> bool:
        return self.add_bos and self.bos_id is not None and (not ids or ids[0] != self.bos_id)

    def render(self, template: str, messages: Sequence[ChatMessage], *, prompt: bool) -> str:
        return render_chat(
            template, messages, bos_token=self.bos_text, eos_token=self.eos_text, add_generation_prompt=prompt
        )

    def offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        try:
            encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        except NotImplementedError:
            raise BadRequest("the chat template renders unstably and the tokenizer gives no offsets") from None
        return list(encoded["input_ids"]), [(int(a), int(b)) for a, b in encoded["offset_mapping"]]


def _encode_chat(tok: _Tokens, template: str, messages: Sequence[ChatMessage]) -> tuple[list[int], list[int]]:
    """(input_ids, labels) of a conversation: incremental pieces when they agree with the whole, else offsets."""
    whole = tok.render(template, messages, prompt=False)
    pieces = _pieces(tok, template, messages, whole)
    if pieces is not None:
        ids: list[int] = []
        labels: list[int] = []
        for text, learned in pieces:
            part = tok.ids(text)
            ids += part
            labels += part if learned else [IGNORE] * len(part)
        if tok.bos_missing(ids):
            ids, labels = [tok.bos_id or 0, *ids], [IGNORE, *labels]
        if ids == _whole_ids(tok, whole):
            return ids, labels
        spans = []
        at = 0
        for text, learned in pieces:
            if learned:
                spans.append((at, at + len(text), False))
            at += len(text)
    else:
        spans = _found_spans(whole, messages)
    return _from_offsets(tok, whole, spans)


def _whole_ids(tok: _Tokens, whole: str) -> list[int]:
    ids = tok.ids(whole)
    return [tok.bos_id or 0, *ids] if tok.bos_missing(ids) else ids


def _pieces(tok: _Tokens, template: str, messages: Sequence[ChatMessage], whole: str) -> list[tuple[str, bool]] | None:
    """The whole rendering cut into (text, learned) pieces at each assistant message's start and end; None when a
    prefix does not render or is not a prefix of the whole."""
    pieces: list[tuple[str, bool]] = []
    at = 0
    for index, message in enumerate(messages):
        if message.role != "assistant":
            continue
        if index == 0:
            return None  # a reply with no prompt before it: the template may not render an empty conversation
        try:
            before = tok.render(template, messages[:index], prompt=True)
            through = tok.render(template, messages[: index + 1], prompt=False)
        except (BadRequest, ChatTemplateError):
            return None
        start = len(before)
        if start < at or len(through) < start or not whole.startswith(through) or not whole.startswith(before):
            return None
        pieces += [(whole[at:start], False), (whole[start : len(through)], True)]
        at = len(through)
    pieces.append((whole[at:], False))
    return [(text, learned) for text, learned in pieces if text]


def _found_spans(whole: str, messages: Sequence[ChatMessage]) -> list[tuple[int, int, bool]]:
    """Each assistant reply's character span in the whole rendering, found in order (as is, else trimmed, as
    templates often trim); each span also takes the special token that follows it."""
    spans: list[tuple[int, int, bool]] = []
    at = 0
    for message in messages:
        if message.role != "assistant":
            continue
        for text in (message.content, message.content.strip()):
            found = whole.find(text, at) if text else -1
            if found >= 0:
                spans.append((found, found + len(text), True))
                at = found + len(text)
                break
        else:
            raise BadRequest("the chat template changes the assistant's text: cannot tell which tokens to learn")
    return spans


def _from_offsets(tok: _Tokens, whole: str, spans: Sequence[tuple[int, int, bool]]) -> tuple[list[int], list[int]]:
    """The whole rendering's tokens, learned where a token starts inside a span (and, for a span that asks, the
    special token right after its last one)."""
    ids, offsets = tok.offsets(whole)
    labels = [IGNORE] * len(ids)
    for start, end, with_end_token in spans:
        last = -1
        for j, (a, b) in enumerate(offsets):
            if start <= a < end and b > a:
                labels[j] = ids[j]
                last = j
        if with_end_token and 0 <= last < len(ids) - 1 and ids[last + 1] in tok.special:
            labels[last + 1] = ids[last + 1]
    if tok.bos_missing(ids):
        ids, labels = [tok.bos_id or 0, *ids], [IGNORE, *labels]
    return ids, labels


def _model_type(tokenizer: Any) -> str | None:
    """model_type from the config.json beside the tokenizer's files, when it has one."""
    folder = getattr(tokenizer, "name_or_path", None)
    if not folder:
        return None
    path = Path(folder) / "config.json"
    try:
        with path.open("rb") as handle:
            data = json.loads(handle.read(_MAX_CONFIG_BYTES))
    except (OSError, ValueError):
        return None
    value = data.get("model_type") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None
