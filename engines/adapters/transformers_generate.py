"""Pieces of a transformers generate() call: the chat template a tokenizer carries, the end-of-generation ids,
and the stopping criterion that honours Stop, a halt and stop sequences token by token."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from engines.types import Params

# Sampling defaults when a Params field is None: the same as the llama.cpp engine's.
TEMPERATURE, TOP_P, TOP_K = 0.8, 0.95, 40


def tokenizer_template(tokenizer: Any) -> str | None:
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        template = template.get("default") or next(iter(template.values()), None)
    return template if isinstance(template, str) and template.strip() else None


def end_of_generation_ids(model: Any, tokenizer: Any) -> list[int]:
    """End-of-generation ids: the generation config's (one or a list) and the tokenizer's EOS."""
    ids: list[int] = []
    config = getattr(model, "generation_config", None)
    found = getattr(config, "eos_token_id", None)
    for value in (*(found if isinstance(found, list | tuple) else [found]), tokenizer.eos_token_id):
        if isinstance(value, int) and value not in ids:
            ids.append(value)
    return ids


def make_criterion(
    transformers: Any,
    torch: Any,
    cancel: threading.Event,
    halt: threading.Event,
    tokenizer: Any,
    n_prompt: int,
    stops: Sequence[str],
) -> Any:
    """A StoppingCriteria that ends generate() when `cancel` or `halt` is set, or a stop sequence was just generated.

    The stop check decodes only the last few generated tokens (enough to spell the longest stop sequence even
    one byte per token), so generation ends on the very token that completes it.
    """
    window = 4 * max((len(s) for s in stops), default=0) + 2

    class _Criterion(transformers.StoppingCriteria):  # type: ignore[misc]
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            stop = cancel.is_set() or halt.is_set()
            if not stop and stops:
                tail = input_ids[0, max(n_prompt, input_ids.shape[1] - window) :].tolist()
                text = tokenizer.decode(tail, skip_special_tokens=True)
                stop = any(s in text for s in stops)
            return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)

    return _Criterion()


def generate_kwargs(params: Params, max_tokens: int, eos_ids: list[int], pad_id: int | None) -> dict[str, Any]:
    """generate() arguments for a request's sampling settings."""
    temperature = TEMPERATURE if params.temperature is None else params.temperature
    kwargs: dict[str, Any] = {
        "max_new_tokens": max_tokens,
        "do_sample": temperature > 0,
        "eos_token_id": eos_ids or None,
        "pad_token_id": pad_id,
    }
    if temperature > 0:
        top_k = TOP_K if params.top_k is None else params.top_k
        kwargs.update(
            temperature=temperature,
            top_p=TOP_P if params.top_p is None else params.top_p,
            top_k=top_k or None,  # 0 turns top-k off
        )
    else:  # greedy: no sampling knobs, or the model's own defaults would be reported as ignored
        kwargs.update(temperature=None, top_p=None, top_k=None)
    if params.repetition_penalty is not None:
        kwargs["repetition_penalty"] = params.repetition_penalty
    return kwargs


def special_token_ids(tokenizer: Any, stops: Sequence[str]) -> list[int]:
    """Ids of stop sequences that are one special token ("<end_of_turn>"), which the streamed text never shows."""
    special = set(getattr(tokenizer, "all_special_tokens", ())) | set(
        getattr(tokenizer, "get_added_vocab", dict)().keys()
    )
    ids = []
    for stop in stops:
        if stop in special:
            token_id = tokenizer.convert_tokens_to_ids(stop)
            if isinstance(token_id, int) and token_id != tokenizer.unk_token_id:
                ids.append(token_id)
    return ids
