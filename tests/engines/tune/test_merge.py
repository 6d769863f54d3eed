"""Merging a LoRA adapter into the real Gemma 3 270M: the merged folder predicts what base + adapter predicts (peft's
own logits, to 1e-4), loads through the transformers engine, says where it came from, and is written whole or not
at all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from engines.adapters.transformers_convert import ensure_converted
from engines.adapters.transformers_engine import TransformersEngine
from engines.errors import BadModelFile, BadRequest
from engines.templates.chat import load_builtin_template
from engines.tune.merge import merge_adapter
from engines.tune.provenance import PROVENANCE_FILE, read_provenance
from engines.types import LaunchOptions, ModelSpec
from tests.engines.tiny_lora import TinyLora, logits_of, make_adapter

pytestmark = pytest.mark.real_model

SHA = "cd" * 32
PROV = {"run": "pirate", "base": "gemma-3-270m", "data_sha256": SHA}
TEMPLATE = load_builtin_template("base-qa")


@pytest.fixture(scope="module")
def converted(gemma_path: Path, transformers_cache: Path) -> Path:
    return ensure_converted(gemma_path, transformers_cache)


@pytest.fixture(scope="module")
def lora(converted: Path, tmp_path_factory: pytest.TempPathFactory) -> TinyLora:
    return make_adapter(converted, tmp_path_factory.mktemp("lora") / "adapter")


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir()) if parent.exists() else []


def test_the_merged_model_is_base_plus_adapter(converted: Path, lora: TinyLora, tmp_path: Path) -> None:
    import torch

    out = tmp_path / "models" / "pirate-merged"
    assert merge_adapter(converted, lora.folder, out, PROV, chat_template=TEMPLATE) == out
    assert _leftovers(out.parent) == ["pirate-merged"]  # no temporary folder left beside it
    assert (out / "model.safetensors").is_file() and not list(out.glob("*.bin"))
    assert (out / "tokenizer.json").is_file() or (out / "tokenizer.model").is_file()
    prov = read_provenance(out)
    assert prov is not None and (prov.run, prov.base, prov.data_sha256) == ("pirate", "gemma-3-270m", SHA)
    assert prov.adapter == str(lora.folder) and prov.created is not None
    # The base (a GGUF's conversion) has no chat template: the run's is saved with the tokenizer.
    assert json.loads((out / "tokenizer_config.json").read_text()).get("chat_template") == TEMPLATE or (
        (out / "chat_template.jinja").read_text() == TEMPLATE
    )
    saved = json.loads((out / "config.json").read_text())
    assert saved.get("dtype", saved.get("torch_dtype")) == "float32"  # the dtype the base was saved in

    engine = TransformersEngine()
    engine.load(ModelSpec(id="pirate-merged", path=out, format="hf"), LaunchOptions(n_ctx=512, n_threads=2))
    try:
        got = logits_of(engine.model, lora.input_ids)
    finally:
        engine.unload()
    assert torch.allclose(got, lora.tuned_logits, atol=1e-4), float((got - lora.tuned_logits).abs().max())
    assert float((got - lora.base_logits).abs().max()) > 0.1


def test_an_existing_folder_is_never_overwritten(converted: Path, lora: TinyLora, tmp_path: Path) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(BadRequest, match="already exists"):
        merge_adapter(converted, lora.folder, out, PROV)
    assert _leftovers(out) == ["keep.txt"]


def test_incomplete_provenance_is_refused_first(converted: Path, lora: TinyLora, tmp_path: Path) -> None:
    with pytest.raises(BadRequest, match="'data_sha256'"):
        merge_adapter(converted, lora.folder, tmp_path / "out", {"run": "x", "base": "y"})
    assert _leftovers(tmp_path) == []


def test_a_pickle_adapter_is_refused_before_the_base_loads(converted: Path, lora: TinyLora, tmp_path: Path) -> None:
    adapter = tmp_path / "pickled"
    adapter.mkdir()
    for file in lora.folder.iterdir():
        (adapter / file.name).write_bytes(file.read_bytes())
    (adapter / "adapter_model.safetensors").rename(adapter / "adapter_model.bin")
    with pytest.raises(BadModelFile, match="pickle"):
        merge_adapter(converted, adapter, tmp_path / "models" / "out", PROV)
    assert _leftovers(tmp_path / "models") == []


def test_a_failure_while_writing_removes_the_temporary_folder(
    converted: Path, lora: TinyLora, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(base: Path, adapter: Path, temp: Path, template: str | None) -> None:
        temp.mkdir()
        (temp / "model.safetensors").write_bytes(b"half a model")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("engines.tune.merge._write_merged", full_disk)
    with pytest.raises(OSError, match="No space"):
        merge_adapter(converted, lora.folder, tmp_path / "models" / "out", PROV)
    assert _leftovers(tmp_path / "models") == []
    assert not (tmp_path / "models" / "out" / PROVENANCE_FILE).exists()
