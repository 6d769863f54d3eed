"""Default LoRA targets: the real converted Gemma 3 (built on the meta device from its config: no weights load), the
Phi-3 and GPT-2 layouts from small configs, and the fallback for an architecture nobody listed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch
import transformers

from engines.tune.modules import default_target_modules


def on_meta(config: Any) -> Any:
    with torch.device("meta"):
        auto: Any = transformers.AutoModelForCausalLM
        return auto.from_config(config)


def linear_leaves(model: Any) -> set[str]:
    """Leaf names of every layer PEFT's LoRA can wrap (nn.Linear and GPT-2's Conv1D), found independently."""
    kinds = (torch.nn.Linear, transformers.pytorch_utils.Conv1D)
    return {name.split(".")[-1] for name, module in model.named_modules() if isinstance(module, kinds)}


@pytest.mark.real_model
def test_the_converted_gemma_gets_its_attention_and_mlp_projections(gemma_path: Path, transformers_cache: Path) -> None:
    from engines.adapters.transformers_convert import ensure_converted

    folder = ensure_converted(gemma_path, transformers_cache)
    model = on_meta(transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True))
    assert model.config.model_type == "gemma3_text"
    targets = default_target_modules(model)
    assert targets == ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    assert set(targets) == linear_leaves(model) - {"lm_head"}  # every projection, nothing else
    layers = model.config.num_hidden_layers
    wrapped = [n for n, _ in model.named_modules() if n.rsplit(".", 1)[-1] in targets]
    assert len(wrapped) == 7 * layers


def test_phi3_and_gpt2_layouts() -> None:
    phi3 = on_meta(
        transformers.Phi3Config(
            vocab_size=64,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            pad_token_id=0,
            eos_token_id=1,
            bos_token_id=2,
        )
    )
    assert default_target_modules(phi3) == ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")
    gpt2 = on_meta(transformers.GPT2Config(vocab_size=64, n_embd=16, n_layer=1, n_head=2, n_positions=32))
    assert default_target_modules(gpt2) == ("c_attn", "c_proj", "c_fc")
    assert set(default_target_modules(gpt2)) <= linear_leaves(gpt2)


def test_an_unknown_architecture_gets_every_linear_but_the_head_and_embeddings() -> None:
    class Block(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn_in = torch.nn.Linear(4, 4)
            self.mix = torch.nn.Linear(4, 4)
            self.norm = torch.nn.LayerNorm(4)

    class Odd(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed_tokens = torch.nn.Embedding(10, 4)
            self.embed_proj = torch.nn.Linear(4, 4)
            self.blocks = torch.nn.ModuleList([Block(), Block()])
            self.lm_head = torch.nn.Linear(4, 10)

    assert default_target_modules(Odd()) == ("attn_in", "mix")

    # A listed type whose projections are named otherwise falls back the same way.
    class OddLlama(Odd):
        config = transformers.LlamaConfig()

    assert default_target_modules(OddLlama()) == ("attn_in", "mix")
