"""Realistic model repos for the fake Hub: real GGUF and safetensors headers, virtual (zero) weights after them.

A GGUF header here is written by gguf.GGUFWriter with a tensor table that declares the tensors of a real model
shape at a real quantization mix (an 8B Llama at Q4_K_M is 4.9 GB), so the file a repo serves has a real size
while costing only its header in memory. Each builder registers its repo on a FakeHub and returns what a test
asserts against: file names, sizes, the hashes the Hub reports, and the numbers the header declares.

The sha256 a virtual file's listing reports is made up (hashing GBs of zeros is too slow): a test that downloads
one whole must expect the hash check to fail, or serve bytes it can hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from tests.engines.fake_hub import FakeHub, FileBytes, HubRepo, ServedData, VirtualBytes
from tests.engines.gguf_corpus import llama_config

Q = gguf.GGMLQuantizationType

LLAMA3_CHAT_TEMPLATE = (
    "{% for message in messages %}<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    "{{ message['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


@dataclass(frozen=True)
class ModelShape:
    """The shape of a Llama-style decoder: what its tensor table and architecture keys declare."""

    arch: str = "llama"
    blocks: int = 32
    embd: int = 4096
    heads: int = 32
    kv_heads: int = 8
    ffn: int = 14336
    vocab: int = 128256
    ctx: int = 8192

    @property
    def kv_dim(self) -> int:
        return self.embd // self.heads * self.kv_heads

    @property
    def params(self) -> int:
        """Elements over all tensors (token_embd, the blocks, output_norm, output)."""
        per_block = 2 * self.embd * self.embd + 2 * self.kv_dim * self.embd + 3 * self.ffn * self.embd + 2 * self.embd
        return 2 * self.vocab * self.embd + self.embd + self.blocks * per_block


LLAMA_3_8B = ModelShape()
LLAMA_3_70B = ModelShape(blocks=80, embd=8192, heads=64, kv_heads=8, ffn=28672)


@dataclass(frozen=True)
class QuantMix:
    """Which ggml type each 2-D tensor gets at one llama.cpp quantization (a simplification of its rules):
    attn_v and ffn_down take the first of their pair on the layers llama.cpp gives more bits, else the second."""

    file_type: gguf.LlamaFileType
    base: Q
    output: Q | None = None  # output.weight (None: base)
    embd: Q | None = None  # token_embd.weight
    attn_output: Q | None = None
    attn_v: tuple[Q, Q] | None = None
    ffn_down: tuple[Q, Q] | None = None


_F = gguf.LlamaFileType
# Sizes of an 8B Llama with these mixes land within ~3 % of the published GGUFs (Q4_K_M 4.91 GB, Q8_0 8.53 GB).
QUANT_MIXES: dict[str, QuantMix] = {
    "IQ2_XXS": QuantMix(_F.MOSTLY_IQ2_XXS, Q.IQ2_XXS, Q.Q5_K, Q.Q2_K, None, (Q.Q4_K, Q.Q4_K), (Q.IQ3_S, Q.IQ2_XXS)),
    "IQ2_XS": QuantMix(_F.MOSTLY_IQ2_XS, Q.IQ2_XS, Q.Q5_K, Q.Q2_K, None, (Q.Q4_K, Q.Q4_K), (Q.IQ3_S, Q.IQ2_XS)),
    "Q2_K": QuantMix(_F.MOSTLY_Q2_K, Q.Q2_K, Q.Q6_K, None, Q.Q3_K, (Q.Q4_K, Q.Q3_K), (Q.Q3_K, Q.Q3_K)),
    "IQ3_XXS": QuantMix(_F.MOSTLY_IQ3_XXS, Q.IQ3_XXS, Q.Q5_K, Q.IQ3_S, None, (Q.Q4_K, Q.IQ3_S), (Q.IQ3_S, Q.IQ3_XXS)),
    "Q3_K_S": QuantMix(_F.MOSTLY_Q3_K_S, Q.Q3_K, Q.Q6_K),
    "Q3_K_M": QuantMix(_F.MOSTLY_Q3_K_M, Q.Q3_K, Q.Q6_K, None, Q.Q4_K, (Q.Q5_K, Q.Q4_K), (Q.Q5_K, Q.Q4_K)),
    "Q3_K_L": QuantMix(_F.MOSTLY_Q3_K_L, Q.Q3_K, Q.Q6_K, None, Q.Q5_K, (Q.Q5_K, Q.Q5_K), (Q.Q5_K, Q.Q5_K)),
    "IQ4_XS": QuantMix(_F.MOSTLY_IQ4_XS, Q.IQ4_XS, Q.Q6_K),
    "IQ4_NL": QuantMix(_F.MOSTLY_IQ4_NL, Q.IQ4_NL, Q.Q6_K),
    "Q4_0": QuantMix(_F.MOSTLY_Q4_0, Q.Q4_0, Q.Q6_K),
    "Q4_1": QuantMix(_F.MOSTLY_Q4_1, Q.Q4_1, Q.Q6_K),
    "Q4_K_S": QuantMix(_F.MOSTLY_Q4_K_S, Q.Q4_K, Q.Q6_K, None, None, (Q.Q5_K, Q.Q4_K), (Q.Q5_K, Q.Q4_K)),
    "Q4_K_M": QuantMix(_F.MOSTLY_Q4_K_M, Q.Q4_K, Q.Q6_K, None, None, (Q.Q6_K, Q.Q4_K), (Q.Q6_K, Q.Q4_K)),
    "Q5_0": QuantMix(_F.MOSTLY_Q5_0, Q.Q5_0, Q.Q6_K),
    "Q5_K_S": QuantMix(_F.MOSTLY_Q5_K_S, Q.Q5_K, Q.Q6_K),
    "Q5_K_M": QuantMix(_F.MOSTLY_Q5_K_M, Q.Q5_K, Q.Q6_K, None, None, (Q.Q6_K, Q.Q5_K), (Q.Q6_K, Q.Q5_K)),
    "Q6_K": QuantMix(_F.MOSTLY_Q6_K, Q.Q6_K),
    "Q8_0": QuantMix(_F.MOSTLY_Q8_0, Q.Q8_0),
    "F16": QuantMix(_F.MOSTLY_F16, Q.F16),
    "BF16": QuantMix(_F.MOSTLY_BF16, Q.BF16),
}
QUANTS: tuple[str, ...] = tuple(QUANT_MIXES)


def _more_bits(layer: int, blocks: int) -> bool:
    """llama.cpp's use_more_bits: the first and last eighth of the layers, and every third one between."""
    return layer < blocks // 8 or layer >= 7 * blocks // 8 or (layer - blocks // 8) % 3 == 2


