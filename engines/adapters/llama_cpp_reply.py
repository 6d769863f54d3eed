"""One reply as its tokens arrive: text pieces decoded, stop texts cut, limits kept, the finish reason chosen.

Shared by the one-request path (`LlamaCppEngine._stream`) and the slots (`llama_cpp_slots`), so a reply ends
the same way whichever path produced it.
"""

from __future__ import annotations

import codecs
import math
from collections.abc import Callable
from typing import Any

from engines.stop_text import StopText
from engines.types import Delta, Done, FinishReason, StreamEvent, TokenLogprob, Usage


class Reply:
    """Feed it each sampled token's bytes (None for an end-of-generation token); it says when the reply is over.

    `budget` is the room the context leaves after the prompt; `max_tokens` the reply's limit (already within it).
    """

    __slots__ = ("_cut", "_decode", "_leading", "_scored", "budget", "completion", "finish", "max_tokens", "n_prompt")

    def __init__(self, n_prompt: int, max_tokens: int, budget: int, stops: tuple[str, ...], *, strip_leading: bool):
        self.n_prompt, self.max_tokens, self.budget = n_prompt, max_tokens, budget
        self.completion = 0
        self.finish: FinishReason | None = None
        """Set once the reply is over: "stop", "length" or "cancelled" (`close` turns a full window into "context")."""
        self._cut = StopText(stops)
        self._decode = codecs.getincrementaldecoder("utf-8")("replace").decode
        self._leading = strip_leading
        self._scored: list[TokenLogprob] = []
        """Log-probabilities of the tokens whose text has not been handed on yet (only when asked)."""

    def add(self, piece: bytes | None, logprob: TokenLogprob | None = None) -> Delta | None:
        """Take one token; the text to hand on now, if any. Sets `finish` when this token ended the reply."""
        if piece is None:  # end of generation (EOS / end-of-turn)
            self.finish = "stop"
            return None
        self.completion += 1
        if logprob is not None:
            self._scored.append(logprob)
        delta: Delta | None = None
        text = self._decode(piece)
        if self._leading and text:  # replies never start with the blank the template's last word leaves open
            text = text.lstrip()
            self._leading = not text
        if text:
            if emit := self._cut.feed(text):
                delta = Delta(emit, tuple(self._scored))
                self._scored.clear()
            if self._cut.stopped:
                self.finish = "stop"
                return delta
        if self.completion >= self.max_tokens:
            self.finish = "length"
        return delta

    def close(self, finish: FinishReason | None = None) -> list[StreamEvent]:
        """The held-back text (a character cut in half is dropped, never shown broken) and the final Done."""
        finish = finish or self.finish or "length"
        if finish == "length" and self.completion >= self.budget:
            finish = "context"  # the window was full, not the user's max_tokens: say so, the fix differs
        events: list[StreamEvent] = []
        if held := self._cut.flush():
            events.append(Delta(held, tuple(self._scored)))
        events.append(Done(Usage(self.n_prompt, self.completion), finish_reason=finish))
        return events


def token_logprob(
    logits_ptr: Any, n_vocab: int, token: int, piece: bytes, top: int, token_bytes: Callable[[int], bytes]
) -> TokenLogprob:
    """`token`'s log-probability under raw logits (before sampling settings), and the `top` likeliest tokens:
    a log-softmax over the vocabulary, about a millisecond for 262k tokens."""
    import numpy as np

    logits = np.ctypeslib.as_array(logits_ptr, shape=(n_vocab,))
    peak = float(logits.max())
    total = peak + math.log(float(np.exp(logits - peak).sum()))
    best: tuple[tuple[bytes, float], ...] = ()
    if top:
        ids = np.argpartition(logits, -top)[-top:]
        ids = ids[np.argsort(-logits[ids], kind="stable")]
        best = tuple((token_bytes(int(i)), float(logits[i]) - total) for i in ids)
    return TokenLogprob(piece, float(logits[token]) - total, best)
