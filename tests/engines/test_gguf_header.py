"""The GGUF header reader: valid files read exactly, malformed ones fail with BadModelFile and a clear reason."""

from __future__ import annotations

import os
import random
import struct
from collections.abc import Callable
from pathlib import Path

import gguf
import numpy as np
import pytest

from engines.catalog.gguf_header import ArrayInfo, GgufHeader, TensorInfo, is_gguf, read_gguf_header
from engines.errors import BadModelFile

try:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    HAVE_HYPOTHESIS = True
except ImportError:  # an optional dev tool: the seeded corruption test below still runs
    HAVE_HYPOTHESIS = False

TEMPLATE = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}<|assistant|>"
TOKENS = [f"tok{i}" for i in range(300)] + ["é", "日本"]

# -- a hand-rolled GGUF writer, so malformed files can be described field by field ------------------


def u32(value: int) -> bytes:
    return struct.pack("<I", value)


def u64(value: int) -> bytes:
    return struct.pack("<Q", value)


def gstr(value: str | bytes) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    return u64(len(raw)) + raw


def kv(key: str | bytes, vtype: int, payload: bytes) -> bytes:
    return gstr(key) + u32(vtype) + payload


def kv_str(key: str | bytes, value: str | bytes) -> bytes:
    return kv(key, 8, gstr(value))


def kv_u32(key: str | bytes, value: int) -> bytes:
    return kv(key, 4, u32(value))


def kv_strings(key: str, items: list[str]) -> bytes:
    return kv(key, 9, u32(8) + u64(len(items)) + b"".join(gstr(s) for s in items))


def tensor_info(name: str | bytes, dims: list[int], ggml_type: int, offset: int) -> bytes:
    return gstr(name) + u32(len(dims)) + b"".join(u64(d) for d in dims) + u32(ggml_type) + u64(offset)


def base_kvs() -> list[bytes]:
    return [
        kv_str("general.architecture", "llama"),
        kv_u32("llama.context_length", 256),
        kv_strings("tokenizer.ggml.tokens", [f"t{i}" for i in range(100)]),
        kv_u32("general.alignment", 32),
    ]


def base_tensors() -> list[bytes]:
    return [tensor_info("t0", [8], 0, 0), tensor_info("t1", [16, 2], 1, 32)]  # F32 32 bytes, F16 64 bytes


def build(
    kvs: list[bytes] | None = None,
    tensors: list[bytes] | None = None,
    data: bytes = bytes(96),
    *,
    magic: bytes = b"GGUF",
    version: int = 3,
    n_tensors: int | None = None,
    n_kv: int | None = None,
    alignment: int = 32,
) -> bytes:
    kvs = base_kvs() if kvs is None else kvs
    tensors = base_tensors() if tensors is None else tensors
    head = magic + u32(version)
    head += u64(len(tensors) if n_tensors is None else n_tensors) + u64(len(kvs) if n_kv is None else n_kv)
    body = head + b"".join(kvs) + b"".join(tensors)
    return body + bytes(-len(body) % alignment) + data


def write(tmp_path: Path, data: bytes, name: str = "model.gguf") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# -- a valid file written by gguf.GGUFWriter ----------------------------------------------------------


