"""Whisper on the transformers engine, with a tiny random-weight Whisper: structure, never quality."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import platformdirs
import pytest

from engines.adapters.transformers_engine import TransformersEngine
from engines.audio.types import SAMPLE_RATE, Audio, TranscribeOptions, Transcript
from engines.errors import BadRequest, Cancelled, CapabilityNotSupported
from engines.types import Capability, ChatMessage, LaunchOptions, ModelSpec, Params
from tests.engines import tiny_whisper

pytest.importorskip("transformers")


@pytest.fixture(scope="session")
def whisper_folder() -> Path:
    return tiny_whisper.cached(Path(platformdirs.user_cache_dir("llm-tui-tests")))


@pytest.fixture(scope="module")
def engine(whisper_folder: Path) -> TransformersEngine:
    engine = TransformersEngine()
    engine.load(ModelSpec(id="tiny-whisper", path=whisper_folder, format="hf"), LaunchOptions())
    return engine


def audio(samples: np.ndarray) -> Audio:
    return Audio(samples=samples, source="test", source_format="WAV", source_rate=SAMPLE_RATE, channels=1)


def check_structure(transcript: Transcript, duration: float) -> None:
    assert transcript.model == "tiny-whisper"
    assert transcript.duration_s == pytest.approx(duration)
    assert transcript.elapsed_s > 0
    last = 0.0
    for segment in transcript.segments:
        assert last <= segment.start_s <= segment.end_s <= duration
        assert segment.text == segment.text.strip() and segment.text
        assert "<|" not in segment.text
        last = segment.end_s
    assert "<|" not in transcript.text  # control tokens are never text


def test_discovery_lists_a_whisper_folder_for_the_transformers_engine(whisper_folder: Path) -> None:
    from engines.catalog.resolve import resolve_model
    from engines.catalog.safetensors_info import read_hf_folder

    info = read_hf_folder(whisper_folder)
    assert info.architecture == "whisper" and info.error is None
    spec = resolve_model(str(whisper_folder), models_dir=whisper_folder.parent / "none", aliases={})
    assert spec.format == "hf" and "transformers" in spec.engines


def test_a_whisper_model_transcribes_and_does_nothing_else(engine: TransformersEngine) -> None:
    assert engine.supports(Capability.TRANSCRIBE)
    for capability in (Capability.CHAT, Capability.STREAM, Capability.EMBED):
        assert not engine.supports(capability)
    with pytest.raises(CapabilityNotSupported, match="tiny-whisper is a speech-to-text model"):
        engine.require(Capability.CHAT)
    with pytest.raises(CapabilityNotSupported, match=r"speech-to-text model.*chat"):
        list(engine.chat([ChatMessage("user", "hi")], Params(), threading.Event()))
    with pytest.raises(CapabilityNotSupported, match=r"speech-to-text model.*embeddings"):
        engine.embed(["hi"])
    assert engine.footprint().ram_bytes > 0


def test_other_engines_name_speech_to_text_in_words() -> None:
    from engines.adapters.llama_cpp import LlamaCppEngine

    with pytest.raises(CapabilityNotSupported, match="does not support speech to text"):
        LlamaCppEngine(selftest=False).require(Capability.TRANSCRIBE)


def test_a_chat_model_on_the_transformers_engine_refuses_transcription() -> None:
    engine = TransformersEngine()
    assert not engine.supports(Capability.TRANSCRIBE)
    with pytest.raises(CapabilityNotSupported, match="speech to text"):
        engine.require(Capability.TRANSCRIBE)


def test_a_short_clip_is_one_chunk(engine: TransformersEngine) -> None:
    heard: list[float] = []
    transcript = engine.transcribe(audio(tiny_whisper.tone(5.0)), TranscribeOptions(), threading.Event(), heard.append)
    check_structure(transcript, 5.0)
    assert heard == [1.0]
    assert transcript.extra["chunks"] == 1
    assert transcript.language in tiny_whisper.LANGUAGES  # detected: the tiny model knows four
    assert transcript.real_time_factor > 0


def test_control_tokens_never_reach_the_text(engine: TransformersEngine) -> None:
    t = np.arange(40 * SAMPLE_RATE) / SAMPLE_RATE  # the tone that made the random model say <|startofprev|>
    samples = (np.sin(2 * np.pi * 440 * t) * 0.3).astype(np.float32)
    check_structure(engine.transcribe(audio(samples), TranscribeOptions(), threading.Event()), 40.0)


def test_long_audio_is_cut_in_30_second_chunks_with_progress_after_each(engine: TransformersEngine) -> None:
    heard: list[float] = []
    samples = np.concatenate([tiny_whisper.tone(35.0, hz=300), np.zeros(10 * SAMPLE_RATE, np.float32)])
    samples = np.concatenate([samples, tiny_whisper.tone(25.0, hz=900, seed=1)])
    transcript = engine.transcribe(audio(samples), TranscribeOptions(), threading.Event(), heard.append)
    check_structure(transcript, 70.0)
    assert heard == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert transcript.extra["chunks"] == 3
    assert transcript.segments, "the tiny model says something in 70 seconds"
    assert transcript.segments[-1].start_s >= 30.0  # later chunks' times are offset by their start


def test_cancel_stops_between_chunks(engine: TransformersEngine) -> None:
    cancel = threading.Event()
    heard: list[float] = []

    def progress(fraction: float) -> None:
        heard.append(fraction)
        cancel.set()

    with pytest.raises(Cancelled, match="after 1 of 3 chunks"):
        engine.transcribe(audio(tiny_whisper.tone(70.0)), TranscribeOptions(), cancel, progress)
    assert heard == pytest.approx([1 / 3])


def test_cancel_before_the_start_does_no_work(engine: TransformersEngine) -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        engine.transcribe(audio(tiny_whisper.tone(3.0)), TranscribeOptions(), cancel)


@pytest.mark.parametrize(("given", "expected"), [("de", "de"), ("<|fr|>", "fr"), ("english", "en")])
def test_a_forced_language_is_the_transcripts(engine: TransformersEngine, given: str, expected: str) -> None:
    transcript = engine.transcribe(audio(tiny_whisper.tone(3.0)), TranscribeOptions(language=given), threading.Event())
    assert transcript.language == expected


def test_an_unknown_language_names_those_the_model_knows(engine: TransformersEngine) -> None:
    with pytest.raises(BadRequest, match="language 'xx': tiny-whisper knows de, en, es, fr"):
        engine.transcribe(audio(tiny_whisper.tone(3.0)), TranscribeOptions(language="xx"), threading.Event())


def test_translate_with_a_prompt_sampling_and_no_timestamps(engine: TransformersEngine) -> None:
    options = TranscribeOptions(language="de", task="translate", prompt="Grüß Gott", temperature=0.7, timestamps=False)
    transcript = engine.transcribe(audio(tiny_whisper.tone(40.0)), options, threading.Event())
    check_structure(transcript, 40.0)
    assert len(transcript.segments) <= 2  # at most one per chunk without timestamps
    assert transcript.language == "de"


def test_silence_transcribes(engine: TransformersEngine) -> None:
    transcript = engine.transcribe(audio(np.zeros(4 * SAMPLE_RATE, np.float32)), TranscribeOptions(), threading.Event())
    check_structure(transcript, 4.0)


def test_the_manager_runs_transcription_on_the_instance_worker(whisper_folder: Path) -> None:
    from engines.manager import EngineManager

    heard: list[float] = []
    with EngineManager() as manager:
        run_id = manager.start(ModelSpec(id="tiny-whisper", path=whisper_folder, format="hf"), engine="transformers")
        transcript = manager.transcribe(run_id, audio(tiny_whisper.tone(31.0)), progress=heard.append)
        with pytest.raises(CapabilityNotSupported, match="speech-to-text"):
            manager.embed(run_id, ["hi"])
    check_structure(transcript, 31.0)
    assert heard == pytest.approx([0.5, 1.0])
