"""`llm-tui models list|rm` end to end, in a subprocess, over a models_dir with the real gemma and broken files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def llm_tui(tmp: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp),
        "XDG_CONFIG_HOME": str(tmp / "config"),
        "XDG_DATA_HOME": str(tmp / "data"),
        "XDG_CACHE_HOME": str(tmp / "cache"),
        "HF_HUB_CACHE": str(tmp / "hf-cache"),
    }
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "--config", str(tmp / "config.toml"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
        input=stdin,
    )


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    # An Ollama that is not there: a status line on stderr, never a failure.
    (tmp_path / "config.toml").write_text(f'models_dir = "{folder}"\nollama_host = "http://127.0.0.1:9"\n')
    return folder


@pytest.mark.real_model
def test_list_json_shows_gemma_with_real_metadata_and_broken_files(models_dir: Path, gemma_path: Path) -> None:
    (models_dir / gemma_path.name).symlink_to(gemma_path)
    with gemma_path.open("rb") as f:
        head = f.read(4096)
    (models_dir / "truncated.gguf").write_bytes(head)
    (models_dir / "corrupted.gguf").write_bytes(b"GGUF" + b"\xff" * 60)

    result = llm_tui(models_dir.parent, "models", "list", "--json")
    assert result.returncode == 0, result.stderr
    assert "Ollama not reachable" in result.stderr
    rows = {row["id"]: row for row in json.loads(result.stdout)}
    gemma = rows["gemma-3-270m"]
    assert gemma["source"] == "local" and gemma["format"] == "gguf" and gemma["status"] == "ok"
    assert gemma["architecture"] == "gemma3" and gemma["quantization"] == "Q4_K_M"
    assert 260e6 < gemma["params"] < 280e6 and gemma["size_bytes"] == gemma_path.stat().st_size
    assert gemma["context_length"] == 32768 and "llama.cpp" in gemma["engines"]
    assert gemma["fit"]["verdict"] == "fits in RAM" and gemma["fit"]["ram_bytes"] > gemma["size_bytes"]
    for name in ("truncated", "corrupted"):
        assert rows[name]["status"] == "broken" and rows[name]["error"], rows[name]
    # Curated entries not here are listed as downloadable, with a fit verdict from their size.
    catalog = [row for row in rows.values() if row["source"] == "catalog"]
    assert len(catalog) > 100 and all(row["fit"] for row in catalog if row["params"])

    local = json.loads(llm_tui(models_dir.parent, "models", "list", "--json", "--local").stdout)
    assert sorted(row["id"] for row in local) == ["corrupted", "gemma-3-270m", "truncated"]

    table = llm_tui(models_dir.parent, "models", "list", "--local").stdout
    assert "gemma-3-270m" in table and "fits in RAM" in table and "broken:" in table


def test_rm_asks_unless_yes_and_stays_inside_models_dir(models_dir: Path, tmp_path: Path) -> None:
    (models_dir / "junk.gguf").write_bytes(b"GGUF" + b"\0" * 60)
    outside = tmp_path / "precious.gguf"
    outside.write_bytes(b"GGUF" + b"\0" * 60)
    (models_dir / "link.gguf").symlink_to(outside)

    refused = llm_tui(tmp_path, "models", "rm", "junk", stdin="")
    assert refused.returncode == 1 and "--yes" in refused.stderr
    assert (models_dir / "junk.gguf").exists()

    done = llm_tui(tmp_path, "models", "rm", "junk", "--yes")
    assert done.returncode == 0, done.stderr
    assert not (models_dir / "junk.gguf").exists()

    unknown = llm_tui(tmp_path, "models", "rm", "nope", "--yes")
    assert unknown.returncode == 1 and "no local model 'nope'" in unknown.stderr

    link = llm_tui(tmp_path, "models", "rm", "link", "--yes")
    assert link.returncode == 0, link.stderr
    assert not (models_dir / "link.gguf").exists() and outside.exists()  # the link goes, its target stays
