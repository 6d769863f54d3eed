"""Hostile GGUF headers (issue 18 item 5): huge declared counts are refused in bounded time and memory."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engines.catalog.gguf_header import read_gguf_header
from engines.errors import BadModelFile
from tests.cli.test_models import llm_tui
from tests.engines.test_gguf_header import build, gstr, kv, kv_str, tensor_info, u32, u64

MILLION = 1_000_000


def sparse(path: Path, head: bytes, size: int) -> Path:
    """A file of `size` bytes that starts with `head` and is zeros after it (sparse: no disk used)."""
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(size)
    return path


def many_tensors(path: Path) -> Path:
    """4M tensors declared, the table there in full (zeros after a few real entries), like the issue's 123 MB file."""
    n = 4 * MILLION
    infos = b"".join(tensor_info(f"t{i}", [8], 0, 32 * i) for i in range(4))
    head = b"GGUF" + u32(3) + u64(n) + u64(1) + kv_str("general.architecture", "llama") + infos
    return sparse(path, head, len(head) + n * 32 + 32 * n)


def many_keys(path: Path) -> Path:
    """4M metadata keys declared, each a distinct-looking uint8 entry for the first few, zeros after."""
    n = 4 * MILLION
    kvs = b"".join(kv(f"k{i}", 0, b"\x01") for i in range(4))
    head = b"GGUF" + u32(3) + u64(0) + u64(n) + kvs
    return sparse(path, head, len(head) + n * 16)


def test_four_million_tensors_refused_fast(tmp_path: Path) -> None:
    path = many_tensors(tmp_path / "tensors.gguf")
    start = time.perf_counter()
    with pytest.raises(BadModelFile) as info:
        read_gguf_header(path)
    assert time.perf_counter() - start < 1
    assert info.value.reason == "declares 4,000,000 tensors; the limit is 100,000"


def test_four_million_keys_refused_fast(tmp_path: Path) -> None:
    path = many_keys(tmp_path / "keys.gguf")
    start = time.perf_counter()
    with pytest.raises(BadModelFile) as info:
        read_gguf_header(path)
    assert time.perf_counter() - start < 1
    assert info.value.reason == "declares 4,000,000 metadata keys; the limit is 10,000"


def test_too_many_strings_refused_before_walking_them(tmp_path: Path) -> None:
    n = 5 * MILLION  # zero-length strings: 8 bytes each, walked one by one
    head = b"GGUF" + u32(3) + u64(0) + u64(1) + kv("x", 9, u32(8) + u64(n))
    path = sparse(tmp_path / "strings.gguf", head, len(head) + 8 * n)
    start = time.perf_counter()
    with pytest.raises(BadModelFile, match="metadata arrays hold more than 4,194,304 strings or arrays"):
        read_gguf_header(path)
    assert time.perf_counter() - start < 1


def test_huge_scalar_array_refused(tmp_path: Path) -> None:
    n = 20 * MILLION
    head = b"GGUF" + u32(3) + u64(0) + u64(1) + kv("x", 9, u32(0) + u64(n))
    path = sparse(tmp_path / "bytes.gguf", head, len(head) + n)
    with pytest.raises(BadModelFile, match="array 'x' declares 20,000,000 items; the limit is 16,777,216"):
        read_gguf_header(path)


def test_metadata_bytes_capped(tmp_path: Path) -> None:
    one = 1 << 20  # a uint8 array of 1 MiB per key (skipped, not read): the 256th passes 256 MiB
    path = tmp_path / "meta.gguf"
    with open(path, "wb") as f:
        f.write(b"GGUF" + u32(3) + u64(0) + u64(300))
        for i in range(300):
            f.write(kv(f"k{i:03d}", 9, u32(0) + u64(one)))
            f.seek(one, 1)  # sparse: the array's bytes are a hole
        f.truncate(f.tell())
    with pytest.raises(BadModelFile, match="metadata passes 268,435,456 bytes at key #255; that is the limit"):
        read_gguf_header(path)


