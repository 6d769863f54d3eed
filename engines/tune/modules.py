"""Which layers LoRA adapts by default: the attention and MLP projections of the architectures people tune."""

from __future__ import annotations

from typing import Any

_ATTENTION_AND_MLP = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

_BY_MODEL_TYPE: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(
        ("llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "gemma3_text"),
        _ATTENTION_AND_MLP,
    ),
    "phi3": ("qkv_proj", "o_proj", "gate_up_proj", "down_proj"),
    "gpt2": ("c_attn", "c_proj", "c_fc"),
}
"""config.model_type -> the projections' module names (leaf names, as PEFT's target_modules matches them)."""

_NEVER = ("lm_head", "embed", "wte", "wpe")
"""Name parts of layers left alone by the fallback: the output head and the embeddings."""


def default_target_modules(model: Any) -> tuple[str, ...]:
    """The leaf names of the layers to adapt: the architecture's attention and MLP projections where it is known
    (those the model has), else every linear layer's name but the output head's and the embeddings'."""
    import torch

    linear_types: tuple[type[Any], ...] = (torch.nn.Linear,)
    try:
        from transformers.pytorch_utils import Conv1D  # GPT-2's projections

        linear_types += (Conv1D,)
    except ImportError:
        pass
    present: dict[str, None] = {}
    for name, module in model.named_modules():
        if isinstance(module, linear_types) and name:
            present.setdefault(name.rsplit(".", 1)[-1], None)
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    known = _BY_MODEL_TYPE.get(model_type or "", ())
    chosen = tuple(name for name in known if name in present)
    if chosen:
        return chosen
    return tuple(name for name in present if not any(part in name.lower() for part in _NEVER))