def tensor_bytes(ggml_type: Q, n_elements: int) -> int:
    """The bytes `n_elements` take at `ggml_type` (whole blocks)."""
    block, size = gguf.GGML_QUANT_SIZES[ggml_type]
    return n_elements // block * size


# name, shape in numpy order (rows, columns: GGUF stores it reversed), ggml type
TensorSpec = tuple[str, tuple[int, ...], Q]


def llama_tensors(shape: ModelShape, quant: str) -> list[TensorSpec]:
    """The tensor table of a Llama-style model at a quantization: token_embd, per block attn/ffn/norms, output."""
    mix = QUANT_MIXES[quant]
    e, kv, f = shape.embd, shape.kv_dim, shape.ffn
    f32 = Q.F32
    tensors: list[TensorSpec] = [("token_embd.weight", (shape.vocab, e), mix.embd or mix.base)]
    for i in range(shape.blocks):
        more = _more_bits(i, shape.blocks)
        attn_v = mix.attn_v[0 if more else 1] if mix.attn_v else mix.base
        ffn_down = mix.ffn_down[0 if more else 1] if mix.ffn_down else mix.base
        tensors += [
            (f"blk.{i}.attn_norm.weight", (e,), f32),
            (f"blk.{i}.attn_q.weight", (e, e), mix.base),
            (f"blk.{i}.attn_k.weight", (kv, e), mix.base),
            (f"blk.{i}.attn_v.weight", (kv, e), attn_v),
            (f"blk.{i}.attn_output.weight", (e, e), mix.attn_output or mix.base),
            (f"blk.{i}.ffn_norm.weight", (e,), f32),
            (f"blk.{i}.ffn_gate.weight", (f, e), mix.base),
            (f"blk.{i}.ffn_up.weight", (f, e), mix.base),
            (f"blk.{i}.ffn_down.weight", (e, f), ffn_down),
        ]
    tensors += [("output_norm.weight", (e,), f32), ("output.weight", (shape.vocab, e), mix.output or mix.base)]
    return tensors


