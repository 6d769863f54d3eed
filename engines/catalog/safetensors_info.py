"""Read safetensors headers (tensor names, dtypes, shapes) and Hugging Face model folders without loading weights."""

from __future__ import annotations

import json
import os
import stat
import struct
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engines.errors import BadModelFile

__all__ = [
    "HfFolderInfo",
    "SafetensorsHeader",
    "TensorEntry",
    "dominant_dtype",
    "hf_folder_info",
    "is_hf_folder",
    "parse_safetensors_header",
    "read_hf_folder",
    "read_safetensors_header",
]

MAX_HEADER = 100_000_000  # the safetensors library refuses headers above 100 MB too
_LENGTH = struct.Struct("<Q")
_METADATA_KEY = "__metadata__"
# bits per element; the safetensors format also allows dtypes added later, whose size we do not check
_DTYPE_BITS = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "F64": 64,
    "I64": 64,
    "U64": 64,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
}


@dataclass(frozen=True, slots=True)
class TensorEntry:
    """One tensor of the header: dtype, shape, and byte range inside the data section."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def n_elements(self) -> int:
        """The number of values the tensor holds."""
        n = 1
        for dim in self.shape:
            n *= dim
        return n


@dataclass(frozen=True, slots=True)
class SafetensorsHeader:
    """Everything in a safetensors file except the tensor data."""

    path: Path
    file_size: int
    header_size: int
    tensors: tuple[TensorEntry, ...]
    metadata: dict[str, str]

    @property
    def parameter_count(self) -> int:
        """The total number of elements over all tensors."""
        return sum(t.n_elements for t in self.tensors)

    @property
    def dtype_counts(self) -> Counter[str]:
        """Elements held by each dtype."""
        counts: Counter[str] = Counter()
        for tensor in self.tensors:
            counts[tensor.dtype] += tensor.n_elements
        return counts

    @property
    def dtype(self) -> str | None:
        """The dtype holding most elements, e.g. "BF16"."""
        return dominant_dtype([self])


def dominant_dtype(headers: Iterable[SafetensorsHeader]) -> str | None:
    """The dtype holding most elements across several files (the shards of one model)."""
    counts: Counter[str] = Counter()
    for header in headers:
        counts.update(header.dtype_counts)
    return counts.most_common(1)[0][0] if counts else None


def read_safetensors_header(path: str | os.PathLike[str], *, max_header: int = MAX_HEADER) -> SafetensorsHeader:
    """Read and validate a safetensors header; raise BadModelFile with the reason."""
    shown = os.fsdecode(os.fspath(path))

    def bad(reason: str) -> BadModelFile:
        return BadModelFile(shown, reason)

    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):  # opening a FIFO would block
            raise bad("is a directory, not a safetensors file" if stat.S_ISDIR(mode) else "not a regular file")
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < _LENGTH.size:
                raise bad(f"truncated: {size} bytes, too short for the 8-byte header length")
            (n,) = _LENGTH.unpack(f.read(_LENGTH.size))
            if n > size - _LENGTH.size:
                kind = "corrupt" if n > max(max_header, size) else "truncated"
                raise bad(f"{kind}: header length {n} exceeds the file size ({size} bytes)")
            if n > max_header:
                raise bad(f"header length {n} is over the {max_header}-byte limit")
            raw = f.read(n)
    except FileNotFoundError:
        raise bad("file not found") from None
    except PermissionError:
        raise bad("permission denied") from None
    except OSError as exc:
        raise bad(f"cannot read: {exc.strerror or exc}") from None
    if len(raw) < n:
        raise bad(f"truncated: header needs {n} bytes but reading stopped at {len(raw)}")
    return parse_safetensors_header(raw, size, shown)


def parse_safetensors_header(raw: bytes, size: int, shown: str) -> SafetensorsHeader:
    """Validate a safetensors header's JSON (`raw`, after the 8-byte length) of a file of `size` bytes."""

    def bad(reason: str) -> BadModelFile:
        return BadModelFile(shown, reason)

    if raw[:1] != b"{":
        if raw[:4] == b"GGUF" or raw[:1].isalpha():
            raise bad("not a safetensors file (no JSON header)")
        raise bad("corrupt header: does not start with '{'")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise bad(f"corrupt header: not UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise bad(f"corrupt header: invalid JSON ({exc.msg} at char {exc.pos})") from None
    except RecursionError:
        raise bad("corrupt header: JSON nested too deeply") from None
    if not isinstance(doc, dict):
        raise bad(f"corrupt header: a JSON {type(doc).__name__}, expected an object")
    data_size = size - 8 - len(raw)
    metadata: dict[str, str] = {}
    tensors: list[TensorEntry] = []
    for name, value in doc.items():
        if name == _METADATA_KEY:
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise bad("__metadata__ must map strings to strings")
            metadata = value
            continue
        tensors.append(_tensor(name, value, data_size, shown))
    tensors.sort(key=lambda t: (t.start, t.end))
    position = 0
    for tensor in tensors:
        if tensor.start < position:
            raise bad(f"tensor {tensor.name!r} overlaps the tensor before it (bytes {tensor.start}..{tensor.end})")
        position = tensor.end
    return SafetensorsHeader(Path(shown), size, len(raw), tuple(tensors), metadata)


def _tensor(name: str, value: object, data_size: int, shown: str) -> TensorEntry:
    def fail(reason: str) -> BadModelFile:
        return BadModelFile(shown, reason)

    if not isinstance(value, dict):
        raise fail(f"tensor {name!r}: entry is not a JSON object")
    dtype, shape, offsets = value.get("dtype"), value.get("shape"), value.get("data_offsets")
    if not isinstance(dtype, str) or not dtype:
        raise fail(f"tensor {name!r}: missing dtype")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise fail(f"tensor {name!r}: shape {shape!r} is not a list of non-negative integers")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(type(o) is int and o >= 0 for o in offsets)
        or offsets[0] > offsets[1]
    ):
        raise fail(f"tensor {name!r}: data_offsets {offsets!r} is not [start, end]")
    start, end = offsets
    if end > data_size:
        raise fail(f"truncated: tensor {name!r} needs data bytes {start}..{end} but the file holds {data_size}")
    entry = TensorEntry(name, dtype, tuple(shape), start, end)
    bits = _DTYPE_BITS.get(dtype)
    if bits is not None and (entry.n_elements * bits + 7) // 8 != end - start:
        need = (entry.n_elements * bits + 7) // 8
        raise fail(f"tensor {name!r}: {dtype} {list(shape)} needs {need} bytes, data_offsets give {end - start}")
    return entry


