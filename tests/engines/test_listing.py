"""The catalog list: local rows merged with curated entries, fits, and deletion kept inside models_dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from engines.catalog.builtin import CatalogEntry
from engines.catalog.discover import Discovery
from engines.catalog.fit import GpuFree, Resources
from engines.catalog.listing import CatalogRow, build_listing, find_row, remove_local
from engines.catalog.local_model import LocalModel
from engines.config.load import Config
from engines.errors import LlmTuiError

ENTRY = CatalogEntry(
    id="tiny-1b-q4_k_m",
    name="Tiny 1B",
    family="tiny",
    format="gguf",
    engines=("llama.cpp",),
    params=1_000_000_000,
    context_length=8192,
    quantization="Q4_K_M",
    repo="org/tiny-GGUF",
    file="tiny-1b-q4_k_m.gguf",
    size_bytes=600_000_000,
)
BIG = CatalogEntry(
    id="huge-400b-q4_k_m",
    name="Huge",
    family="huge",
    format="gguf",
    engines=("llama.cpp",),
    params=400_000_000_000,
    size_bytes=240_000_000_000,
    repo="org/huge",
    file="huge.gguf",
)


def config(tmp_path: Path) -> Config:
    return Config(models_dir=tmp_path / "models", data_dir=tmp_path / "data", cache_dir=tmp_path / "cache")


def test_rows_merge_local_copies_with_their_entry_and_fit(tmp_path: Path) -> None:
    local = LocalModel(
        id="tiny-1b-q4_k_m", source="local", format="gguf", name="tiny", size_bytes=600_000_000, catalog_id=ENTRY.id
    )
    daemon = LocalModel(id="ollama:qwen3:8b", source="ollama", format="ollama", name="qwen3:8b", size_bytes=5 << 30)
    found = Discovery(models=[local, daemon], statuses=["Ollama at http://127.0.0.1:11434: 1 model"])
    resources = Resources(ram_free_bytes=16 << 30, gpus=(GpuFree(0, "GPU", 8 << 30),), disk_free_bytes=100 << 30)

    listing = build_listing(config(tmp_path), catalog=[ENTRY, BIG], discovery=found, resources=resources, n_ctx=4096)

    ids = [r.id for r in listing.rows]
    assert ids == ["tiny-1b-q4_k_m", "ollama:qwen3:8b", "huge-400b-q4_k_m"]  # the tiny entry is not listed twice
    tiny, qwen, huge = listing.rows
    assert tiny.source == "local" and tiny.params == ENTRY.params and tiny.engines == ("llama.cpp",)
    assert tiny.fit is not None and tiny.fit.verdict == "fits on GPU 0"
    assert qwen.fit is None  # the daemon holds its own memory
    assert huge.source == "catalog" and huge.fit is not None and not huge.fit.fits
    assert "exceeds free disk" in huge.fit.verdict
    assert listing.statuses == found.statuses
    assert find_row(listing, "tiny-1b-q4_k_m") is tiny


def test_remove_local_refuses_anything_outside_models_dir(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    outside = tmp_path / "elsewhere.gguf"
    outside.write_bytes(b"x")
    row = CatalogRow(id="x", name="x", source="local", format="gguf", path=models / ".." / "elsewhere.gguf")
    with pytest.raises(LlmTuiError, match="outside the models directory"):
        remove_local(row, models)
    assert outside.exists()
    with pytest.raises(LlmTuiError, match="nothing deleted"):
        remove_local(CatalogRow(id="c", name="c", source="catalog", format="gguf"), models)


def test_remove_local_deletes_every_split_part_and_whole_folders(tmp_path: Path) -> None:
    models = tmp_path / "models"
    parts = [models / f"m-0000{i}-of-00002.gguf" for i in (1, 2)]
    folder = models / "hf-model"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    for part in parts:
        part.write_bytes(b"x")
    split = CatalogRow(id="m", name="m", source="local", format="gguf", path=parts[0], files=tuple(parts))
    assert remove_local(split, models) == [p.resolve() for p in parts]
    assert not any(p.exists() for p in parts)
    hf = CatalogRow(id="h", name="h", source="local", format="hf", path=folder, files=(folder / "config.json",))
    remove_local(hf, models)
    assert not folder.exists() and models.exists()