def clip_tensors(blocks: int = 24, embd: int = 1024, ffn: int = 4096, text_embd: int = 4096) -> list[TensorSpec]:
    """A LLaVA-style vision projector (mmproj) at F16: a ViT-L/14 encoder and a two-layer MLP into the LLM."""
    tensors: list[TensorSpec] = [
        ("v.class_embd", (embd,), Q.F32),
        ("v.patch_embd.weight", (embd, 3, 14, 14), Q.F16),
        ("v.position_embd.weight", (577, embd), Q.F16),
        ("v.pre_ln.weight", (embd,), Q.F32),
        ("v.pre_ln.bias", (embd,), Q.F32),
    ]
    for i in range(blocks):
        for part in ("attn_q", "attn_k", "attn_v", "attn_out"):
            tensors += [(f"v.blk.{i}.{part}.weight", (embd, embd), Q.F16), (f"v.blk.{i}.{part}.bias", (embd,), Q.F32)]
        tensors += [
            (f"v.blk.{i}.ffn_up.weight", (ffn, embd), Q.F16),
            (f"v.blk.{i}.ffn_up.bias", (ffn,), Q.F32),
            (f"v.blk.{i}.ffn_down.weight", (embd, ffn), Q.F16),
            (f"v.blk.{i}.ffn_down.bias", (embd,), Q.F32),
        ]
        for norm in ("ln1", "ln2"):
            tensors += [(f"v.blk.{i}.{norm}.weight", (embd,), Q.F32), (f"v.blk.{i}.{norm}.bias", (embd,), Q.F32)]
    tensors += [
        ("mm.0.weight", (text_embd, embd), Q.F16),
        ("mm.0.bias", (text_embd,), Q.F32),
        ("mm.2.weight", (text_embd, text_embd), Q.F16),
        ("mm.2.bias", (text_embd,), Q.F32),
    ]
    return tensors


@dataclass(frozen=True)
class GgufBuild:
    """A GGUF's real header and what it declares; the file is `size` bytes, the header then zeros."""

    header: bytes  # header, metadata and tensor table (the data section starts at the next alignment)
    size: int
    data_offset: int
    params: int  # elements over all its tensors
    n_tensors: int
    metadata: dict[str, Any] = field(repr=False)  # the keys written, as given


@cache
def _token_array_kv(n_tokens: int) -> bytes:
    """A packed `tokenizer.ggml.tokens` key-value of `n_tokens` strings (packed once: 128k strings take time)."""
    special = {128000: "<|begin_of_text|>", 128001: "<|end_of_text|>", 128009: "<|eot_id|>"}
    parts = [_gguf_string("tokenizer.ggml.tokens"), struct.pack("<IIQ", 9, 8, n_tokens)]  # array of strings
    parts += (_gguf_string(special.get(i, f"tok{i}")) for i in range(n_tokens))
    return b"".join(parts)