@pytest.fixture(scope="module")
def writer_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("Tiny Test")
    w.add_context_length(2048)
    w.add_block_count(2)
    w.add_embedding_length(64)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_key_length(16)
    w.add_value_length(16)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    w.add_float32("llama.rope.freq_base", 10000.0)
    w.add_bool("tiny.flag", True)
    w.add_int64("tiny.big", -(2**40))
    w.add_float64("tiny.pi", 3.25)
    w.add_array("tiny.short", [1, 2, 3])
    w.add_array("general.tags", ["a", "b"])
    w.add_token_list(TOKENS)
    w.add_token_scores([float(i) for i in range(len(TOKENS))])
    w.add_chat_template(TEMPLATE)
    w.add_tensor("token_embd.weight", np.arange(64 * 8, dtype=np.float32).reshape(8, 64))
    w.add_tensor("blk.0.attn_norm.weight", np.ones(64, dtype=np.float16))
    w.add_tensor("blk.0.ffn_up.weight", np.zeros((4, 34 * 2), dtype=np.uint8), raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("output.weight", np.ones((8, 64), dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(scope="module")
def writer_header(writer_file: Path) -> GgufHeader:
    return read_gguf_header(writer_file)


def test_reads_every_property(writer_file: Path, writer_header: GgufHeader) -> None:
    h = writer_header
    assert h.path == writer_file
    assert h.version == 3
    assert h.file_size == writer_file.stat().st_size
    assert h.architecture == "llama"
    assert h.name == "Tiny Test"
    assert h.context_length == 2048
    assert h.block_count == 2
    assert h.embedding_length == 64
    assert (h.head_count, h.head_count_kv, h.key_length, h.value_length) == (4, 2, 16, 16)
    assert h.chat_template == TEMPLATE
    assert h.has_chat_template is True
    assert h.file_type == "Q8_0"
    assert h.quantization == "Q8_0"
    assert h.vocab_size == len(TOKENS)
    assert h.parameter_count == 512 + 64 + 4 * 64 + 512
    assert h.metadata["tokenizer.ggml.tokens"] == ArrayInfo("string", len(TOKENS))
    assert h.metadata["tokenizer.ggml.scores"] == ArrayInfo("float32", len(TOKENS))
    assert h.metadata["tiny.short"] == [1, 2, 3]
    assert h.metadata["general.tags"] == ["a", "b"]
    assert h.metadata["tiny.flag"] is True
    assert h.metadata["tiny.big"] == -(2**40)
    assert h.metadata["tiny.pi"] == 3.25
    assert h.tensors == (
        TensorInfo("token_embd.weight", (64, 8), "F32", 0, 2048, 512),
        TensorInfo("blk.0.attn_norm.weight", (64,), "F16", 2048, 128, 64),
        TensorInfo("blk.0.ffn_up.weight", (64, 4), "Q8_0", 2176, 272, 256),
        TensorInfo("output.weight", (64, 8), "F16", 2464, 1024, 512),
    )
    assert h.data_offset % 32 == 0
    assert h.data_offset + 2464 + 1024 == h.file_size


def test_agrees_with_gguf_reader(writer_file: Path, writer_header: GgufHeader) -> None:
    reader = gguf.GGUFReader(writer_file)
    fields = {name: field for name, field in reader.fields.items() if not name.startswith("GGUF.")}
    assert set(fields) == set(writer_header.metadata)
    for name, field in fields.items():
        ours = writer_header.metadata[name]
        if isinstance(ours, ArrayInfo):
            assert ours.length == len(field.data)
            assert ours.item_type == field.types[-1].name.lower()
        else:
            assert ours == pytest.approx(field.contents()), name
    theirs = [(t.name, tuple(int(d) for d in t.shape), t.tensor_type.name, int(t.n_bytes)) for t in reader.tensors]
    assert theirs == [(t.name, t.shape, t.ggml_type, t.n_bytes) for t in writer_header.tensors]
    assert [int(t.data_offset) for t in reader.tensors] == [
        writer_header.data_offset + t.offset for t in writer_header.tensors
    ]


def test_is_gguf(writer_file: Path, tmp_path: Path) -> None:
    assert is_gguf(writer_file)
    assert is_gguf(str(writer_file))
    assert not is_gguf(tmp_path)
    assert not is_gguf(tmp_path / "missing.gguf")
    assert not is_gguf(write(tmp_path, b"GGML" + bytes(20)))
    assert not is_gguf("/dev/null")


def test_hand_built_file_and_version_2(tmp_path: Path) -> None:
    for version in (2, 3):
        h = read_gguf_header(write(tmp_path, build(version=version)))
        assert h.version == version
        assert h.context_length == 256
        assert h.block_count is None
        assert h.chat_template is None
        assert h.has_chat_template is False
        assert h.file_type is None
        assert h.quantization == "F16"  # the only 2-D tensor
        assert h.parameter_count == 8 + 32


def test_keeps_arrays_up_to_64_items(tmp_path: Path) -> None:
    kvs = [
        kv("a64", 9, u32(5) + u64(64) + struct.pack("<64i", *range(64))),
        kv("a65", 9, u32(5) + u64(65) + struct.pack("<65i", *range(65))),
        kv_strings("s64", ["x"] * 64),
        kv("nested", 9, u32(9) + u64(2) + (u32(4) + u64(1) + u32(7)) * 2),
        kv("flags", 9, u32(7) + u64(2) + b"\x01\x00"),
    ]
    meta = read_gguf_header(write(tmp_path, build(kvs, []))).metadata
    assert meta["a64"] == list(range(64))
    assert meta["a65"] == ArrayInfo("int32", 65)
    assert meta["s64"] == ["x"] * 64
    assert meta["nested"] == ArrayInfo("array", 2)
    assert meta["flags"] == [True, False]


def test_long_string_arrays_across_read_blocks(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    items = ["x" * int(n) for n in rng.integers(0, 40, 150_000)]
    items[7_000] = "y" * (3 << 20)  # one item longer than a read block
    kvs = [kv_strings("tokenizer.ggml.tokens", items), kv_u32("after", 7)]
    h = read_gguf_header(write(tmp_path, build(kvs)))
    assert h.metadata["tokenizer.ggml.tokens"] == ArrayInfo("string", len(items))
    assert h.metadata["after"] == 7
    assert h.tensors[1].name == "t1"


# -- the malformed corpus ------------------------------------------------------------------------------


def _huge_string_kv(n: int) -> list[bytes]:
    return [kv_str("general.architecture", "llama"), kv_str("big", "a" * n)]


MALFORMED: dict[str, tuple[Callable[[], bytes], str]] = {
    "empty": (lambda: b"", "empty file (0 bytes)"),
    "three-bytes": (lambda: b"GGU", "too short to be a GGUF file (3 bytes)"),
    "bad-magic": (lambda: build(magic=b"GGML"), "not a GGUF file (no GGUF magic)"),
    "lfs-pointer": (lambda: b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\n", "Git LFS pointer"),
    "html-page": (lambda: b"<!DOCTYPE html><html>Not found</html>", "HTML"),
    "version-1": (lambda: build(version=1), "GGUF version 1 is obsolete"),
    "version-99": (lambda: build(version=99), "unsupported GGUF version 99 (expected 2 or 3)"),
    "version-big-endian": (lambda: build(version=3 << 24), "big-endian GGUF (version 3 byte-swapped)"),
    "tensor-count-2**63": (lambda: build(n_tensors=2**63), "declares 9,223,372,036,854,775,808 tensors; the"),
    "kv-count-2**63": (lambda: build(n_kv=2**63), "declares 9,223,372,036,854,775,808 metadata keys"),
    "kv-count-past-end": (
        lambda: b"GGUF" + u32(3) + u64(0) + u64(2) + bytes(10),
        "truncated: metadata count 2 needs at least 26 bytes at byte 24 but the file has 34",
    ),
    "key-length-huge": (
        lambda: build([u64(2**62) + b"key"]),
        "corrupt: metadata key #0 at byte 32 claims 4611686018427387904 bytes",
    ),
    "string-length-past-eof": (
        lambda: build([kv("general.architecture", 8, u64(50) + b"llama")], [], b""),
        "truncated: value of 'general.architecture' needs bytes 64..114 but the file has 96",
    ),
    "string-over-1MiB": (lambda: build(_huge_string_kv((1 << 20) + 1)), "over the 1048576-byte limit"),
    "string-invalid-utf8": (lambda: build([kv_str("general.name", b"\xff\xfe")]), "is not valid UTF-8"),
    "key-invalid-utf8": (lambda: build([kv_u32(b"bad\xc3key", 1)]), "metadata key #0 at byte 24 is not valid UTF-8"),
    "duplicate-key": (lambda: build([kv_u32("a", 1), kv_u32("a", 2)]), "duplicate metadata key 'a'"),
    "unknown-value-type": (lambda: build([kv("x", 99, u32(0))]), "'x' has unknown value type 99"),
    "unknown-array-type": (lambda: build([kv("x", 9, u32(13) + u64(1))]), "unknown value type 13"),
    "array-length-huge": (lambda: build([kv("x", 9, u32(6) + u64(2**60))]), "length 1152921504606846976 is impossible"),
    "array-length-past-end": (
        lambda: build([kv("x", 9, u32(6) + u64(10))], [], b""),
        "truncated: array 'x' of float32 length 10 needs at least 40 bytes",
    ),
    "string-array-item-past-end": (
        lambda: build([kv("x", 9, u32(8) + u64(100) + gstr("a") * 99 + u64(2**50))], [], b""),
        "corrupt: array 'x' runs to byte",
    ),
    "short-string-array-item-past-end": (
        lambda: build([kv("x", 9, u32(8) + u64(2) + gstr("a") + u64(40))], [], b""),
        "truncated: item 1 of 'x' needs bytes 66..106 but the file has 96",
    ),
    "arrays-nested-too-deep": (
        lambda: build([kv("x", 9, (u32(9) + u64(1)) * 5 + u32(4) + u64(1) + u32(1))]),
        "nests arrays more than 4 deep",
    ),
    "alignment-0": (lambda: build([kv_u32("general.alignment", 0)]), "general.alignment 0 is not a power of two"),
    "alignment-3": (lambda: build([kv_u32("general.alignment", 3)]), "general.alignment 3 is not a power of two"),
    "alignment-2**30": (lambda: build([kv_u32("general.alignment", 2**30)]), "is not a power of two up to"),
    "alignment-uint64": (lambda: build([kv("general.alignment", 10, u64(32))]), "has type uint64, expected uint32"),
    "n-dims-9": (lambda: build(tensors=[tensor_info("t", [1] * 9, 0, 0)]), "tensor t has 9 dimensions (at most 4)"),
    "unknown-ggml-type": (lambda: build(tensors=[tensor_info("t", [8], 4, 0)]), "unknown or unsupported ggml type 4"),
    "ggml-type-1000": (lambda: build(tensors=[tensor_info("t", [8], 1000, 0)]), "ggml type 1000"),
    "shape-overflow": (lambda: build(tensors=[tensor_info("t", [2**40, 2**40], 0, 0)]), "impossible shape"),
    "dim0-not-block-multiple": (
        lambda: build(tensors=[tensor_info("q", [33], 8, 0)]),
        "first dimension 33 is not a multiple of Q8_0's 32",
    ),
    "tensor-name-too-long": (lambda: build(tensors=[tensor_info("n" * 70, [8], 0, 0)]), "over the 63-byte limit"),
    "tensor-name-invalid-utf8": (lambda: build(tensors=[tensor_info(b"\x80", [8], 0, 0)]), "not valid UTF-8"),
    "duplicate-tensor": (
        lambda: build(tensors=[tensor_info("t", [8], 0, 0), tensor_info("t", [8], 0, 32)]),
        "duplicate tensor name 't'",
    ),
    "tensor-offset-misaligned": (
        lambda: build(tensors=[tensor_info("t", [8], 0, 16)]),
        "tensor t offset 16 is not a multiple of 32",
    ),
    "tensor-offset-beyond-eof": (
        lambda: build(tensors=[tensor_info("t", [8], 0, 2**50)]),
        "corrupt: tensor t starts at byte",
    ),
    "tensor-data-past-eof": (lambda: build(data=bytes(90)), "truncated: tensor t1 needs bytes"),
    "tensor-count-past-end": (
        lambda: b"GGUF" + u32(3) + u64(2) + u64(0) + bytes(30),
        "truncated: tensor count 2 needs at least 48 bytes at byte 24 but the file has 54",
    ),
    "tensor-starts-past-eof": (lambda: build(data=bytes(32)), "truncated: tensor t1 starts at byte"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_file(tmp_path: Path, case: str) -> None:
    make, expected = MALFORMED[case]
    path = write(tmp_path, make())
    with pytest.raises(BadModelFile) as info:
        read_gguf_header(path)
    assert expected in info.value.reason
    assert info.value.path == str(path)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(BadModelFile, match="is a directory"):
        read_gguf_header(tmp_path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BadModelFile, match="file not found"):
        read_gguf_header(tmp_path / "nope.gguf")


def test_device_file() -> None:
    with pytest.raises(BadModelFile, match="not a regular file"):
        read_gguf_header("/dev/null")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path: Path) -> None:
    path = write(tmp_path, build())
    path.chmod(0)
    with pytest.raises(BadModelFile, match="permission denied"):
        read_gguf_header(path)


CUTS = 40


@pytest.mark.parametrize("cut", range(CUTS))
def test_truncated_anywhere(writer_file: Path, writer_header: GgufHeader, tmp_path: Path, cut: int) -> None:
    data = writer_file.read_bytes()
    ends = [writer_header.data_offset + t.offset + t.n_bytes for t in writer_header.tensors]
    assert max(ends) == len(data)  # no trailing padding: every cut loses something
    at = cut * len(data) // CUTS
    path = write(tmp_path, data[:at])
    with pytest.raises(BadModelFile) as info:
        read_gguf_header(path)
    reason = info.value.reason
    if at == 0:
        assert reason == "empty file (0 bytes)"
    else:
        assert reason.startswith("truncated"), reason


Edit = tuple[float, int, bool]  # where (0..1 of the span), value, whether to overwrite 8 bytes or 1


def mutate_and_read(
    writer_file: Path, header: GgufHeader, tmp_path: Path, edits: list[Edit], header_only: bool
) -> None:
    data = bytearray(writer_file.read_bytes())
    span = header.data_offset if header_only else len(data)
    for where, value, wide in edits:
        at = int(where * span)
        data[at : at + 8 if wide else at + 1] = value.to_bytes(8, "little") if wide else bytes([value & 0xFF])
    path = write(tmp_path, bytes(data), "fuzz.gguf")
    try:
        read_gguf_header(path)
    except BadModelFile as exc:
        assert not exc.reason.startswith("malformed GGUF header"), exc.reason  # the safety net never fires


def test_seeded_random_corruption_fails_cleanly(writer_file: Path, writer_header: GgufHeader, tmp_path: Path) -> None:
    rng = random.Random(20250101)
    for _ in range(200):
        edits = [(rng.random(), rng.getrandbits(rng.choice((8, 16, 40, 64))), rng.random() < 0.3) for _ in range(3)]
        mutate_and_read(writer_file, writer_header, tmp_path, edits, rng.random() < 0.7)


if HAVE_HYPOTHESIS:

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        edits=st.lists(
            st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 2**64 - 1), st.booleans()),
            min_size=1,
            max_size=6,
        ),
        header_only=st.booleans(),
    )
    def test_random_corruption_fails_cleanly(
        writer_file: Path, writer_header: GgufHeader, tmp_path: Path, edits: list[Edit], header_only: bool
    ) -> None:
        mutate_and_read(writer_file, writer_header, tmp_path, edits, header_only)

else:

    def test_random_corruption_fails_cleanly() -> None:
        pytest.skip("hypothesis is not installed")


# -- the real model -------------------------------------------------------------------------------------


@pytest.mark.real_model
def test_real_gemma_file(gemma_path: Path, tmp_path: Path) -> None:
    h = read_gguf_header(gemma_path)
    assert h.architecture == "gemma3"
    assert h.block_count == 18
    assert h.context_length == 32768
    assert (h.head_count, h.head_count_kv) == (4, 1)
    assert h.embedding_length == 640
    assert (h.key_length, h.value_length) == (256, 256)
    assert h.file_type == "Q4_K_M"
    assert h.quantization == "Q4_K_M"
    assert h.parameter_count == 268_098_176
    assert h.has_chat_template is False
    assert h.vocab_size == 262_144
    cut = tmp_path / "cut.gguf"
    with open(gemma_path, "rb") as src, open(cut, "wb") as dst:
        for _ in range(200):
            dst.write(src.read(1 << 20))
    with pytest.raises(BadModelFile, match=r"truncated: tensor \S+ needs bytes \d+\.\.\d+ but the file has 209715200"):
        read_gguf_header(cut)
