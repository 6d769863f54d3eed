"""Read and validate a GGUF file's header, metadata and tensor table without loading weights."""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Callable
from pathlib import Path
from typing import IO

from engines.catalog.gguf_info import ArrayInfo, GgufHeader, TensorInfo, ggml_types, value_type_names
from engines.errors import BadModelFile

__all__ = ["ArrayInfo", "GgufHeader", "ReadAt", "TensorInfo", "is_gguf", "parse_gguf_header", "read_gguf_header"]

ReadAt = Callable[[int, int], bytes]
"""`read_at(offset, at_least)`: the bytes from `offset`, at least `at_least` of them unless the file ends first
(more is welcome: the parser keeps what it is given). A local file or a remote one read with HTTP Range."""

_MAGIC = b"GGUF"
_BLOCK = 1 << 20  # bytes read at a time
_MAX_STRING = 1 << 20  # one metadata string (a chat template is tens of KiB)
_MAX_KEPT_STRINGS = 16 << 20  # all metadata strings kept together
_MAX_TENSOR_NAME = 63  # ggml's GGML_MAX_NAME is 64 including the NUL
_MAX_DIMS = 4
_MAX_NESTING = 4  # arrays of arrays
_MAX_ALIGNMENT = 1 << 20
_KEEP_ARRAY = 64  # arrays up to this length are kept as lists, longer ones summarised
_I64_MAX = (1 << 63) - 1
_ABSURD = 1 << 40  # no single field of a real model needs a TiB: beyond this a length is corrupt, not cut short

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_HEADER = struct.Struct("<4sIQQ")  # magic, version, tensor count, kv count
_UINT32, _BOOL, _STRING = 4, 7, 8
# value type -> struct code, for every type but string (8) and array (9)
_SCALAR_CODES = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "B", 10: "Q", 11: "q", 12: "d"}
_SCALARS = {vtype: struct.Struct("<" + code) for vtype, code in _SCALAR_CODES.items()}
_MIN_KV = 8 + 4 + 1  # key length, value type, one-byte value
# Caps far above any real model, so a hostile header is refused before it costs time or memory.
# Real files: Gemma 3 has 33 keys and 236 tensors; a 405B split ~1,100 tensors; unmerged MoE experts ~14k;
# the largest vocabularies (tokens, scores, merges) are ~260k entries per array.
_MAX_TENSORS = 100_000
_MAX_KEYS = 10_000
_MAX_ARRAY = 1 << 24  # items in one array (scalar arrays are skipped, not read)
_MAX_WALKED = 1 << 22  # string items and sub-arrays walked one by one, over all metadata (the time cost)
_MAX_METADATA = 256 << 20  # bytes of the metadata section (Gemma 3's is 6.5 MB)
_MIN_TENSOR_INFO = 8 + 4 + 4 + 8  # name length, n_dims, ggml type, offset


def is_gguf(path: str | os.PathLike[str]) -> bool:
    """Whether the file exists and starts with the GGUF magic."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        with open(path, "rb") as f:
            return f.read(4) == _MAGIC
    except (OSError, ValueError):
        return False


def read_gguf_header(path: str | os.PathLike[str]) -> GgufHeader:
    """Read and validate a GGUF file's header, metadata and tensor table; raise BadModelFile."""
    shown = os.fsdecode(os.fspath(path))
    f = _open_regular(path, shown)
    with f:

        def read_at(offset: int, at_least: int) -> bytes:
            f.seek(offset)
            return f.read(max(at_least, _BLOCK))

        try:
            return parse_gguf_header(read_at, os.fstat(f.fileno()).st_size, shown)
        except OSError as exc:
            raise BadModelFile(shown, f"cannot read: {exc.strerror or exc}") from None


def parse_gguf_header(read_at: ReadAt, size: int, shown: str) -> GgufHeader:
    """Parse and validate the header of a GGUF file of `size` bytes read through `read_at`; raise BadModelFile.

    The same checks and limits whether the bytes come from a local file or a remote one; errors that `read_at`
    raises itself (a network failure, a read budget spent) pass through unchanged.
    """
    try:
        return _Parser(read_at, size, shown).parse()
    except BadModelFile:
        raise
    except MemoryError:
        raise BadModelFile(shown, "header too large to read into memory") from None
    except (struct.error, ValueError, IndexError, OverflowError, KeyError, UnicodeError) as exc:
        # Safety net: every malformation is meant to be caught by the parser with its own reason.
        raise BadModelFile(shown, f"malformed GGUF header ({type(exc).__name__}: {exc})") from None


