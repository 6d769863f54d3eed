"""`llm-tui transcribe MODEL FILE` end to end in a subprocess, with the tiny random-weight Whisper: structure only."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import platformdirs
import pytest

from cli.transcribe import ChunkProgress
from tests.engines import tiny_whisper

ROOT = Path(__file__).resolve().parents[2]
pytest.importorskip("soundfile")


def llm_tui(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
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
    )


@pytest.fixture(scope="session")
def whisper_folder() -> Path:
    return tiny_whisper.cached(Path(platformdirs.user_cache_dir("llm-tui-tests")))


@pytest.fixture
def home(tmp_path: Path, whisper_folder: Path) -> Path:
    """The tiny Whisper copied in as models/tiny-whisper, an alias `ears` to its path, and a 40 s WAV."""
    import soundfile

    models = tmp_path / "models"
    shutil.copytree(whisper_folder, models / "tiny-whisper")
    (tmp_path / "config.toml").write_text(
        f'models_dir = "{models}"\nollama_host = "http://127.0.0.1:9"\n\n'
        f'[aliases]\nears = "{models / "tiny-whisper"}"\n'
    )
    soundfile.write(tmp_path / "speech.wav", tiny_whisper.tone(40.0), 16_000)
    return tmp_path


def test_text_by_path_with_nothing_on_stderr(home: Path) -> None:
    result = llm_tui(home, "transcribe", str(home / "models" / "tiny-whisper"), str(home / "speech.wav"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("\n")
    assert result.stderr == ""  # not a terminal: no progress line, and transformers' own warning is filtered


def test_json_by_alias(home: Path) -> None:
    result = llm_tui(home, "transcribe", "ears", str(home / "speech.wav"), "--format", "json")
    assert result.returncode == 0, result.stderr
    assert set(json.loads(result.stdout)) == {"text"}


def test_verbose_json_with_language_task_and_prompt(home: Path) -> None:
    result = llm_tui(
        home,
        "transcribe",
        "ears",
        str(home / "speech.wav"),
        "--format",
        "verbose_json",
        "--language",
        "de",
        "--task",
        "translate",
        "--prompt",
        "Grüß Gott",
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["task"] == "translate" and out["language"] == "german" and out["duration"] == 40.0
    starts = [s["start"] for s in out["segments"]]
    assert starts == sorted(starts) and all(s["end"] <= 40.0 for s in out["segments"])


@pytest.mark.parametrize(("fmt", "head"), [("vtt", "WEBVTT"), ("srt", "1\n00:00:")])
def test_subtitles(home: Path, fmt: str, head: str) -> None:
    result = llm_tui(home, "transcribe", "ears", str(home / "speech.wav"), "--format", fmt)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(head) or (fmt == "srt" and result.stdout == "")  # SRT has no header


def test_a_missing_file_is_one_line(home: Path) -> None:
    result = llm_tui(home, "transcribe", "ears", str(home / "nope.wav"))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == f"llm-tui: error: audio file not found: {home / 'nope.wav'}\n"


def test_a_file_that_is_not_audio_is_refused_before_the_model_loads(home: Path) -> None:
    (home / "notes.wav").write_text("not audio at all\n" * 20)
    result = llm_tui(home, "transcribe", "ears", str(home / "notes.wav"))
    assert result.returncode == 1
    assert result.stderr.startswith("llm-tui: error: notes.wav") and result.stderr.count("\n") == 1


def test_a_chat_model_says_it_cannot_do_speech_to_text(home: Path, gemma_path: Path) -> None:
    result = llm_tui(home, "transcribe", str(gemma_path), str(home / "speech.wav"))
    assert result.returncode == 1
    assert "does not support speech to text" in result.stderr and result.stderr.count("\n") == 1


def test_an_unknown_language_is_one_line(home: Path) -> None:
    result = llm_tui(home, "transcribe", "ears", str(home / "speech.wav"), "--language", "xx")
    assert result.returncode == 1
    assert result.stderr.startswith("llm-tui: error: language 'xx'") and result.stderr.count("\n") == 1


def test_progress_counts_chunks_and_clears_its_line() -> None:
    stream = io.StringIO()
    progress = ChunkProgress(70.0, stream)
    for fraction in (1 / 3, 2 / 3, 1.0):
        progress.update(fraction)
    progress.done()
    assert stream.getvalue() == (
        "\rtranscribing 0/3 chunks\rtranscribing 1/3 chunks\rtranscribing 2/3 chunks\rtranscribing 3/3 chunks\r\x1b[K"
    )
