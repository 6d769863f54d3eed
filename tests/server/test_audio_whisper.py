"""The whole speech-to-text path with a real Whisper (tiny, random weights) on the transformers engine: the official
`openai` client uploads a generated file to `/v1/audio/transcriptions` and reads every response format.

Random weights say nothing about accuracy: these tests check shapes, times and the path, never the words.
"""

from __future__ import annotations

import io
import json
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import openai
import platformdirs
import pytest

from engines.adapters.transformers_engine import TransformersEngine
from engines.manager import EngineManager
from engines.types import ModelSpec
from tests.engines import tiny_whisper
from tests.engines.server_fixture import Served, served

SECONDS = 35.0  # two 30 s windows


@pytest.fixture(scope="module")
def server() -> Iterator[Served]:
    folder = tiny_whisper.cached(Path(platformdirs.user_cache_dir("llm-tui-tests")))
    manager = EngineManager()
    manager.start(
        ModelSpec("tiny-whisper", path=folder, format="hf", engines=("transformers",)), engine=TransformersEngine()
    )
    with served({}, manager=manager) as s:
        yield s


@pytest.fixture(scope="module")
def wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rate = 22_050  # resampled to 16 kHz on the way in
    t = np.arange(int(SECONDS * rate)) / rate
    pcm = (np.sin(2 * np.pi * 330 * t) * 0.2 * 32767).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    path = tmp_path_factory.mktemp("audio") / "tone.wav"
    path.write_bytes(out.getvalue())
    return path


def create(server: Served, wav: Path, fmt: str) -> object:
    client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=120)
    with wav.open("rb") as f:
        return client.audio.transcriptions.create(model="tiny-whisper", file=f, response_format=fmt, language="en")  # type: ignore[call-overload]


def test_every_response_format_through_the_openai_client(server: Served, wav: Path) -> None:
    got = {fmt: create(server, wav, fmt) for fmt in ("json", "text", "srt", "vtt", "verbose_json")}
    assert isinstance(got["json"].text, str)  # type: ignore[attr-defined]
    assert isinstance(got["text"], str) and isinstance(got["srt"], str) and isinstance(got["vtt"], str)
    assert got["vtt"].startswith("WEBVTT")  # type: ignore[union-attr]
    verbose = got["verbose_json"]
    assert verbose.language == "english" and abs(verbose.duration - SECONDS) < 0.01  # type: ignore[attr-defined]
    segments = verbose.segments or []  # type: ignore[attr-defined]
    assert all(0 <= s.start <= s.end <= SECONDS for s in segments)
    assert [s.start for s in segments] == sorted(s.start for s in segments)
    # the same text in every shape (random weights: whatever it is)
    assert got["text"].strip() == got["json"].text.strip() == verbose.text.strip()  # type: ignore[union-attr, attr-defined]
    for cue in (got["srt"], got["vtt"]):
        assert all(line.strip() in got["text"] for line in cue.splitlines() if line and "-->" not in line  # type: ignore[union-attr, operator]
                   and not line.isdigit() and line != "WEBVTT")  # fmt: skip


def test_a_chat_request_to_whisper_is_refused_by_name(server: Served) -> None:
    client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=30)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="tiny-whisper", messages=[{"role": "user", "content": "hi"}])
    assert "speech-to-text model" in json.dumps(caught.value.body)