def _open_regular(path: str | os.PathLike[str], shown: str) -> IO[bytes]:
    try:
        # stat first: opening a FIFO would block
        mode = os.stat(path).st_mode
        if stat.S_ISDIR(mode):
            raise BadModelFile(shown, "is a directory, not a GGUF file")
        if not stat.S_ISREG(mode):
            raise BadModelFile(shown, "not a regular file")
        return open(path, "rb")
    except FileNotFoundError:
        raise BadModelFile(shown, "file not found") from None
    except PermissionError:
        raise BadModelFile(shown, "permission denied") from None
    except (OSError, ValueError) as exc:
        raise BadModelFile(shown, f"cannot open: {getattr(exc, 'strerror', None) or exc}") from None


def _describe_bad_magic(head: bytes) -> str:
    if head.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer, not the model itself (fetch the real file)"
    if head.lstrip()[:1] == b"<":
        return "an HTML/XML page, not a GGUF file (a failed download?)"
    if head.lstrip()[:1] == b"{":
        return "a JSON file, not a GGUF file"
    if len(head) >= 10 and head[8:10] == b'{"':
        return "a safetensors file, not a GGUF file"
    if head[:4] == b"FUGG":
        return "byte-swapped GGUF magic (big-endian files are not supported)"
    # Never echo the bytes: the file may be anything a caller can name (a password file).
    return "not a GGUF file (no GGUF magic)"


