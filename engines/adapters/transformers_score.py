"""Log-likelihood scoring on transformers: how likely each given continuation is after a raw prompt.

The prompt is tokenized as raw text (special-token text parsed, exactly one BOS where the model wants one, as the
engine's chat prompts get); each choice on its own, without BOS. One forward pass over the prompt, under
`torch.inference_mode`, gives the log-softmax of the last position, which every single-token choice (" A",
" B", ...) reads. A choice of several tokens takes one more pass over the prompt and its tokens, and sums the
log-probabilities its positions give its tokens.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from engines.errors import BadRequest, Cancelled, ContextLengthExceeded

if TYPE_CHECKING:
    from engines.adapters.transformers_engine import TransformersEngine


def score_choices(
    engine: TransformersEngine, prompt: str, choices: Sequence[str], cancel: threading.Event
) -> list[float]:
    """The natural-log probability of each of `choices` after `prompt`, in order.

    Raises BadRequest for an empty prompt or choice, ContextLengthExceeded when the prompt with the longest choice
    does not fit the model's context, Cancelled once `cancel` is set (checked before each forward pass)."""
    model = engine._require_model()
    engine._refuse_on_whisper("scoring")
    if not choices:
        raise BadRequest("give at least one continuation to score")
    tokenizer = engine.tokenizer
    tokens = prompt_tokens(tokenizer, prompt, engine._bos_id if engine._add_bos else None)
    if not tokens:
        raise BadRequest("the prompt to score has no tokens")
    conts = [continuation_tokens(tokenizer, choice, i) for i, choice in enumerate(choices)]
    n_ctx, longest = engine.context_size, max(len(c) for c in conts)
    if len(tokens) + longest - 1 > n_ctx:
        raise ContextLengthExceeded(
            f"the prompt to score is {len(tokens)} tokens and its longest choice {longest} but the context holds "
            f"{n_ctx}; shorten it (fewer examples) or relaunch with a larger context"
        )
    first = _logprobs(model, tokens, 1, cancel)[-1]
    scores = []
    for cont in conts:
        if len(cont) == 1:
            scores.append(float(first[cont[0]]))
            continue
        rows = _logprobs(model, tokens + cont[:-1], len(cont), cancel)  # row i: the odds of cont[i]
        scores.append(float(first[cont[0]]) + sum(float(rows[i][t]) for i, t in enumerate(cont) if i > 0))
    return scores


def prompt_tokens(tokenizer: Any, prompt: str, bos_id: int | None) -> list[int]:
    """`prompt`'s tokens, with `bos_id` first when given (and the text did not start with it)."""
    tokens: list[int] = list(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    if bos_id is not None and (not tokens or tokens[0] != bos_id):
        tokens.insert(0, bos_id)
    return tokens


def continuation_tokens(tokenizer: Any, choice: str, index: int = 0) -> list[int]:
    """`choice`'s tokens on their own (no BOS); BadRequest when it has none."""
    cont: list[int] = list(tokenizer(choice, add_special_tokens=False)["input_ids"])
    if not cont:
        raise BadRequest(f"choice {index + 1} to score is empty ({choice!r})")
    return cont


def _logprobs(model: Any, tokens: list[int], keep: int, cancel: threading.Event) -> Any:
    """Log-softmax (float64, on the CPU) of the last `keep` positions' next-token logits after one forward pass
    (`logits_to_keep`: a 262k-token vocabulary makes every position's logits a megabyte)."""
    import torch

    if cancel.is_set():
        raise Cancelled("scoring cancelled")
    device = model.device if hasattr(model, "device") else "cpu"
    with torch.inference_mode():
        ids = torch.tensor([tokens], dtype=torch.long, device=device)
        logits = model(input_ids=ids, use_cache=False, logits_to_keep=keep).logits[0, -keep:]
        return torch.log_softmax(logits.to(torch.float64), dim=-1).cpu()
