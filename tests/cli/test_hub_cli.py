"""`llm-tui models search|fit` against the fake Hub on 127.0.0.1: in a subprocess as a user runs them (JSON and
tables, errors as one line), numbers checked against what the builders wrote into the headers."""

from __future__ import annotations

import io
import json
import shlex
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from engines.catalog.fit import OVERHEAD_BYTES, GpuFree, Resources
from engines.config.load import load_config
from tests.engines.fake_hub import FakeHub, Recorded
from tests.engines.hub_fixtures import (
    GEMMA_FILE,
    gated_repo,
    gemma_repo,
    quant_series_repo,
    safetensors_repo,
    search_corpus,
    split_gguf_repo,
)

ROOT = Path(__file__).resolve().parents[2]
MB = 1_000_000


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with FakeHub() as server:
        yield server


def llm_tui(tmp: Path, endpoint: str, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the command line with every folder under `tmp` and the Hub at `endpoint`."""
    config = tmp / "config.toml"
    if not config.exists():  # an Ollama that is not there: `models list` says so on stderr and goes on
        config.write_text(f'models_dir = "{tmp / "models"}"\nollama_host = "http://127.0.0.1:9"\n')
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp),
        "XDG_CONFIG_HOME": str(tmp / "config"),
        "XDG_DATA_HOME": str(tmp / "data"),
        "XDG_CACHE_HOME": str(tmp / "cache"),
        "LLM_TUI_DATA_DIR": str(tmp / "llm-tui-data"),
        "LLM_TUI_CACHE_DIR": str(tmp / "llm-tui-cache"),
        "HF_HOME": str(tmp / "hf-home"),
        "HF_HUB_CACHE": str(tmp / "hf-cache"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_ENDPOINT": endpoint,
    }
    if token is not None:
        env["HF_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
    )


def fit_json(tmp: Path, hub: FakeHub, *args: str, token: str | None = None) -> list[dict[str, Any]]:
    result = llm_tui(tmp, hub.endpoint, "models", "fit", *args, "--json", token=token)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # not a terminal: nothing on stderr but errors
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def ranged(requests: list[Recorded]) -> list[Recorded]:
    return [r for r in requests if "range" in r.headers]


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stdout
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("llm-tui: error: "), result.stderr
    return lines[0]


# -- search ---------------------------------------------------------------------------------------


def test_search_json_is_best_first_across_pages_and_stops_at_the_limit(hub: FakeHub, tmp_path: Path) -> None:
    expected = search_corpus(hub, "llama", 120)
    hub.max_page_size = 25  # 60 results take three pages
    result = llm_tui(tmp_path, hub.endpoint, "models", "search", "llama", "--json", "--limit", "60")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    found = json.loads(result.stdout)
    assert [r["id"] for r in found] == expected[:60]
    assert [r["downloads"] for r in found] == sorted((r["downloads"] for r in found), reverse=True)
    first = found[0]
    assert set(first) >= {"id", "downloads", "likes", "last_modified", "formats", "gated", "commit"}
    assert first["formats"] == ["gguf"] and first["gated"] is None
    assert sum(1 for r in hub.requests if r.path.startswith("/api/models?")) == 3


def test_search_by_likes_and_as_a_table(hub: FakeHub, tmp_path: Path) -> None:
    search_corpus(hub, "llama", 30)
    result = llm_tui(tmp_path, hub.endpoint, "models", "search", "llama", "--json", "--sort", "likes", "--limit", "5")
    likes = [r["likes"] for r in json.loads(result.stdout)]
    assert len(likes) == 5 and likes == sorted(likes, reverse=True)
    table = llm_tui(tmp_path, hub.endpoint, "models", "search", "llama", "--limit", "3")
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["ID", "DOWNLOADS", "LIKES", "MODIFIED", "FORMATS", "GATED"]
    assert len(rows) == 3 and all("gguf" in row for row in rows)
    words = llm_tui(tmp_path, hub.endpoint, "models", "search", "llama", "3", "--json")  # the words are one query
    assert words.returncode == 0, words.stderr
    assert parse_qs(urlsplit(hub.requests[-1].path).query)["search"] == ["llama 3"]


def test_search_bad_limit_is_one_line(hub: FakeHub, tmp_path: Path) -> None:
    line = one_line_error(llm_tui(tmp_path, hub.endpoint, "models", "search", "llama", "--limit", "0"))
    assert "--limit" in line
    assert hub.requests == []


# -- fit ------------------------------------------------------------------------------------------


def test_fit_of_a_split_gguf_repo_reads_small_headers_and_gets_the_builders_numbers(
    hub: FakeHub, tmp_path: Path
) -> None:
    split = split_gguf_repo(hub)
    (row,) = fit_json(tmp_path, hub, split.repo, "--ctx", "8k")
    shape = split.shape
    assert row["kind"] == "gguf-split" and row["source"] == "hub" and row["format"] == "gguf"
    assert row["file"] == split.parts[0].path.removesuffix("-00001-of-00003.gguf")
    assert row["files"] == [p.path for p in split.parts]
    assert row["commit"] == split.hub_repo.commit and row["repo"] == split.repo
    assert row["status"] == "ok" and row["error"] is None
    assert row["architecture"] == "llama" and row["quantization"] == "Q4_K_M"
    assert row["params"] == split.params
    assert row["layers"] == shape.blocks and row["context_length"] == shape.ctx
    assert row["weights_bytes"] == sum(p.size - p.data_offset for p in split.parts)
    assert row["size_bytes"] == row["download_bytes"] == split.size
    head_dim = shape.embd // shape.heads
    assert row["n_ctx"] == 8192 and row["kv_cache_bytes"] == 2 * shape.blocks * shape.kv_heads * head_dim * 2 * 8192
    assert row["fit"]["ram_bytes"] + row["fit"]["vram_bytes"] > row["weights_bytes"] + row["kv_cache_bytes"]
    # three headers of a 42 GB model: the first holds the 128k-token vocabulary, the others only their tensors
    assert 0 < row["header_bytes_read"] < 6 * MB and row["header_requests"] >= 3
    assert row["cached"] is False
    assert all(
        r.headers["range"].count("-") == 1 and not r.headers["range"].endswith("-") for r in ranged(hub.requests)
    )


def test_fit_of_a_safetensors_repo(hub: FakeHub, tmp_path: Path) -> None:
    st = safetensors_repo(hub)
    (row,) = fit_json(tmp_path, hub, st.repo, "--ctx", "4096", "--gpu-layers", "0")
    shape = st.shape
    assert row["kind"] == "safetensors" and row["file"] == "." and row["format"] == "hf"
    assert {"config.json", "tokenizer_config.json", *(s.path for s in st.shards)} <= set(row["files"])
    assert row["status"] == "ok" and row["architecture"] == "llama"
    assert row["params"] == st.params
    assert row["layers"] == shape.blocks and row["context_length"] == shape.ctx
    head_dim = shape.embd // shape.heads
    kv = 2 * shape.blocks * shape.kv_heads * head_dim * 2 * 4096
    assert row["kv_cache_bytes"] == kv
    # The shards' headers give the exact tensor bytes (the index's total_size), as for a folder on disk.
    assert row["weights_bytes"] == st.total_size and row["size_bytes"] < row["download_bytes"]
    assert 0 <= row["download_bytes"] - st.total_size < MB
    assert row["fit"]["vram_bytes"] == 0
    assert row["fit"]["ram_bytes"] == st.total_size + kv + OVERHEAD_BYTES
    assert 0 < row["header_bytes_read"] < 2 * MB


def test_a_second_fit_is_served_from_the_cache_without_a_range_request(hub: FakeHub, tmp_path: Path) -> None:
    st = safetensors_repo(hub)
    (first,) = fit_json(tmp_path, hub, st.repo)
    assert first["cached"] is False and ranged(hub.requests)
    before = len(hub.requests)
    (second,) = fit_json(tmp_path, hub, st.repo)
    assert second["cached"] is True
    assert second["header_bytes_read"] == first["header_bytes_read"] > 0
    assert second["params"] == first["params"] and second["fit"] == first["fit"]
    assert ranged(hub.requests[before:]) == []


@pytest.mark.real_model
def test_fit_of_the_real_gemma_equals_models_list_of_the_same_file_here(
    hub: FakeHub, tmp_path: Path, gemma_path: Path
) -> None:
    gemma = gemma_repo(hub, gemma_path)
    (remote,) = fit_json(tmp_path, hub, gemma.repo, GEMMA_FILE, "--ctx", "8k")
    models = tmp_path / "models"
    models.mkdir()
    (models / GEMMA_FILE).symlink_to(gemma_path)
    listed = llm_tui(tmp_path, hub.endpoint, "models", "list", "--json", "--local", "--n-ctx", "8192")
    assert listed.returncode == 0, listed.stderr
    (local,) = [r for r in json.loads(listed.stdout) if r["path"] and r["path"].endswith(GEMMA_FILE)]
    for key in ("params", "quantization", "context_length", "architecture", "size_bytes", "format", "status"):
        assert remote[key] == local[key], key
    assert remote["params"] > 260e6 and remote["context_length"] == gemma.numbers["ctx"]
    assert remote["layers"] == gemma.numbers["blocks"]
    # `models list` checks fits without the GPUs; on a machine with one, compare the same CPU-only placement
    if remote["fit"]["vram_bytes"]:
        (remote,) = fit_json(tmp_path, hub, gemma.repo, GEMMA_FILE, "--ctx", "8k", "--gpu-layers", "0")
    assert remote["fit"] == local["fit"]
    assert 4 * MB < remote["header_bytes_read"] < 5 * MB  # the vocabulary alone is 4.4 MB; the file 253 MB


def test_a_gated_repo_without_a_token_is_one_line_saying_how_to_set_one(hub: FakeHub, tmp_path: Path) -> None:
    gated = gated_repo(hub, n_vocab_tokens=0)
    line = one_line_error(llm_tui(tmp_path, hub.endpoint, "models", "fit", gated.repo))
    assert "gated" in line and "hf_token" in line and "HF_TOKEN" in line
    (row,) = fit_json(tmp_path, hub, gated.repo, token=gated.token)
    assert row["status"] == "ok" and row["params"] == gated.gguf.params


def test_an_unreachable_endpoint_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{s.getsockname()[1]}"
    line = one_line_error(llm_tui(tmp_path, endpoint, "models", "fit", "org/model-GGUF"))
    assert "cannot reach" in line and endpoint in line


def test_an_unknown_file_names_what_the_repo_has(hub: FakeHub, tmp_path: Path) -> None:
    split = split_gguf_repo(hub, n_vocab_tokens=0)
    base = split.parts[0].path.removesuffix("-00001-of-00003.gguf")
    line = one_line_error(llm_tui(tmp_path, hub.endpoint, "models", "fit", split.repo, "nothing.gguf"))
    assert "'nothing.gguf'" in line and base in line
    assert ranged(hub.requests) == []
    (by_part,) = fit_json(tmp_path, hub, split.repo, split.parts[1].path)  # a part's name picks its split
    assert by_part["file"] == base


@pytest.mark.parametrize("ctx", ["8q", "100", "2m", ""])
def test_a_bad_ctx_is_one_line_before_any_request(hub: FakeHub, tmp_path: Path, ctx: str) -> None:
    line = one_line_error(llm_tui(tmp_path, hub.endpoint, "models", "fit", "org/x", "--ctx", ctx))
    assert "--ctx" in line
    assert hub.requests == []


def test_ctx_sizes() -> None:
    from cli.hub import parse_ctx

    assert [parse_ctx(t) for t in ("4096", "8k", "32K", "1m", " 16_384 ")] == [4096, 8192, 32768, 1 << 20, 16384]


# -- the table, with progress on a terminal -------------------------------------------------------


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_table_stars_the_largest_that_fits_and_says_why_the_next_does_not(
    hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cli.hub
    from cli.main import build_parser

    quants = ["Q2_K", "Q4_K_M", "Q6_K", "Q8_0"]  # 8B: ~3.2, 4.9, 6.6, 8.5 GB
    series = quant_series_repo(hub, quants=quants, n_vocab_tokens=0)
    gpu = Resources(ram_free_bytes=64 * 10**9, gpus=(GpuFree(0, "test GPU", 9 * 10**9),), disk_free_bytes=10**12)
    monkeypatch.setattr(cli.hub, "machine_resources", lambda _config: gpu)
    env = {
        "LLM_TUI_DATA_DIR": str(tmp_path / "d"),
        "LLM_TUI_CACHE_DIR": str(tmp_path / "c"),
        "HF_ENDPOINT": hub.endpoint,
    }
    config = load_config(env=env, cwd=tmp_path)
    args = build_parser().parse_args(["models", "fit", series.repo, "--ctx", "4k"])
    out, err = io.StringIO(), Terminal()
    assert cli.hub.run_fit(args, config, out, err) == 0
    assert "reading headers 4/4" in err.getvalue() and err.getvalue().endswith("\r")
    lines = out.getvalue().splitlines()
    assert lines[0].split()[:3] == ["FILE", "QUANT", "SIZE"] and "KV @ 4096" in lines[0]
    starred = [line for line in lines[1:5] if line.startswith("★")]
    assert len(starred) == 1 and "Q6_K" in starred[0] and "fits on GPU 0" in starred[0]
    assert "Q8_0" in lines[4] and "partial offload" in lines[4]
    assert lines[5].startswith("★ Q6_K is the largest that fits whole") and "Q8_0 needs" in lines[5]
    assert "9.0 GB free" in lines[5]
    pull = shlex.split(lines[6].removeprefix("get it: "))
    q6, projector = series.ggufs["Q6_K"].path, series.mmproj.path
    assert pull == ["llm-tui", "models", "pull", series.repo, "--file", q6, "--file", projector, "--revision", pull[-1]]
    # With a split of one's own there is no "largest that fits whole" to star
    args = build_parser().parse_args(["models", "fit", series.repo, "--ctx", "4k", "--gpu-layers", "20", "--json"])
    out = io.StringIO()
    assert cli.hub.run_fit(args, config, out, Terminal()) == 0
    rows = json.loads(out.getvalue())
    assert [r["best"] for r in rows] == [False] * 4
    assert all(r["fit"]["verdict"] == "20 of 32 layers on GPU 0" for r in rows[:3])


def test_the_pull_line_under_the_table_fetches_exactly_the_best_model(
    hub: FakeHub, tmp_path: Path, gemma_path: Path
) -> None:
    gemma = gemma_repo(hub, gemma_path)
    shown = llm_tui(tmp_path, hub.endpoint, "models", "fit", gemma.repo, "--ctx", "4k")
    assert shown.returncode == 0, shown.stderr
    (line,) = [x for x in shown.stdout.splitlines() if x.startswith("get it: ")]
    words = shlex.split(line.removeprefix("get it: "))
    assert words[:3] == ["llm-tui", "models", "pull"] and words[-2] == "--revision"
    pulled = llm_tui(tmp_path, hub.endpoint, *words[1:])
    assert pulled.returncode == 0, pulled.stderr
    (path,) = [Path(p) for p in pulled.stdout.split()]
    assert path.name == gemma.gguf.path and path.stat().st_size == gemma.gguf.size  # verified against the sha256