def test_bad_magic_never_echoes_file_bytes(tmp_path: Path) -> None:
    path = tmp_path / "shadow"
    path.write_bytes(b"root:$6$secret:19000:0:99999:7:::\n")
    with pytest.raises(BadModelFile) as info:
        read_gguf_header(path)
    assert info.value.reason == "not a GGUF file (no GGUF magic)"
    assert "secret" not in str(info.value) and "$6$" not in str(info.value)


# VmHWM, not ru_maxrss: a child's ru_maxrss starts from the parent's peak (Linux keeps it across fork and exec).
_MEASURE = """
import re, sys, time
from engines.catalog.gguf_header import read_gguf_header
from engines.errors import BadModelFile
def peak_kib():
    return int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
base = peak_kib()
start = time.perf_counter()
try:
    read_gguf_header(sys.argv[1])
except BadModelFile as exc:
    print(time.perf_counter() - start, base, peak_kib(), exc.reason)
"""


def test_hostile_files_cost_little_time_and_memory(tmp_path: Path) -> None:
    for path in (many_tensors(tmp_path / "tensors.gguf"), many_keys(tmp_path / "keys.gguf")):
        out = subprocess.run([sys.executable, "-c", _MEASURE, str(path)], capture_output=True, text=True, check=True)
        seconds, _start_kib, peak_kib, reason = out.stdout.split(maxsplit=3)
        assert "the limit is" in reason
        assert float(seconds) < 1
        assert int(peak_kib) < 100 * 1024  # the whole process, Python and numpy included


def test_models_list_shows_hostile_files_broken(tmp_path: Path) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    (tmp_path / "config.toml").write_text(f'models_dir = "{folder}"\nollama_host = "http://127.0.0.1:9"\n')
    many_tensors(folder / "tensors.gguf")
    many_keys(folder / "keys.gguf")
    start = time.perf_counter()
    out = llm_tui(tmp_path, "models", "list", "--json", "--local")
    assert time.perf_counter() - start < 30  # a process start; the files took 54 s and 39 s
    rows = {row["id"]: row for row in json.loads(out.stdout)}
    assert rows["tensors"]["status"] == "broken" and "4,000,000 tensors" in rows["tensors"]["error"]
    assert rows["keys"]["status"] == "broken" and "4,000,000 metadata keys" in rows["keys"]["error"]


# -- fuzz: a small valid header with its counts, lengths and types replaced -----------------------------

FIELD = st.one_of(
    st.integers(0, 300),
    st.sampled_from([2**20, 2**22 + 1, 2**24 + 1, 2**32 - 1, 2**63, 2**64 - 1]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n_tensors=FIELD,
    n_kv=FIELD,
    key_len=FIELD,
    vtype=st.integers(0, 14),
    item_type=st.integers(0, 14),
    count=FIELD,
    cut=st.integers(0, 400),
    pad=st.sampled_from([0, 1 << 16, 1 << 22]),
)
def test_fuzzed_counts_lengths_and_types_fail_cleanly(
    tmp_path: Path, n_tensors: int, n_kv: int, key_len: int, vtype: int, item_type: int, count: int, cut: int, pad: int
) -> None:
    hostile = u64(key_len) + b"key" + u32(vtype) + u32(item_type) + u64(count) + gstr("v") * 3
    data = build([kv_str("general.architecture", "llama"), hostile], [tensor_info("t", [8], 0, 0)], bytes(32))
    data = data[: len(data) - cut] if cut < len(data) else data
    head = data[:4] + u32(3) + u64(n_tensors) + u64(n_kv) + data[24:]
    path = sparse(tmp_path / "fuzz.gguf", head, len(head) + pad)
    start = time.perf_counter()
    try:
        read_gguf_header(path)
    except BadModelFile as exc:
        assert not exc.reason.startswith("malformed GGUF header"), exc.reason  # the safety net never fires
    assert time.perf_counter() - start < 2
