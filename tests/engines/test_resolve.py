"""Model references → ModelSpec, and the packaged default model's installation."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from engines.catalog import packaged
from engines.catalog.builtin import builtin_catalog, find_entry, parse_catalog
from engines.catalog.resolve import resolve_model
from engines.errors import ConfigError, DownloadError, ModelNotFound


def test_builtin_catalog_has_the_default_model() -> None:
    entry = find_entry("gemma-3-270m")
    assert entry is not None
    assert entry.file == "gemma-3-270m-q4_k_m.gguf" and entry.chat_template == "base-qa"
    assert entry.kind == "base" and entry.stop == ("\nQuestion:",)
    assert "llama.cpp" in entry.engines
    assert len({e.id for e in builtin_catalog()}) == len(builtin_catalog())


def test_catalog_parse_errors_name_the_entry() -> None:
    with pytest.raises(ConfigError, match=r"models\[0\] has unknown keys \['colour'\]"):
        parse_catalog('[[models]]\nid="a"\nname="A"\nfamily="f"\nformat="gguf"\ncolour="red"\n', "x.toml")
    with pytest.raises(ConfigError, match="duplicate model ids"):
        parse_catalog('[[models]]\nid="a"\nname="A"\nfamily="f"\nformat="gguf"\n' * 2, "x.toml")
    with pytest.raises(ConfigError, match=r"x\.toml"):
        parse_catalog("[[models]\n", "x.toml")


def test_catalog_id_resolves_to_file_in_models_dir_with_template(gemma_path: Path) -> None:
    spec = resolve_model("gemma-3-270m", models_dir=gemma_path.parent)
    assert spec.path == gemma_path
    assert spec.chat_template is not None and "Question:" in spec.chat_template
    assert spec.format == "gguf" and spec.stop == ("\nQuestion:",)


def test_alias_and_alias_loop(gemma_path: Path) -> None:
    aliases = {"tiny": "small", "small": "gemma-3-270m", "loop1": "loop2", "loop2": "loop1"}
    assert resolve_model("tiny", models_dir=gemma_path.parent, aliases=aliases).id == "gemma-3-270m"
    with pytest.raises(ModelNotFound, match="alias loop"):
        resolve_model("loop1", models_dir=gemma_path.parent, aliases=aliases)


def test_path_to_known_file_gets_catalog_template(gemma_path: Path) -> None:
    spec = resolve_model(str(gemma_path), models_dir=Path("/nonexistent"))
    assert spec.id == "gemma-3-270m" and spec.chat_template is not None


def test_path_to_unknown_gguf_and_folder(tmp_path: Path) -> None:
    model = tmp_path / "mine.gguf"
    model.write_bytes(b"GGUF")
    spec = resolve_model(str(model), models_dir=tmp_path)
    assert spec.id == "mine" and spec.chat_template is None
    folder = tmp_path / "hf-model"
    folder.mkdir()
    assert resolve_model(str(folder), models_dir=tmp_path).format == "hf"


def test_unknown_reference_suggests_close_ids(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match="did you mean gemma-3-270m"):
        resolve_model("gemma-3-270", models_dir=tmp_path)
    with pytest.raises(ModelNotFound, match="no such model file"):
        resolve_model(str(tmp_path / "nope.gguf"), models_dir=tmp_path)


@pytest.mark.real_model
def test_default_model_is_assembled_into_models_dir_with_progress(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    spec = resolve_model("gemma-3-270m", models_dir=tmp_path / "models", progress=lambda d, t: calls.append((d, t)))
    assert spec.path == tmp_path / "models" / "gemma-3-270m-q4_k_m.gguf"
    entry = find_entry("gemma-3-270m")
    assert entry is not None
    assert spec.path.stat().st_size == entry.size_bytes
    assert calls[-1][0] == calls[-1][1] == entry.size_bytes and len(calls) > 10
    assert [p.name for p in spec.path.parent.iterdir()] == [spec.path.name]  # no .part left


def test_bad_chunks_never_reach_the_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = find_entry("gemma-3-270m")
    assert entry is not None
    chunk = tmp_path / "chunk"
    chunk.write_bytes(b"not the model")

    class FakePackage:
        EXPECTED_SHA256 = hashlib.sha256(b"something else").hexdigest()

        @staticmethod
        def chunk_paths() -> list[Path]:
            return [chunk]

    monkeypatch.setattr(packaged.importlib, "import_module", lambda name: FakePackage)
    monkeypatch.setattr(packaged, "package_installed", lambda e: True)
    models = tmp_path / "models"
    with pytest.raises(DownloadError, match="expected"):
        packaged.install_from_package(entry, models)
    assert list(models.iterdir()) == []
