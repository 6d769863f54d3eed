"""A small LoRA adapter made with peft on a real model folder, with peft's own logits for it as the reference: its
B matrices are random (not peft's zeros), so the adapter changes what the model predicts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROMPT = "The capital of France is"


@dataclass(frozen=True)
class TinyLora:
    folder: Path
    input_ids: list[int]
    base_logits: Any
    """torch tensor [tokens, vocab]: the base model alone."""
    tuned_logits: Any
    """The same through peft's PeftModel with the adapter (unmerged): the reference."""


def make_adapter(base_folder: Path, out: Path, *, targets: tuple[str, ...] = ("q_proj", "v_proj")) -> TinyLora:
    import peft
    import torch
    import transformers

    torch.manual_seed(0)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(base_folder), local_files_only=True)
    model: Any = transformers.AutoModelForCausalLM.from_pretrained(
        str(base_folder), dtype=torch.float32, local_files_only=True, use_safetensors=True
    )
    model.eval()
    ids = tokenizer(PROMPT)["input_ids"]
    tensor = torch.tensor([ids])
    with torch.inference_mode():
        base = model(input_ids=tensor).logits[0].clone()
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=list(targets), init_lora_weights=False)
    tuned_model = peft.get_peft_model(model, config)
    tuned_model.eval()
    with torch.inference_mode():
        tuned = tuned_model(input_ids=tensor).logits[0].clone()
    tuned_model.save_pretrained(str(out))
    return TinyLora(out, ids, base, tuned)


def logits_of(model: Any, ids: list[int]) -> Any:
    import torch

    with torch.inference_mode():
        return model(input_ids=torch.tensor([ids], device=model.device)).logits[0].float().cpu()