# --- a Hugging Face model folder: config.json + safetensors shards --------------------------------

_INDEX = "model.safetensors.index.json"
_MAX_JSON = 32 << 20  # config.json is a few KiB; a tokenizer_config.json with many added tokens a few MiB


@dataclass(frozen=True, slots=True)
class HfFolderInfo:
    """What a Hugging Face model folder says about itself; error is set when it cannot be used as is."""

    path: Path
    files: tuple[Path, ...] = ()
    size_bytes: int = 0
    params: int | None = None
    dtype: str | None = None
    quantization: str | None = None
    architecture: str | None = None
    context_length: int | None = None
    layers: int | None = None
    heads: int | None = None
    kv_heads: int | None = None
    embedding_length: int | None = None
    head_dim: int | None = None
    weights_bytes: int | None = None
    """Bytes of tensor data over all shards: with the shape fields, an exact fit check."""
    has_chat_template: bool | None = None
    error: str | None = None


def is_hf_folder(names: Iterable[str]) -> bool:
    """Whether a folder holding these file names is a Hugging Face safetensors model."""
    names = set(names)
    return "config.json" in names and (_INDEX in names or any(n.endswith(".safetensors") for n in names))


def read_hf_folder(folder: Path) -> HfFolderInfo:
    """Read config.json and every shard's safetensors header (never the weights); never raises."""
    problems: list[str] = []
    try:
        config = _read_json_object(folder / "config.json")
    except BadModelFile as exc:
        problems.append(f"config.json: {exc.reason}")
        config = {}
    try:
        shards, missing = _shards(folder)
    except BadModelFile as exc:
        problems.append(f"{_INDEX}: {exc.reason}")
        shards, missing = sorted(folder.glob("*.safetensors")), []
    if missing:
        problems.append(f"missing {len(missing)} shard(s) listed in {_INDEX}: {', '.join(missing)}")
    if not shards and not missing:
        problems.append("no .safetensors weights")
    headers: list[SafetensorsHeader] = []
    for shard in shards:
        try:
            header = read_safetensors_header(shard)
        except BadModelFile as exc:
            problems.append(f"{shard.name}: {exc.reason}")
            continue
        headers.append(header)
    template = _has_chat_template(folder)
    return hf_folder_info(folder, config, headers, problems, files=tuple(shards), chat_template=template)