def _gguf_string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def write_gguf_headers(
    path: Path,
    arch: str,
    tensors: Sequence[TensorSpec],
    metadata: dict[str, Any],
    *,
    split_parts: int = 1,
    n_vocab_tokens: int = 0,
) -> list[GgufBuild]:
    """Write the header of a GGUF (or of each of `split_parts` split files) declaring `tensors`, no data.

    `metadata` maps a key to a value GGUFWriter types itself (str, int as uint32, float, bool, list) or to a
    (value, GGUFValueType) pair; `n_vocab_tokens` adds a tokenizer.ggml.tokens array of that many strings.
    """
    per_part = -(-len(tensors) // split_parts)
    writer = gguf.GGUFWriter(path, arch, split_max_tensors=per_part if split_parts > 1 else 0)
    for key, value in metadata.items():
        if isinstance(value, tuple):
            writer.add_key_value(key, value[0], value[1])
        elif isinstance(value, bool):
            writer.add_bool(key, value)
        elif isinstance(value, int):
            writer.add_uint32(key, value)
        elif isinstance(value, float):
            writer.add_float32(key, value)
        elif isinstance(value, str):
            writer.add_string(key, value)
        else:
            writer.add_array(key, value)
    placeholder = np.dtype(np.float32)  # with raw_dtype given, only the shape and byte count are used
    for name, shape, ggml_type in tensors:
        n = int(np.prod(shape))
        writer.add_tensor_info(name, shape, placeholder, tensor_bytes(ggml_type, n), raw_dtype=ggml_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    assert writer.fout is not None
    kv_ends = [f.tell() for f in writer.fout]
    writer.write_ti_data_to_file()
    parts = writer.format_shard_names(path)
    part_tensors = [list(t.values()) for t in writer.tensors]
    writer.close()
    builds = []
    for i, (part, infos) in enumerate(zip(parts, part_tensors, strict=True)):
        header = part.read_bytes()
        if n_vocab_tokens and i == 0:  # spliced in: GGUFWriter packs 128k strings one by one, ~0.1 s a file
            kv_end = kv_ends[i]
            n_kv = struct.unpack_from("<Q", header, 16)[0]
            header = header[:16] + struct.pack("<Q", n_kv + 1) + header[24:kv_end] + _token_array_kv(n_vocab_tokens)
            header += part.read_bytes()[kv_end:]
        data_offset = gguf.GGUFWriter.ggml_pad(len(header), gguf.GGUF_DEFAULT_ALIGNMENT)
        data = sum(gguf.GGUFWriter.ggml_pad(t.nbytes, gguf.GGUF_DEFAULT_ALIGNMENT) for t in infos)
        params = sum(int(np.prod(t.shape)) for t in infos)
        builds.append(GgufBuild(header, data_offset + data, data_offset, params, len(infos), dict(metadata)))
    return builds


def llama_metadata(shape: ModelShape, name: str, quant: str, chat_template: str | None) -> dict[str, Any]:
    """The general and architecture keys a converted Llama GGUF carries."""
    a = shape.arch
    metadata: dict[str, Any] = {
        "general.name": name,
        "general.file_type": int(QUANT_MIXES[quant].file_type),
        "general.quantization_version": 2,
        f"{a}.context_length": shape.ctx,
        f"{a}.block_count": shape.blocks,
        f"{a}.embedding_length": shape.embd,
        f"{a}.feed_forward_length": shape.ffn,
        f"{a}.attention.head_count": shape.heads,
        f"{a}.attention.head_count_kv": shape.kv_heads,
        f"{a}.rope.freq_base": 500000.0,
        f"{a}.attention.layer_norm_rms_epsilon": 1e-5,
        f"{a}.vocab_size": shape.vocab,
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.bos_token_id": 128000,
        "tokenizer.ggml.eos_token_id": 128009,
    }
    if chat_template:
        metadata["tokenizer.chat_template"] = chat_template
    return metadata


def build_gguf(
    shape: ModelShape = LLAMA_3_8B,
    quant: str = "Q4_K_M",
    *,
    name: str = "Meta Llama 3 8B Instruct",
    n_vocab_tokens: int | None = None,
    chat_template: str | None = LLAMA3_CHAT_TEMPLATE,
) -> GgufBuild:
    """A Llama-shaped GGUF's header at `quant` (one of QUANTS), its vocabulary listed unless n_vocab_tokens=0."""
    return _build_gguf(shape, quant, name, shape.vocab if n_vocab_tokens is None else n_vocab_tokens, chat_template)


@cache
def _build_gguf(shape: ModelShape, quant: str, name: str, n_tokens: int, template: str | None) -> GgufBuild:
    with tempfile.TemporaryDirectory() as tmp:
        metadata = llama_metadata(shape, name, quant, template)
        tensors = llama_tensors(shape, quant)
        return write_gguf_headers(Path(tmp) / "m.gguf", shape.arch, tensors, metadata, n_vocab_tokens=n_tokens)[0]


def gguf_header_bytes(
    arch: str = "llama",
    *,
    name: str = "Meta Llama 3 8B Instruct",
    blocks: int = 32,
    embd: int = 4096,
    heads: int = 32,
    kv_heads: int = 8,
    ffn: int = 14336,
    vocab: int = 128256,
    ctx: int = 8192,
    quant: str = "Q4_K_M",
    n_vocab_tokens: int | None = None,
    chat_template: str | None = LLAMA3_CHAT_TEMPLATE,
) -> tuple[bytes, int]:
    """(the real header of a Llama-shaped GGUF, the size of the whole file) at `quant` (which sets
    general.file_type and each 2-D tensor's ggml type); the bytes after the header are tensor data (zeros)."""
    shape = ModelShape(arch, blocks, embd, heads, kv_heads, ffn, vocab, ctx)
    build = build_gguf(shape, quant, name=name, n_vocab_tokens=n_vocab_tokens, chat_template=chat_template)
    return build.header, build.size


def fake_sha256(header: bytes, size: int) -> str:
    """The sha256 a virtual file's listing reports: stands for its content, is not its hash."""
    return hashlib.sha256(b"virtual %d\0" % size + header).hexdigest()


def virtual(header: bytes, size: int) -> VirtualBytes:
    """A file of `size` bytes starting with `header`, reporting a made-up sha256."""
    return VirtualBytes(header, size, sha256=fake_sha256(header, size))


def repo_commit(repo: str) -> str:
    """A repo's commit sha: 40 hex digits fixed by its name."""
    return hashlib.sha1(f"commit of {repo}".encode()).hexdigest()


@dataclass(frozen=True)
class RemoteFile:
    """One file of a built repo, as the Hub lists it."""

    path: str
    size: int
    sha256: str  # what the listing reports (made up for a virtual file, see the module docstring)
    header: bytes  # the real bytes the file starts with (all of a small file)


@dataclass(frozen=True)
class RemoteGguf(RemoteFile):
    """A GGUF of a built repo and what its header declares."""

    arch: str | None  # general.architecture; None for a split file after the first (it holds only split.*)
    quant: str | None  # general.file_type's name ("Q4_K_M"); None for a split file after the first
    blocks: int | None
    embd: int | None
    heads: int | None
    kv_heads: int | None
    ctx: int | None
    params: int  # elements of the tensors in this file
    n_tensors: int  # tensors in this file
    data_offset: int
    split: tuple[int, int] | None = None  # (split.no counting from 0, split.count)


def _remote_gguf(
    path: str,
    build: GgufBuild,
    arch: str | None,
    quant: str | None,
    shape: ModelShape | None = None,
    split: tuple[int, int] | None = None,
) -> RemoteGguf:
    """What a test asserts of a built GGUF; `shape` when its header declares the model's dimensions."""
    sha = fake_sha256(build.header, build.size)
    dims = (shape.blocks, shape.embd, shape.heads, shape.kv_heads, shape.ctx) if shape else (None,) * 5
    return RemoteGguf(
        path, build.size, sha, build.header, arch, quant, *dims, build.params, build.n_tensors, build.data_offset, split
    )


def _small(path: str, data: bytes) -> RemoteFile:
    return RemoteFile(path, len(data), hashlib.sha256(data).hexdigest(), data)


def _readme(repo: str, base_model: str, tags: Sequence[str], body: str) -> bytes:
    front = "\n".join(
        ["---", "license: llama3", f"base_model: {base_model}", "tags:", *(f"- {t}" for t in tags), "---"]
    )
    return f"{front}\n\n# {repo.split('/')[-1]}\n\n{body}\n".encode()


@dataclass(frozen=True)
class QuantSeries:
    """A GGUF repo with one file per quantization and a vision projector."""

    repo: str
    hub_repo: HubRepo
    ggufs: dict[str, RemoteGguf]  # quant -> its file
    mmproj: RemoteGguf
    readme: RemoteFile
    shape: ModelShape

    @property
    def files(self) -> dict[str, RemoteFile]:
        """Every file by its path in the repo."""
        listed: list[RemoteFile] = [*self.ggufs.values(), self.mmproj, self.readme]
        return {f.path: f for f in listed}


def quant_series_repo(
    hub: FakeHub,
    repo: str = "org/Llama-3-8B-Instruct-GGUF",
    quants: Sequence[str] = QUANTS,
    *,
    shape: ModelShape = LLAMA_3_8B,
    n_vocab_tokens: int | None = None,
    **add_repo: Any,
) -> QuantSeries:
    """An 8B Llama GGUF repo: `{stem}-{quant}.gguf` per quant (all virtual, real sizes), an
    `mmproj-model-f16.gguf` projector (arch "clip"), README.md; `add_repo` goes to FakeHub.add_repo (cdn=...,
    gated=..., downloads=...). Only the README is a non-LFS file."""
    stem = repo.split("/")[-1].removesuffix("-GGUF")
    name = stem.replace("-", " ")
    ggufs: dict[str, RemoteGguf] = {}
    for quant in quants:
        build = build_gguf(shape, quant, name=name, n_vocab_tokens=n_vocab_tokens)
        ggufs[quant] = _remote_gguf(f"{stem}-{quant}.gguf", build, shape.arch, quant, shape)
    mmproj = _remote_gguf("mmproj-model-f16.gguf", _mmproj_build(shape.embd), "clip", "F16")
    readme = _small(
        "README.md",
        _readme(repo, f"meta-llama/{stem}", ["gguf", "llama", "text-generation"], "Quantizations made with llama.cpp."),
    )
    files: dict[str, ServedData] = {f.path: virtual(f.header, f.size) for f in (*ggufs.values(), mmproj)}
    files[readme.path] = readme.header
    add_repo.setdefault("commit", repo_commit(repo))
    add_repo.setdefault("tags", ["gguf", "llama", "text-generation", "conversational"])
    add_repo.setdefault("library_name", None)
    add_repo.setdefault("pipeline_tag", "text-generation")
    hub_repo = hub.add_repo(repo, files, lfs=[p for p in files if p.endswith(".gguf")], **add_repo)
    return QuantSeries(repo, hub_repo, ggufs, mmproj, readme, shape)


@cache
def _mmproj_build(text_embd: int) -> GgufBuild:
    metadata: dict[str, Any] = {
        "general.name": "LLaVA projector",
        "general.file_type": int(_F.MOSTLY_F16),
        "clip.has_text_encoder": False,
        "clip.has_vision_encoder": True,
        "clip.has_llava_projector": True,
        "clip.projector_type": "mlp",
        "clip.vision.image_size": 336,
        "clip.vision.patch_size": 14,
        "clip.vision.embedding_length": 1024,
        "clip.vision.feed_forward_length": 4096,
        "clip.vision.projection_dim": text_embd,
        "clip.vision.attention.head_count": 16,
        "clip.vision.block_count": 24,
    }
    with tempfile.TemporaryDirectory() as tmp:
        tensors = clip_tensors(text_embd=text_embd)
        return write_gguf_headers(Path(tmp) / "mmproj.gguf", "clip", tensors, metadata)[0]


@dataclass(frozen=True)
class SplitRepo:
    """A GGUF repo holding one model split into parts."""

    repo: str
    hub_repo: HubRepo
    parts: list[RemoteGguf]  # in order: name-00001-of-0000N.gguf first
    shape: ModelShape
    quant: str

    @property
    def size(self) -> int:
        return sum(p.size for p in self.parts)

    @property
    def params(self) -> int:
        return sum(p.params for p in self.parts)


def split_gguf_repo(
    hub: FakeHub,
    repo: str = "org/Llama-3-70B-Instruct-GGUF",
    parts: int = 3,
    *,
    shape: ModelShape = LLAMA_3_70B,
    quant: str = "Q4_K_M",
    n_vocab_tokens: int | None = None,
    **add_repo: Any,
) -> SplitRepo:
    """A 70B Llama at `quant` split as llama.cpp's gguf-split does: `{stem}-{quant}-0000i-of-0000N.gguf`, the
    tensors spread across the parts, every part with split.no / split.count / split.tensors.count and only the
    first with the model's keys (and vocabulary). Sizes are real (Q4_K_M: ~42 GB in all)."""
    stem = f"{repo.split('/')[-1].removesuffix('-GGUF')}-{quant}"
    metadata = llama_metadata(shape, stem.replace("-", " "), quant, LLAMA3_CHAT_TEMPLATE)
    tokens = shape.vocab if n_vocab_tokens is None else n_vocab_tokens
    with tempfile.TemporaryDirectory() as tmp:
        builds = write_gguf_headers(
            Path(tmp) / f"{stem}.gguf",
            shape.arch,
            llama_tensors(shape, quant),
            metadata,
            split_parts=parts,
            n_vocab_tokens=tokens,
        )
    remote = []
    for i, build in enumerate(builds):
        path = f"{stem}-{i + 1:05d}-of-{len(builds):05d}.gguf"
        first = i == 0
        split = (i, len(builds))
        remote.append(
            _remote_gguf(
                path, build, shape.arch if first else None, quant if first else None, shape if first else None, split
            )
        )
    add_repo.setdefault("commit", repo_commit(repo))
    add_repo.setdefault("tags", ["gguf", "llama", "text-generation"])
    add_repo.setdefault("library_name", None)
    hub_repo = hub.add_repo(repo, {p.path: virtual(p.header, p.size) for p in remote}, **add_repo)
    return SplitRepo(repo, hub_repo, remote, shape, quant)


_ST_DTYPE_BYTES = {"F32": 4, "F16": 2, "BF16": 2}


def safetensors_header(tensors: Sequence[tuple[str, str, tuple[int, ...]]]) -> tuple[bytes, int]:
    """(a safetensors file's real header: 8-byte length, JSON padded to 8, the size of the whole file) for
    (name, dtype, shape) tensors laid out in order."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, dtype, shape in tensors:
        n = _ST_DTYPE_BYTES[dtype] * int(np.prod(shape))
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    prefix = struct.pack("<Q", len(raw)) + raw
    return prefix, len(prefix) + offset


def hf_llama_tensors(shape: ModelShape, dtype: str = "BF16") -> list[tuple[str, str, tuple[int, ...]]]:
    """A transformers Llama checkpoint's tensors (name, dtype, shape)."""
    e, kv, f = shape.embd, shape.kv_dim, shape.ffn
    tensors = [("model.embed_tokens.weight", dtype, (shape.vocab, e))]
    for i in range(shape.blocks):
        p = f"model.layers.{i}"
        tensors += [
            (f"{p}.input_layernorm.weight", dtype, (e,)),
            (f"{p}.self_attn.q_proj.weight", dtype, (e, e)),
            (f"{p}.self_attn.k_proj.weight", dtype, (kv, e)),
            (f"{p}.self_attn.v_proj.weight", dtype, (kv, e)),
            (f"{p}.self_attn.o_proj.weight", dtype, (e, e)),
            (f"{p}.post_attention_layernorm.weight", dtype, (e,)),
            (f"{p}.mlp.gate_proj.weight", dtype, (f, e)),
            (f"{p}.mlp.up_proj.weight", dtype, (f, e)),
            (f"{p}.mlp.down_proj.weight", dtype, (e, f)),
        ]
    tensors += [("model.norm.weight", dtype, (e,)), ("lm_head.weight", dtype, (shape.vocab, e))]
    return tensors


@dataclass(frozen=True)
class SafetensorsRepo:
    """A transformers repo: config, tokenizer config, safetensors shards (or one file) and maybe an index."""

    repo: str
    hub_repo: HubRepo
    shards: list[RemoteFile]  # model-0000i-of-0000N.safetensors, or [model.safetensors]
    index: RemoteFile | None  # model.safetensors.index.json when sharded
    config: dict[str, Any]
    shape: ModelShape
    params: int
    total_size: int  # tensor bytes over all shards (the index's metadata.total_size)
    files: dict[str, RemoteFile]  # every file by its path


def safetensors_repo(
    hub: FakeHub,
    repo: str = "org/Llama-3-8B-Instruct",
    shards: int = 2,
    *,
    shape: ModelShape = LLAMA_3_8B,
    dtype: str = "BF16",
    **add_repo: Any,
) -> SafetensorsRepo:
    """An 8B Llama in transformers layout: config.json, tokenizer_config.json (with a chat template),
    generation_config.json, README.md and `shards` safetensors files whose real headers declare the real tensors
    (16 GB at BF16, the data virtual zeros), with model.safetensors.index.json; shards=1 is one model.safetensors."""
    tensors = hf_llama_tensors(shape, dtype)
    groups = [tensors[i * len(tensors) // shards : (i + 1) * len(tensors) // shards] for i in range(shards)]
    names = (
        ["model.safetensors"]
        if shards == 1
        else [f"model-{i + 1:05d}-of-{shards:05d}.safetensors" for i in range(shards)]
    )
    remote: list[RemoteFile] = []
    weight_map: dict[str, str] = {}
    for name, group in zip(names, groups, strict=True):
        header, size = safetensors_header(group)
        remote.append(RemoteFile(name, size, fake_sha256(header, size), header))
        weight_map.update(dict.fromkeys((t[0] for t in group), name))
    params = sum(int(np.prod(t[2])) for t in tensors)
    total_size = sum(_ST_DTYPE_BYTES[t[1]] * int(np.prod(t[2])) for t in tensors)
    config = llama_config(
        hidden_size=shape.embd,
        intermediate_size=shape.ffn,
        num_hidden_layers=shape.blocks,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        max_position_embeddings=shape.ctx,
        vocab_size=shape.vocab,
        rope_theta=500000.0,
        rms_norm_eps=1e-5,
        torch_dtype={"BF16": "bfloat16", "F16": "float16", "F32": "float32"}[dtype],
        bos_token_id=128000,
        eos_token_id=128009,
    )
    small = [
        _small("config.json", json.dumps(config, indent=2).encode()),
        _small(
            "generation_config.json", json.dumps({"bos_token_id": 128000, "eos_token_id": [128001, 128009]}).encode()
        ),
        _small(
            "tokenizer_config.json",
            json.dumps(
                {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "chat_template": LLAMA3_CHAT_TEMPLATE}
            ).encode(),
        ),
        _small("README.md", _readme(repo, "meta-llama/Meta-Llama-3-8B", ["llama", "text-generation"], "Weights.")),
    ]
    index = None
    if shards > 1:
        index = _small(
            "model.safetensors.index.json",
            json.dumps({"metadata": {"total_size": total_size}, "weight_map": weight_map}, indent=2).encode(),
        )
        small.append(index)
    files: dict[str, ServedData] = {f.path: virtual(f.header, f.size) for f in remote}
    files |= {f.path: f.header for f in small}
    add_repo.setdefault("commit", repo_commit(repo))
    add_repo.setdefault("tags", ["transformers", "safetensors", "llama", "text-generation"])
    add_repo.setdefault("pipeline_tag", "text-generation")
    hub_repo = hub.add_repo(repo, files, lfs=[f.path for f in remote], **add_repo)
    every = {f.path: f for f in (*remote, *small)}
    return SafetensorsRepo(repo, hub_repo, remote, index, config, shape, params, total_size, every)


# The real Gemma 3 270M instruct GGUF (Q4_K_M): what its header declares
GEMMA_FILE = "gemma-3-270m-it-Q4_K_M.gguf"
GEMMA_NUMBERS = {"arch": "gemma3", "blocks": 18, "embd": 640, "heads": 4, "kv_heads": 1, "ctx": 32768}

_SHA256: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """A file's sha256, computed once per process and kept beside it (path + ".sha256") across runs."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key in _SHA256:
        return _SHA256[key]
    sidecar = path.with_name(path.name + ".sha256")
    stamp = f"{stat.st_size} {stat.st_mtime_ns}"
    try:
        saved_stamp, saved = sidecar.read_text().split("\n")[:2]
    except (OSError, ValueError):
        saved_stamp = saved = ""
    if saved_stamp != stamp or len(saved) != 64:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(16 << 20):
                digest.update(chunk)
        saved = digest.hexdigest()
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False) as tmp:  # atomic for xdist workers
            tmp.write(f"{stamp}\n{saved}\n")
        os.chmod(tmp.name, 0o644)
        os.replace(tmp.name, sidecar)
    _SHA256[key] = saved
    return saved


@dataclass(frozen=True)
class GemmaRepo:
    """The real Gemma 3 270M GGUF served from disk."""

    repo: str
    hub_repo: HubRepo
    gguf: RemoteFile  # header: its first 64 KiB
    numbers: dict[str, Any]  # GEMMA_NUMBERS: what its header declares


def gemma_repo(hub: FakeHub, gemma_path: Path, repo: str = "google/gemma-3-270m-it-GGUF", **add_repo: Any) -> GemmaRepo:
    """Serve the real Gemma GGUF (read by range from disk, its real size and sha256) with a README."""
    sha = file_sha256(gemma_path)
    content = FileBytes(gemma_path, sha256=sha)
    readme = _readme(repo, "google/gemma-3-270m-it", ["gguf", "gemma3", "text-generation"], "Gemma 3 270M.")
    add_repo.setdefault("commit", repo_commit(repo))
    add_repo.setdefault("tags", ["gguf", "gemma3", "text-generation", "conversational"])
    add_repo.setdefault("library_name", None)
    hub_repo = hub.add_repo(repo, {GEMMA_FILE: content, "README.md": readme}, lfs=[GEMMA_FILE], **add_repo)
    remote = RemoteFile(GEMMA_FILE, content.size, sha, content.read(0, 64 << 10))
    return GemmaRepo(repo, hub_repo, remote, dict(GEMMA_NUMBERS))


@dataclass(frozen=True)
class GatedRepo:
    """A gated GGUF repo and the token it accepts."""

    repo: str
    hub_repo: HubRepo
    token: str
    gguf: RemoteGguf
    readme: RemoteFile


def gated_repo(
    hub: FakeHub,
    repo: str = "meta-llama/Llama-3.1-8B-Instruct-GGUF",
    token: str = "hf_test_token",
    *,
    quant: str = "Q4_K_M",
    **add_repo: Any,
) -> GatedRepo:
    """A gated ("manual") repo with one 8B GGUF, a projector and a README: model info is public, its files need
    `token` (401 without one, 403 with another)."""
    series = quant_series_repo(hub, repo, [quant], gated="manual", tokens=[token], **add_repo)
    return GatedRepo(repo, series.hub_repo, token, series.ggufs[quant], series.readme)


def search_corpus(
    hub: FakeHub, word: str = "llama", count: int = 120, *, others: int = 10, **add_repo: Any
) -> list[str]:
    """Register `count` file-less repos whose names hold `word` (in mixed case) and `others` that do not, with
    distinct downloads, likes and dates; return the matching ids in descending downloads order."""
    ids = []
    for i in range(count):
        repo = f"org{i % 7}/{word.upper() if i % 3 == 0 else word.capitalize()}-{i}B-GGUF"
        ids.append(repo)
        hub.add_repo(
            repo,
            {},
            downloads=(i * 7919) % 100_003,
            likes=(i * 104_729) % 1009,
            last_modified=f"2025-{1 + i % 12:02d}-{1 + i % 28:02d}T00:00:{i % 60:02d}.000Z",
            tags=["gguf", "text-generation"],
            library_name=None,
            **add_repo,
        )
    for i in range(others):
        hub.add_repo(f"other/Mistral-{i}", {}, downloads=10**6 + i, **add_repo)
    return sorted(ids, key=lambda r: hub.repos[r].downloads, reverse=True)
