"""Tiny model files for discovery tests: GGUFs written by gguf.GGUFWriter, safetensors and HF cache layouts."""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

import gguf
import numpy as np

EMBD = 32
VOCAB = 8
# token_embd (VOCAB x EMBD) + attn_norm (EMBD): the parameter count every tiny GGUF below has
TINY_PARAMS = VOCAB * EMBD + EMBD


def write_gguf(
    path: Path,
    arch: str = "llama",
    *,
    name: str | None = None,
    context_length: int = 2048,
    blocks: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    file_type: gguf.LlamaFileType = gguf.LlamaFileType.MOSTLY_F16,
    chat_template: str | None = None,
) -> Path:
    """A valid GGUF with the usual architecture keys and two small tensors."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(path, arch)
    if name:
        w.add_name(name)
    w.add_context_length(context_length)
    w.add_block_count(blocks)
    w.add_embedding_length(EMBD)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_file_type(file_type)
    if chat_template:
        w.add_chat_template(chat_template)
    w.add_tensor("token_embd.weight", np.zeros((VOCAB, EMBD), dtype=np.float16))
    w.add_tensor("blk.0.attn_norm.weight", np.ones(EMBD, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def write_split_gguf(path: Path, arch: str = "qwen2", parts: int = 3) -> list[Path]:
    """A GGUF split into `parts` files (one tensor each) named like path-00001-of-0000N.gguf."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(path, arch, split_max_tensors=1)
    w.add_name("Split Test")
    w.add_context_length(4096)
    w.add_block_count(parts)
    w.add_embedding_length(EMBD)
    w.add_head_count(8)
    w.add_head_count_kv(8)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    for i in range(parts):
        w.add_tensor(f"blk.{i}.ffn_up.weight", np.ones((4, EMBD), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return [path.with_name(f"{path.stem}-{i:05d}-of-{parts:05d}.gguf") for i in range(1, parts + 1)]


_ST_SIZES = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8, "U8": 1}


def safetensors_bytes(tensors: dict[str, tuple[str, tuple[int, ...]]], metadata: dict[str, str] | None = None) -> bytes:
    """A safetensors file with zeroed data for the given name -> (dtype, shape)."""
    header: dict[str, object] = {}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        n = _ST_SIZES[dtype]
        for dim in shape:
            n *= dim
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    if metadata is not None:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + bytes(offset)


def llama_config(**overrides: object) -> dict[str, object]:
    """A small Llama-style config.json."""
    config: dict[str, object] = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 8192,
        "torch_dtype": "bfloat16",
        "vocab_size": 16,
    }
    config.update(overrides)
    return config


# name -> (dtype, shape): 16*64 + 64 + 64*64 + 64*16 = 6208 parameters, BF16 holding most of them
HF_TENSORS: dict[str, tuple[str, tuple[int, ...]]] = {
    "model.embed_tokens.weight": ("BF16", (16, 64)),
    "model.norm.weight": ("F32", (64,)),
    "model.layers.0.mlp.up_proj.weight": ("BF16", (64, 64)),
    "lm_head.weight": ("BF16", (64, 16)),
}
HF_PARAMS = 16 * 64 + 64 + 64 * 64 + 64 * 16


def write_hf_folder(folder: Path, *, shards: int = 1, config: dict[str, object] | None = None) -> Path:
    """config.json + model.safetensors, or N shards with model.safetensors.index.json."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config or llama_config()))
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ messages }}"}))
    if shards == 1:
        (folder / "model.safetensors").write_bytes(safetensors_bytes(HF_TENSORS, {"format": "pt"}))
        return folder
    names = list(HF_TENSORS)
    weight_map: dict[str, str] = {}
    for i in range(shards):
        file = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: HF_TENSORS[n] for n in names[i::shards]}
        (folder / file).write_bytes(safetensors_bytes(part))
        weight_map.update(dict.fromkeys(part, file))
    index = {"metadata": {"total_size": 0}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    return folder


def add_to_hf_cache(cache: Path, repo_id: str, files: dict[str, bytes], revision: str = "a" * 40) -> Path:
    """Lay out files as huggingface_hub does: blobs by hash, snapshot symlinks, refs/main. Returns the snapshot."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / revision
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    for rel, data in files.items():
        digest = hashlib.sha256(data).hexdigest()
        blob = repo / "blobs" / digest
        blob.write_bytes(data)
        link = snapshot / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return snapshot