def hf_folder_info(
    path: Path,
    config: dict[str, Any],
    headers: list[SafetensorsHeader],
    problems: list[str],
    *,
    files: tuple[Path, ...],
    chat_template: bool | None,
) -> HfFolderInfo:
    """What config.json and the shards' headers say: the same facts for a folder here and a repo on the Hub."""
    size = sum(h.file_size for h in headers)
    text = config.get("text_config")  # multimodal configs keep the language model's numbers here
    sources = (config, text) if isinstance(text, dict) else (config,)

    def number(*keys: str) -> int | None:
        for source in sources:
            for key in keys:
                value = source.get(key)
                if type(value) is int:
                    return value
        return None

    architectures = config.get("architectures")
    model_type = config.get("model_type")
    if not isinstance(model_type, str):
        model_type = architectures[0] if isinstance(architectures, list) and architectures else None
    quant = config.get("quantization_config")
    quant_method = quant.get("quant_method") if isinstance(quant, dict) else None
    torch_dtype = config.get("torch_dtype") or config.get("dtype")
    embedding = number("hidden_size", "n_embd", "d_model")
    heads = number("num_attention_heads", "n_head")
    return HfFolderInfo(
        path=path,
        files=files,
        size_bytes=size,
        params=None if problems else sum(h.parameter_count for h in headers),
        dtype=dominant_dtype(headers) or (str(torch_dtype) if isinstance(torch_dtype, str) else None),
        quantization=quant_method if isinstance(quant_method, str) else None,
        architecture=model_type if isinstance(model_type, str) else None,
        context_length=number("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"),
        layers=number("num_hidden_layers", "n_layer", "num_layers"),
        heads=heads,
        kv_heads=number("num_key_value_heads", "n_head_kv"),
        embedding_length=embedding,
        head_dim=number("head_dim") or (embedding // heads if embedding and heads else None),
        weights_bytes=None if problems else sum(t.end - t.start for h in headers for t in h.tensors),
        has_chat_template=chat_template,
        error="; ".join(problems) or None,
    )


def _shards(folder: Path) -> tuple[list[Path], list[str]]:
    """The shard files (from the index when there is one) and the names the index lists but are absent."""
    index = folder / _INDEX
    if not index.exists():
        return sorted(folder.glob("*.safetensors")), []
    weight_map = _read_json_object(index).get("weight_map")
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise BadModelFile(str(index), "no weight_map of tensor name to file name")
    names = sorted(set(weight_map.values()))
    if any("/" in n or "\\" in n or n.startswith(".") for n in names):
        raise BadModelFile(str(index), "weight_map names a file outside the folder")
    present = [folder / n for n in names if (folder / n).is_file()]
    return present, [n for n in names if not (folder / n).is_file()]


def _read_json_object(path: Path) -> dict[str, Any]:
    shown = str(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(_MAX_JSON + 1)
    except FileNotFoundError:
        raise BadModelFile(shown, "file not found") from None
    except OSError as exc:
        raise BadModelFile(shown, f"cannot read: {exc.strerror or exc}") from None
    if len(raw) > _MAX_JSON:
        raise BadModelFile(shown, f"larger than {_MAX_JSON} bytes")
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise BadModelFile(shown, f"invalid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise BadModelFile(shown, f"a JSON {type(doc).__name__}, expected an object")
    return doc


def _has_chat_template(folder: Path) -> bool:
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    try:
        template = _read_json_object(folder / "tokenizer_config.json").get("chat_template")
    except BadModelFile:
        return False
    return bool(template)
