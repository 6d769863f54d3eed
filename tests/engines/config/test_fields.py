"""The settings screen's fields refuse exactly what loading the file refuses, with the same words."""

from __future__ import annotations

from pathlib import Path

import pytest

from engines.config.fields import BY_NAME, FIELDS, check_folder, file_text, origin_note, problem, to_raw
from engines.config.load import load_config
from engines.errors import ConfigError


@pytest.mark.parametrize(
    ("name", "text", "line"),
    [
        ("gpu_memory_fraction", "1.5", "gpu_memory_fraction = 1.5"),
        ("telemetry_interval_s", "0", "telemetry_interval_s = 0"),
        ("n_ctx", "8", "n_ctx = 8"),
        ("hf_endpoint", "ftp://hub", 'hf_endpoint = "ftp://hub"'),
        ("ollama_host", "http://h:99999", 'ollama_host = "http://h:99999"'),
        ("download_bandwidth_cap", "fast", 'download_bandwidth_cap = "fast"'),
        ("defaults.temperature", "-1", "[defaults]\ntemperature = -1.0"),
        ("defaults.top_k", "x", '[defaults]\ntop_k = "x"'),
        ("defaults.top_p", "0", "[defaults]\ntop_p = 0.0"),
    ],
)
def test_a_field_says_what_loading_would_say(tmp_path: Path, name: str, text: str, line: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(line + "\n")
    with pytest.raises(ConfigError) as loaded:
        load_config(path, env={})
    field = BY_NAME[name]
    assert problem(field, to_raw(field, text), path) == str(loaded.value).removeprefix(f"{path}: ")


def test_numbers_are_written_as_numbers_and_empty_removes() -> None:
    assert to_raw(BY_NAME["gpu_memory_fraction"], " 0.5 ") == 0.5
    assert to_raw(BY_NAME["defaults.top_k"], "40") == 40
    assert to_raw(BY_NAME["defaults.top_k"], "x") == "x"
    assert to_raw(BY_NAME["theme"], "  ") is None
    assert to_raw(BY_NAME["downloads_resume_on_start"], "yes") is True
    assert file_text(BY_NAME["downloads_resume_on_start"], False) == "no"
    assert file_text(BY_NAME["defaults.stop"], ["a,b", "\n"]) == "a\\,b,\\n"


def test_good_values_pass(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    for name, text in [("gpu_memory_fraction", "1"), ("ollama_host", "box:11434"), ("defaults.seed", "-3")]:
        assert problem(BY_NAME[name], to_raw(BY_NAME[name], text), path) is None


def test_every_top_level_field_is_a_config_key() -> None:
    from engines.config.load import SCALAR_KEYS

    assert {f.key[0] for f in FIELDS if len(f.key) == 1} <= set(SCALAR_KEYS)


def test_folders(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "a-file").write_text("x")
    assert check_folder("models", tmp_path).problem is None
    assert "is a file, not a folder" in (check_folder("a-file", tmp_path).problem or "")
    assert "cannot create" in (check_folder("a-file/models", tmp_path).problem or "")
    missing = check_folder("new/models", tmp_path)
    assert (missing.path, missing.missing, missing.problem) == (tmp_path / "new" / "models", True, None)


def test_an_overridden_field_says_by_what(tmp_path: Path) -> None:
    config = load_config(env={"LLM_TUI_N_CTX": "2048", "HF_TOKEN": "hf_x"}, cwd=tmp_path)
    assert origin_note(BY_NAME["n_ctx"], config) == (
        "set by LLM_TUI_N_CTX (= 2048) for this run; the file's value applies without it"
    )
    note = origin_note(BY_NAME["hf_token"], config) or ""
    assert "HF_TOKEN" in note and "hf_x" not in note
    assert origin_note(BY_NAME["theme"], config) is None
