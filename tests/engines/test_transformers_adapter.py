"""A PEFT LoRA adapter through the transformers engine (`LaunchOptions.lora_path`) on the real Gemma 3 270M: the
engine's logits are peft's own for base + adapter (and not the base's), and an adapter that is a pickle, not a
folder, or made for another network is refused with a BadModelFile that says so."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from engines.adapters.transformers_adapter import apply_adapter, is_adapter_folder
from engines.adapters.transformers_convert import ensure_converted
from engines.adapters.transformers_engine import TransformersEngine
from engines.errors import BadModelFile, EngineUnavailable
from engines.templates.chat import load_builtin_template
from engines.types import Capability, LaunchOptions, ModelSpec
from tests.engines.tiny_lora import TinyLora, logits_of, make_adapter

pytestmark = pytest.mark.real_model


def _spec(path: Path) -> ModelSpec:
    return ModelSpec(
        id="gemma-3-270m",
        path=path,
        format="gguf",
        chat_template=load_builtin_template("base-qa"),
        engines=("transformers",),
    )


@pytest.fixture(scope="module")
def converted(gemma_path: Path, transformers_cache: Path) -> Path:
    return ensure_converted(gemma_path, transformers_cache)


@pytest.fixture(scope="module")
def lora(converted: Path, tmp_path_factory: pytest.TempPathFactory) -> TinyLora:
    return make_adapter(converted, tmp_path_factory.mktemp("lora") / "adapter")


@pytest.fixture(scope="module")
def tuned_engine(gemma_path: Path, transformers_cache: Path, lora: TinyLora) -> Iterator[TransformersEngine]:
    engine = TransformersEngine(cache_dir=transformers_cache)
    engine.load(_spec(gemma_path), LaunchOptions(n_ctx=512, n_threads=2, lora_path=lora.folder))
    yield engine
    engine.unload()


def test_the_engine_declares_lora() -> None:
    assert Capability.LORA in TransformersEngine.capabilities


def test_the_adapter_changes_the_logits_as_peft_does(tuned_engine: TransformersEngine, lora: TinyLora) -> None:
    import torch

    got = logits_of(tuned_engine.model, lora.input_ids)
    assert type(tuned_engine.model).__name__ == "Gemma3ForCausalLM"  # merged: a plain model, no peft wrapper left
    assert torch.allclose(got, lora.tuned_logits, atol=1e-4), float((got - lora.tuned_logits).abs().max())
    assert float((got - lora.base_logits).abs().max()) > 0.1  # and the adapter does change them


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for file in src.iterdir():
        (dst / file.name).write_bytes(file.read_bytes())
    return dst


def test_a_pickle_adapter_is_refused_before_the_weights_load(
    gemma_path: Path, transformers_cache: Path, lora: TinyLora, tmp_path: Path
) -> None:
    folder = _copy(lora.folder, tmp_path / "pickled")
    (folder / "adapter_model.safetensors").rename(folder / "adapter_model.bin")
    engine = TransformersEngine(cache_dir=transformers_cache)
    with pytest.raises(BadModelFile, match=r"pickle \(adapter_model\.bin\).*arbitrary code"):
        engine.load(_spec(gemma_path), LaunchOptions(lora_path=folder))
    assert engine.model is None


def test_a_gguf_lora_file_is_for_llama_cpp(gemma_path: Path, transformers_cache: Path, tmp_path: Path) -> None:
    file = tmp_path / "adapter.gguf"
    file.write_bytes(b"GGUF")
    with pytest.raises(BadModelFile, match="PEFT adapter folder"):
        TransformersEngine(cache_dir=transformers_cache).load(_spec(gemma_path), LaunchOptions(lora_path=file))
    assert not is_adapter_folder(file)


def test_broken_config_is_a_bad_model_file(lora: TinyLora, tmp_path: Path) -> None:
    folder = _copy(lora.folder, tmp_path / "broken")
    (folder / "adapter_config.json").write_text("{not json")
    with pytest.raises(BadModelFile, match=r"adapter_config\.json is not valid JSON"):
        apply_adapter(object(), folder)


def _tiny_llama() -> object:
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4
    )
    return transformers.LlamaForCausalLM(config)


def test_an_adapter_for_another_shape_says_it_does_not_fit(lora: TinyLora) -> None:
    # Same module names (q_proj, v_proj), other sizes: peft's shape error becomes "does not fit", naming the base.
    with pytest.raises(BadModelFile, match=r"does not fit .*LlamaForCausalLM.*size mismatch.*trained on .*"):
        apply_adapter(_tiny_llama(), lora.folder)


def test_an_adapter_for_other_modules_is_refused_before_loading(lora: TinyLora, tmp_path: Path) -> None:
    folder = _copy(lora.folder, tmp_path / "gpt2ish")
    config = json.loads((folder / "adapter_config.json").read_text())
    config["target_modules"] = ["c_attn"]
    config["base_model_name_or_path"] = "openai-community/gpt2"
    (folder / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(BadModelFile, match=r"no c_attn modules; it was trained on openai-community/gpt2"):
        apply_adapter(_tiny_llama(), folder)


def test_without_peft_the_engine_names_the_extra(
    gemma_path: Path, transformers_cache: Path, lora: TinyLora, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "peft", None)  # find_spec("peft") is then None, as when it is not installed
    with pytest.raises(EngineUnavailable, match=r"pip install 'llm-tui\[tune\]'"):
        TransformersEngine(cache_dir=transformers_cache).load(_spec(gemma_path), LaunchOptions(lora_path=lora.folder))
