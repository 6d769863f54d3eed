"""Log-likelihood scoring on llama.cpp: how likely each given continuation is after a raw prompt.

The prompt is tokenized as `LlamaCppEngine.complete` tokenizes it and evaluated through the engine's
PrefixCache under its own session (`SCORE_SESSION`), so a conversation holding the context is parked and given
back untouched. llama.cpp's logits depend on how tokens were batched, so only whole `n_batch` batches of a
shared prefix are reused (5-shot prompts of one subject share their first 512 tokens): a prompt then scores
exactly as it would from scratch, whatever was scored before it. One pass over the prompt gives the next
token's log-softmax over the whole vocabulary; every single-token choice (" A", " B", ...) reads it. A choice
of several tokens scores each further token after the prompt and its tokens before it, and sums them.

An instance launched with parallel slots (or speculative decoding) runs its requests on the slots' own
context, and keeps this Llama's context small: scoring there is refused with CapabilityNotSupported.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from engines.errors import BadRequest, Cancelled, CapabilityNotSupported, ContextLengthExceeded
from engines.types import Params

if TYPE_CHECKING:
    import numpy as np

    from engines.adapters.llama_cpp import LlamaCppEngine

SCORE_SESSION = "\x00score"
"""The PrefixCache session scoring evaluates under (no conversation id can be this)."""


SLOTS_REFUSAL = (
    "log-probability scoring on an instance launched with parallel slots or speculative decoding (its requests "
    "run on the slots' own context); relaunch it with parallel 1 and no draft model to evaluate by scoring"
)


def score_choices(engine: LlamaCppEngine, prompt: str, choices: Sequence[str], cancel: threading.Event) -> list[float]:
    """The natural-log probability of each of `choices` after `prompt`, in order (see the module's docstring).

    Raises CapabilityNotSupported on a slotted instance, BadRequest for an empty prompt or choice,
    ContextLengthExceeded when the prompt (with the longest choice) does not fit the context, Cancelled once
    `cancel` is set (checked between batches of the prompt and between tokens of a choice)."""
    llm = engine._require_llm()
    if engine._slots is not None:
        raise CapabilityNotSupported(engine.name, SLOTS_REFUSAL)
    if not choices:
        raise BadRequest("give at least one continuation to score")
    if cancel.is_set():
        raise Cancelled("scoring cancelled")
    tokens = engine._prepare_completion(prompt, Params()).tokens  # as `complete` would; refuses a giant prompt
    if not tokens:
        raise BadRequest("the prompt to score has no tokens")
    conts = [continuation_tokens(llm, choice, i) for i, choice in enumerate(choices)]
    n_ctx, longest = int(llm.n_ctx()), max(len(c) for c in conts)
    if len(tokens) + longest - 1 > n_ctx:
        raise ContextLengthExceeded(
            f"the prompt to score is {len(tokens)} tokens and its longest choice {longest} but the context holds "
            f"{n_ctx}; shorten it (fewer examples) or relaunch with a larger context"
        )
    _hold(engine, llm, tokens, cancel)
    first = _last_logprobs(engine, llm)
    scores = []
    for cont in conts:
        total = float(first[cont[0]])
        if len(cont) > 1:
            total += _continuation_logprob(engine, llm, tokens, cont, cancel)
        scores.append(total)
    return scores


def continuation_tokens(llm: Any, choice: str, index: int = 0) -> list[int]:
    """`choice`'s tokens on their own: no BOS, special-token text left as text; BadRequest when it has none."""
    cont: list[int] = list(llm.tokenize(choice.encode("utf-8"), add_bos=False, special=False))
    if not cont:
        raise BadRequest(f"choice {index + 1} to score is empty ({choice!r})")
    return cont


def log_softmax(logits: Any) -> np.ndarray[Any, Any]:
    """Natural-log probabilities from raw logits, in float64 over the whole vocabulary."""
    import numpy as np

    values = np.asarray(logits, dtype=np.float64)
    peak = float(values.max())
    return values - (peak + math.log(float(np.exp(values - peak).sum())))


def _hold(engine: LlamaCppEngine, llm: Any, tokens: list[int], cancel: threading.Event) -> None:
    """Make the context hold exactly `tokens`, evaluated in the batches a fresh context would use.

    llama.cpp's logits depend on how the tokens were batched (by up to 0.1 in a letter's log-probability on
    Gemma 3 270M, enough to change the pick): only whole batches from the start (`n_batch` tokens each) are
    reused, so a prompt scores the same whatever was scored before it, as if evaluated from scratch."""
    n_batch = int(llm.n_batch)
    n_past = engine._prefix.prepare(tokens, SCORE_SESSION) // n_batch * n_batch
    if n_past > 0 and not engine._lib.llama_memory_seq_rm(engine._lib.llama_get_memory(llm.ctx), -1, n_past, -1):
        n_past = 0
    if n_past == 0:
        engine._prefix.prepare(tokens, SCORE_SESSION, reuse=False)  # an empty memory, laid out afresh
    llm.n_tokens = n_past  # Llama.eval drops the cells from here on
    engine.prompt_tokens_evaluated = len(tokens) - n_past
    while n_past < len(tokens):
        if cancel.is_set():
            raise Cancelled("scoring cancelled")
        chunk = tokens[n_past : n_past + n_batch]
        llm.eval(chunk)
        n_past += len(chunk)


def _continuation_logprob(
    engine: LlamaCppEngine, llm: Any, tokens: list[int], cont: list[int], cancel: threading.Event
) -> float:
    """The log-probability of `cont[1:]` after `tokens + cont[:1]` (the first token is scored by the caller); each
    position is evaluated in the batches a fresh context would use for that prompt, whole batches reused."""
    total = 0.0
    for i in range(1, len(cont)):
        _hold(engine, llm, tokens + cont[:i], cancel)
        total += float(_last_logprobs(engine, llm)[cont[i]])
    return total


def _last_logprobs(engine: LlamaCppEngine, llm: Any) -> np.ndarray[Any, Any]:
    import numpy as np

    ptr = engine._lib.llama_get_logits_ith(llm.ctx, -1)
    return log_softmax(np.ctypeslib.as_array(ptr, shape=(int(llm.n_vocab()),)))
