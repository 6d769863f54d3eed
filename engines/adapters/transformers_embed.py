"""Embeddings from a transformers causal LM: mean-pooled, L2-normalised last hidden states of its base network."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from engines.errors import Cancelled, EmbedInputTooLong


def embed_texts(
    model: Any, tokenizer: Any, texts: Sequence[str], n_ctx: int, pad_id: int | None, cancel: threading.Event | None
) -> tuple[list[list[float]], int]:
    """One vector per text (attention-masked mean, L2-normalised) and the tokens read; a text longer than `n_ctx`
    raises EmbedInputTooLong before any work (a cut text gives a wrong vector); `cancel` stops between texts."""
    if not texts:
        return [], 0
    import torch

    base = model.base_model
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else pad_id
    vectors: list[list[float]] = []
    encoded = [tokenizer(text, add_special_tokens=True)["input_ids"] for text in texts]
    for i, ids in enumerate(encoded):
        if len(ids) > n_ctx:
            raise EmbedInputTooLong(i, len(ids), n_ctx)
    with torch.inference_mode():
        for ids in encoded:  # one at a time: no padding, so no model-specific padding side to get right
            if cancel is not None and cancel.is_set():
                raise Cancelled("embedding cancelled")
            if not ids:
                ids = [pad if pad is not None else 0]
            input_ids = torch.tensor([ids], dtype=torch.long, device=model.device)
            mask = torch.ones_like(input_ids)
            hidden = getattr(base(input_ids=input_ids, attention_mask=mask), "last_hidden_state", None)
            if hidden is None:  # a model without a separate base network: its last hidden layer
                hidden = base(input_ids=input_ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1]
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)
            pooled = torch.nn.functional.normalize(pooled.float(), dim=-1)
            vectors.append([float(x) for x in pooled[0].tolist()])
    return vectors, sum(len(ids) for ids in encoded)
