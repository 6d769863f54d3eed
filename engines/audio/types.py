"""What crosses from audio decoding to a speech-to-text engine, and what comes back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import numpy as np

SAMPLE_RATE = 16_000
"""What Whisper models take: 16 kHz mono float32 in [-1, 1]."""


@dataclass(frozen=True, slots=True)
class Audio:
    """Decoded, checked audio: mono float32 samples at SAMPLE_RATE."""

    samples: np.ndarray
    """1-D float32, values in [-1, 1], at SAMPLE_RATE."""
    source: str
    """What it came from, for messages: a file name, or "upload"."""
    source_format: str
    """The container/codec it was decoded from: "WAV", "FLAC", "OGG", "MP3", … (ffmpeg: what it reported)."""
    source_rate: int
    """The sample rate before resampling."""
    channels: int
    """Channels before down-mixing."""

    @property
    def duration_s(self) -> float:
        return len(self.samples) / SAMPLE_RATE


Task = Literal["transcribe", "translate"]


@dataclass(frozen=True, slots=True)
class TranscribeOptions:
    """How to transcribe: language (None: detect), task, an initial prompt, temperature, timestamps."""

    language: str | None = None
    task: Task = "transcribe"
    prompt: str | None = None
    temperature: float = 0.0
    timestamps: bool = True
    """Segment timestamps (needed for srt, vtt and verbose_json)."""


@dataclass(frozen=True, slots=True)
class Segment:
    """One timed piece of a transcript."""

    start_s: float
    end_s: float
    text: str


@dataclass(frozen=True, slots=True)
class Transcript:
    """What an engine heard: the text, timed segments, the language, and what it cost."""

    text: str
    segments: tuple[Segment, ...] = ()
    language: str | None = None
    duration_s: float = 0.0
    """Audio seconds transcribed."""
    elapsed_s: float = 0.0
    """Seconds the engine took."""
    model: str = ""
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def real_time_factor(self) -> float:
        """Audio seconds per second of processing (higher is faster)."""
        return self.duration_s / self.elapsed_s if self.elapsed_s > 0 else 0.0