class _Parser:
    """A forward-only reader over one file that checks every length against the file size."""

    def __init__(self, read_at: ReadAt, size: int, shown: str) -> None:
        self.read_at = read_at
        self.size = size
        self.shown = shown
        self.buf = b""
        self.base = 0  # file offset of buf[0]
        self.pos = 0  # read position inside buf
        self.kept = 0  # bytes of metadata strings kept so far
        self.types: dict[str, int] = {}  # value type of each metadata key
        self.walked = 0  # string items and sub-arrays walked so far

    # -- errors ---------------------------------------------------------------------------------

    def bad(self, reason: str) -> BadModelFile:
        return BadModelFile(self.shown, reason)

    def past_end(self, what: str, start: int, n: int) -> BadModelFile:
        if n > _ABSURD:
            return self.bad(f"corrupt: {what} at byte {start} claims {n} bytes (the file has {self.size})")
        return self.bad(f"truncated: {what} needs bytes {start}..{start + n} but the file has {self.size}")

    # -- primitive reads ------------------------------------------------------------------------

    @property
    def at(self) -> int:
        return self.base + self.pos

    def need(self, n: int, what: str) -> None:
        if self.pos + n <= len(self.buf):
            return
        at = self.at
        if at + n > self.size:
            raise self.past_end(what, at, n)
        data = self.read_at(at, n)
        if len(data) < n:
            raise self.bad(f"truncated: {what} needs bytes {at}..{at + n} but reading stopped at {at + len(data)}")
        self.buf, self.base, self.pos = data, at, 0

    def skip(self, n: int, what: str) -> None:
        at = self.at
        if at + n > self.size:
            raise self.past_end(what, at, n)
        if self.pos + n <= len(self.buf):
            self.pos += n
        else:
            self.buf, self.base, self.pos = b"", at + n, 0

    def u32(self, what: str) -> int:
        self.need(4, what)
        (value,) = _U32.unpack_from(self.buf, self.pos)
        self.pos += 4
        return int(value)

    def u64(self, what: str) -> int:
        self.need(8, what)
        (value,) = _U64.unpack_from(self.buf, self.pos)
        self.pos += 8
        return int(value)

    def raw_string(self, what: str, cap: int) -> bytes:
        start = self.at
        n = self.u64(f"{what} length")
        if n > cap and n <= self.size - self.at:
            raise self.bad(f"{what} at byte {start} is {n} bytes long, over the {cap}-byte limit")
        self.need(n, what)
        raw = self.buf[self.pos : self.pos + n]
        self.pos += n
        return raw

    def string(self, what: str, cap: int = _MAX_STRING) -> str:
        start = self.at
        raw = self.raw_string(what, cap)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.bad(f"{what} at byte {start} is not valid UTF-8 (byte {exc.start} of the string)") from None

    def check_count(self, count: int, min_size: int, what: str) -> None:
        left = self.size - self.at
        if count * min_size > _ABSURD:
            raise self.bad(f"corrupt: {what} {count} is impossible (the file has {self.size} bytes)")
        if count * min_size > left:
            raise self.bad(
                f"truncated: {what} {count} needs at least {count * min_size} bytes at byte {self.at}"
                f" but the file has {self.size}"
            )

    def skip_strings(self, count: int, what: str) -> None:
        # The hot loop of the whole reader (262k vocabulary entries): no per-item bounds checks,
        # the block's end shows up as struct.error, and lengths only move the position forward.
        unpack = _U64.unpack_from
        while count:
            self.need(8, what)
            buf, pos, done = self.buf, self.pos, 0
            try:
                for done in range(count):  # noqa: B007 - read after the loop
                    pos += unpack(buf, pos)[0] + 8
                else:
                    done = count
            except (struct.error, OverflowError):
                pass
            count -= done
            end = self.base + pos
            if end > self.size:
                kind = "corrupt" if end - self.size > _ABSURD else "truncated"
                raise self.bad(f"{kind}: {what} runs to byte {end} but the file has {self.size}")
            if pos <= len(buf):
                self.pos = pos
            else:
                self.buf, self.base, self.pos = b"", end, 0

    # -- structure ------------------------------------------------------------------------------

    def parse(self) -> GgufHeader:
        self.buf = self.read_at(0, 64) if self.size else b""
        head = self.buf[:64]
        if not head:
            raise self.bad("empty file (0 bytes)")
        if head[:4] != _MAGIC:
            if len(head) < 4:
                raise self.bad(f"too short to be a GGUF file ({len(head)} bytes)")
            raise self.bad(_describe_bad_magic(head))
        self.need(_HEADER.size, "header")
        _, version, n_tensors, n_kv = _HEADER.unpack_from(self.buf, self.pos)
        self.check_version(version)
        self.pos += _HEADER.size
        self.check_limit(n_tensors, _MAX_TENSORS, "tensors")
        self.check_limit(n_kv, _MAX_KEYS, "metadata keys")
        self.check_count(n_kv, _MIN_KV, "metadata count")
        self.check_count(n_tensors, _MIN_TENSOR_INFO, "tensor count")
        metadata: dict[str, object] = {}
        for index in range(n_kv):
            self.read_kv(index, metadata)
            if self.at - _HEADER.size > _MAX_METADATA:
                raise self.bad(f"metadata passes {_MAX_METADATA:,} bytes at key #{index}; that is the limit")
        alignment = self.alignment(metadata)
        self.check_count(n_tensors, _MIN_TENSOR_INFO, "tensor count")
        tensors = tuple(self.read_tensor_info(index) for index in range(n_tensors))
        data_offset = -(-self.at // alignment) * alignment
        self.check_tensors(tensors, data_offset, alignment)
        return GgufHeader(Path(self.shown), version, self.size, metadata, tensors, data_offset)

    def check_limit(self, count: int, limit: int, what: str) -> None:
        if count > limit:
            raise self.bad(f"declares {count:,} {what}; the limit is {limit:,}")

    def walk(self, count: int, what: str) -> None:
        self.walked += count
        if self.walked > _MAX_WALKED:
            raise self.bad(f"metadata arrays hold more than {_MAX_WALKED:,} strings or arrays (at {what})")

    def check_version(self, version: int) -> None:
        if version in (2, 3):
            return
        if version == 1:
            raise self.bad("GGUF version 1 is obsolete and no longer supported (re-convert the model)")
        swapped = int.from_bytes(version.to_bytes(4, "little"), "big")
        if swapped in (1, 2, 3):
            raise self.bad(f"big-endian GGUF (version {swapped} byte-swapped); only little-endian files are supported")
        raise self.bad(f"unsupported GGUF version {version} (expected 2 or 3)")

    def read_kv(self, index: int, metadata: dict[str, object]) -> None:
        start = self.at
        key = self.string(f"metadata key #{index}", cap=64 << 10)
        if key in metadata:
            raise self.bad(f"duplicate metadata key {key!r} at byte {start}")
        self.keep(len(key), repr(key))
        vtype = self.u32(f"type of {key!r}")
        self.types[key] = vtype
        metadata[key] = self.read_value(vtype, repr(key), 0)

    def value_type_name(self, vtype: int, what: str) -> str:
        name = value_type_names().get(vtype)
        if name is None:
            raise self.bad(f"{what} has unknown value type {vtype} at byte {self.at - 4}")
        return name

    def read_value(self, vtype: int, what: str, depth: int) -> object:
        self.value_type_name(vtype, what)
        fmt = _SCALARS.get(vtype)
        if fmt is not None:
            self.need(fmt.size, f"value of {what}")
            (value,) = fmt.unpack_from(self.buf, self.pos)
            self.pos += fmt.size
            return bool(value) if vtype == _BOOL else value
        if vtype == _STRING:
            value = self.string(f"value of {what}")
            self.keep(len(value), what)
            return value
        return self.read_array(what, depth)

    def keep(self, n: int, what: str) -> None:
        self.kept += n
        if self.kept > _MAX_KEPT_STRINGS:
            raise self.bad(f"metadata strings exceed {_MAX_KEPT_STRINGS} bytes at {what}")

    def read_array(self, what: str, depth: int) -> object:
        if depth >= _MAX_NESTING:
            raise self.bad(f"{what} nests arrays more than {_MAX_NESTING} deep")
        item_type = self.u32(f"array type of {what}")
        item_name = self.value_type_name(item_type, f"array {what}")
        count = self.u64(f"array length of {what}")
        code = _SCALAR_CODES.get(item_type)
        item_size = struct.calcsize("<" + code) if code else (8 if item_type == _STRING else 12)
        self.check_count(count, item_size, f"array {what} of {item_name} length")
        if count > _MAX_ARRAY:
            raise self.bad(f"array {what} declares {count:,} items; the limit is {_MAX_ARRAY:,}")
        if code is not None:
            if count > _KEEP_ARRAY:
                self.skip(count * item_size, f"array {what}")
                return ArrayInfo(item_name, count)
            fmt = struct.Struct(f"<{count}{code}")
            self.need(fmt.size, f"array {what}")
            values = list(fmt.unpack_from(self.buf, self.pos))
            self.pos += fmt.size
            return [bool(v) for v in values] if item_type == _BOOL else values
        self.walk(count, what)  # strings and sub-arrays are walked one by one: that is the time they cost
        if item_type == _STRING:
            if count > _KEEP_ARRAY:
                self.skip_strings(count, f"array {what}")
                return ArrayInfo(item_name, count)
            items = [self.string(f"item {i} of {what}") for i in range(count)]
            self.keep(sum(map(len, items)), what)
            return items
        for i in range(count):
            self.read_array(f"{what}[{i}]", depth + 1)
        return ArrayInfo(item_name, count)

    def alignment(self, metadata: dict[str, object]) -> int:
        if "general.alignment" not in metadata:
            return 32
        value = metadata["general.alignment"]
        # llama.cpp reads this key with an assertion on its type: a wrong type would abort the process.
        if self.types["general.alignment"] != _UINT32:
            name = value_type_names().get(self.types["general.alignment"])
            raise self.bad(f"general.alignment has type {name}, expected uint32")
        if type(value) is not int or not 0 < value <= _MAX_ALIGNMENT or value & (value - 1):
            raise self.bad(f"general.alignment {value!r} is not a power of two up to {_MAX_ALIGNMENT}")
        return value

    def read_tensor_info(self, index: int) -> TensorInfo:
        start = self.at
        raw = self.raw_string(f"name of tensor #{index}", cap=_MAX_TENSOR_NAME)
        try:
            name = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.bad(f"name of tensor #{index} at byte {start} is not valid UTF-8") from None
        n_dims = self.u32(f"dimension count of tensor {name}")
        if n_dims > _MAX_DIMS:
            raise self.bad(f"tensor {name} has {n_dims} dimensions (at most {_MAX_DIMS})")
        self.need(8 * n_dims, f"shape of tensor {name}")
        shape = struct.unpack_from(f"<{n_dims}Q", self.buf, self.pos)
        self.pos += 8 * n_dims
        ggml_code = self.u32(f"type of tensor {name}")
        ggml = ggml_types().get(ggml_code)
        if ggml is None:
            raise self.bad(f"tensor {name} has unknown or unsupported ggml type {ggml_code}")
        offset = self.u64(f"offset of tensor {name}")
        type_name, block, type_size = ggml
        n_elements = 1
        for dim in shape:
            n_elements *= dim
            if n_elements > _I64_MAX or dim > _I64_MAX:
                raise self.bad(f"tensor {name} has an impossible shape {list(shape)}")
        if n_dims and shape[0] % block:
            raise self.bad(f"tensor {name}: first dimension {shape[0]} is not a multiple of {type_name}'s {block}")
        n_bytes = n_elements // block * type_size
        return TensorInfo(name, tuple(int(d) for d in shape), type_name, int(offset), n_bytes, n_elements)

    def check_tensors(self, tensors: tuple[TensorInfo, ...], data_offset: int, alignment: int) -> None:
        names: set[str] = set()
        for tensor in tensors:
            if tensor.name in names:
                raise self.bad(f"duplicate tensor name {tensor.name!r}")
            names.add(tensor.name)
            if tensor.offset % alignment:
                raise self.bad(f"tensor {tensor.name} offset {tensor.offset} is not a multiple of {alignment}")
        # In file order the first tensor that does not fit straddles the end: that names the cut.
        for tensor in sorted(tensors, key=lambda t: (t.offset, t.n_bytes)):
            start = data_offset + tensor.offset
            end = start + tensor.n_bytes
            if end > self.size and start >= self.size:
                kind = "corrupt" if tensor.offset > _ABSURD else "truncated"
                raise self.bad(
                    f"{kind}: tensor {tensor.name} starts at byte {start}, past the end of the file ({self.size} bytes)"
                )
            if end > self.size:
                raise self.bad(
                    f"truncated: tensor {tensor.name} needs bytes {start}..{end} but the file has {self.size}"
                )
