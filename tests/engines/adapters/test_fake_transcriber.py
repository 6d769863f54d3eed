"""The fake speech-to-text engine: a transcript per 30 s chunk, progress as chunks finish, cancel between chunks;
the plain fake engine stays without it."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from engines.adapters.fake import FakeEngine, FakeTranscriber
from engines.audio.types import SAMPLE_RATE, Audio, TranscribeOptions
from engines.errors import Cancelled, CapabilityNotSupported
from engines.manager import EngineManager
from engines.types import Capability, ModelSpec


def audio(seconds: float, level: float = 0.5) -> Audio:
    samples = np.full(int(seconds * SAMPLE_RATE), level, dtype=np.float32)
    return Audio(samples, "test.wav", "WAV", SAMPLE_RATE, 1)


def start(manager: EngineManager, engine: FakeEngine) -> str:
    return manager.start(ModelSpec("stt", format="fake", engines=("fake",)), engine=engine)


def test_plain_fake_engine_does_not_transcribe() -> None:
    assert Capability.TRANSCRIBE not in FakeEngine.capabilities
    assert Capability.TRANSCRIBE in FakeTranscriber.capabilities
    with EngineManager() as manager:
        run_id = start(manager, FakeEngine())
        manager.wait_ready(run_id, 10)
        with pytest.raises(CapabilityNotSupported):
            manager.submit_transcribe(run_id, audio(1))


def test_one_segment_per_30_s_chunk_with_progress() -> None:
    seen: list[float] = []
    engine = FakeTranscriber()
    with EngineManager() as manager:
        run_id = start(manager, engine)
        manager.wait_ready(run_id, 10)
        options = TranscribeOptions(language="de", prompt="names", temperature=0.3)
        t = manager.transcribe(run_id, audio(65), options, timeout=10, progress=seen.append)
    assert t.text == " sound for 30 seconds sound for 30 seconds sound for 5 seconds"
    assert [(s.start_s, s.end_s) for s in t.segments] == [(0, 30), (30, 60), (60, 65)]
    assert t.language == "de" and t.duration_s == 65 and t.model == "stt"
    assert seen == pytest.approx([30 / 65, 60 / 65, 1.0])
    assert engine.transcribed[0][1] == options


def test_silence_is_heard_as_such() -> None:
    with EngineManager() as manager:
        run_id = start(manager, FakeTranscriber())
        manager.wait_ready(run_id, 10)
        assert manager.transcribe(run_id, audio(2, 0.0), timeout=10).text == " silence for 2 seconds"


def test_cancel_stops_between_chunks() -> None:
    gate = threading.Event()
    engine = FakeTranscriber(transcribe_gate=gate)
    with EngineManager() as manager:
        run_id = start(manager, engine)
        manager.wait_ready(run_id, 10)
        job = manager.submit_transcribe(run_id, audio(90))
        assert engine.transcribe_started.wait(10)
        job.cancel()
        with pytest.raises(Cancelled):
            job.result(10)
        # The instance is free again.
        gate.set()
        assert manager.transcribe(run_id, audio(1), timeout=10).text == " sound for 1 seconds"
