"""Provenance of merged models: llm-tui-tune.json read back tolerantly, and the catalog's local rows saying
"tuned: run NAME from BASE" for such a folder (and nothing for an ordinary one)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engines.catalog.fit import Resources
from engines.catalog.listing import build_listing
from engines.config.load import Config
from engines.tune.provenance import (
    MAX_PROVENANCE_BYTES,
    PROVENANCE_FILE,
    Provenance,
    provenance_from,
    read_provenance,
)
from tests.engines.gguf_corpus import write_hf_folder

SHA = "ab" * 32


def _write(folder: Path, data: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / PROVENANCE_FILE).write_text(json.dumps(data))
    return folder


def test_read_back_what_was_written(tmp_path: Path) -> None:
    prov = provenance_from({"run": "pirate", "base": "gemma-3-270m", "data_sha256": SHA, "adapter": tmp_path / "a"})
    assert prov.created is not None and prov.adapter == str(tmp_path / "a")
    _write(tmp_path / "m", prov.to_json())
    assert read_provenance(tmp_path / "m") == prov
    assert prov.origin == "tuned: run pirate from gemma-3-270m"


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[1, 2]",
        json.dumps({"run": "x", "base": "y", "data_sha256": SHA}),  # no adapter
        json.dumps({"run": 3, "base": "y", "data_sha256": SHA, "adapter": "a"}),
        json.dumps({"run": "x", "base": "y", "data_sha256": SHA, "adapter": "a", "created": "yesterday"}),
    ],
)
def test_a_bad_file_is_no_provenance(tmp_path: Path, content: str) -> None:
    (tmp_path / PROVENANCE_FILE).write_text(content)
    assert read_provenance(tmp_path) is None


def test_an_oversized_file_is_not_read(tmp_path: Path) -> None:
    data = {"run": "x", "base": "y", "data_sha256": SHA, "adapter": "a", "pad": "z" * MAX_PROVENANCE_BYTES}
    _write(tmp_path, data)
    assert read_provenance(tmp_path) is None
    assert read_provenance(tmp_path / "missing") is None


def test_provenance_needs_its_fields() -> None:
    with pytest.raises(ValueError, match="'base'"):
        provenance_from({"run": "x", "data_sha256": SHA, "adapter": "a"})


def test_the_catalog_lists_a_merged_folder_as_tuned(tmp_path: Path) -> None:
    config = Config(models_dir=tmp_path / "models", data_dir=tmp_path / "data", cache_dir=tmp_path / "cache")
    merged = write_hf_folder(config.models_dir / "pirate-merged")
    _write(merged, Provenance("pirate", "gemma-3-270m", SHA, "/runs/pirate/adapter", 1.0).to_json())
    write_hf_folder(config.models_dir / "plain")
    resources = Resources(ram_free_bytes=16 << 30, gpus=(), disk_free_bytes=100 << 30)

    listing = build_listing(config, local_only=True, include_network=False, catalog=[], resources=resources)

    rows = {r.id: r for r in listing.rows if r.source == "local"}
    assert rows["pirate-merged"].format == "hf" and rows["pirate-merged"].engines == ("transformers",)
    assert rows["pirate-merged"].origin == "tuned: run pirate from gemma-3-270m"
    assert rows["pirate-merged"].to_json()["origin"] == "tuned: run pirate from gemma-3-270m"
    assert rows["plain"].origin is None
