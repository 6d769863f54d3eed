"""`llm-tui transcribe MODEL FILE`: speech to text with a Whisper model; the transcript on stdout.

Progress ("transcribing 2/5 chunks") goes to stderr, and only when stderr is a terminal, so a script reading stdout
or stderr sees the transcript and errors alone.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from engines.errors import BadRequest

if TYPE_CHECKING:
    from engines.config.load import Config

FORMATS = ("text", "json", "srt", "vtt", "verbose_json")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: Callable[..., object]) -> None:
    transcribe = sub.add_parser("transcribe", help="transcribe an audio file with a Whisper model")
    common(transcribe)
    transcribe.add_argument("model", metavar="MODEL", help="catalog id, alias, or path of a Whisper model folder")
    transcribe.add_argument("file", metavar="FILE", help="audio file (WAV, FLAC, OGG, MP3; more with ffmpeg)")
    transcribe.add_argument("--format", choices=FORMATS, default="text", help="output format (default: text)")
    transcribe.add_argument("--language", metavar="XX", help="spoken language, e.g. en (default: detected)")
    transcribe.add_argument(
        "--task", choices=("transcribe", "translate"), default="transcribe", help="translate: into English"
    )
    transcribe.add_argument("--prompt", metavar="TEXT", help="text that comes before the audio (names, spelling)")
    transcribe.add_argument("--temperature", type=float, default=0.0, metavar="T", help="sampling (default: 0)")
    transcribe.add_argument("--engine", help="engine to run the model on (default: the first installed that loads it)")


def run_transcribe(args: argparse.Namespace, config: Config) -> int:
    """Decode FILE, load MODEL, transcribe, print the transcript in --format, stop the model."""
    from engines.audio.decode import load_audio
    from engines.audio.formats import format_transcript
    from engines.audio.types import TranscribeOptions
    from engines.launch import default_options, launch
    from engines.manager import EngineManager

    path = Path(args.file)
    if not path.is_file():
        raise BadRequest(f"audio file not found: {path}")
    audio = load_audio(path, name=path.name)  # a bad file fails before a model loads
    options = TranscribeOptions(
        language=args.language, task=args.task, prompt=args.prompt, temperature=args.temperature
    )
    show = ChunkProgress(audio.duration_s, sys.stderr) if sys.stderr.isatty() else None
    with EngineManager() as manager:
        launched = launch(manager, args.model, config, engine=args.engine, options=default_options(config))
        transcript = manager.transcribe(
            launched.run_id, audio, options, timeout=None, progress=show.update if show else None
        )
    if show is not None:
        show.done()
    sys.stdout.write(format_transcript(transcript, args.format, task=args.task, temperature=args.temperature))
    if args.format in ("json", "verbose_json"):
        sys.stdout.write("\n")
    sys.stdout.flush()
    return 0


class ChunkProgress:
    """`transcribing 2/5 chunks` redrawn in place on a terminal."""

    def __init__(self, duration_s: float, stream: TextIO, window_s: float = 30.0) -> None:
        self.chunks = max(1, math.ceil(duration_s / window_s))
        self.stream = stream
        self.update(0.0)

    def update(self, fraction: float) -> None:
        done = min(self.chunks, round(fraction * self.chunks))
        self.stream.write(f"\rtranscribing {done}/{self.chunks} chunks")
        self.stream.flush()

    def done(self) -> None:
        self.stream.write("\r\x1b[K")  # the line goes: the transcript is what stays
        self.stream.flush()
