"""A transcript written the way OpenAI's `/v1/audio/transcriptions` returns it: json, text, srt, vtt, verbose_json.

- json: `{"text": "..."}`.
- text: the text and a newline.
- srt: numbered cues, `HH:MM:SS,mmm --> HH:MM:SS,mmm`, a blank line after each.
- vtt: `WEBVTT`, a blank line, then cues timed `HH:MM:SS.mmm --> HH:MM:SS.mmm`.
- verbose_json: task, language (its English name, lower case, as OpenAI says it), duration, text and segments.

Cue text never breaks a subtitle file: blank lines inside a segment (which would end a cue) are dropped, `-->`
becomes `->` in SRT (as Whisper's own writer does), and VTT escapes `&`, `<` and `>`. A segment whose text is
empty after that has no cue (numbering stays consecutive). Hours grow past 99 rather than wrap.
"""

from __future__ import annotations

import json
import zlib
from typing import Literal, get_args

from engines.audio.languages import language_name
from engines.audio.types import Segment, Transcript

ResponseFormat = Literal["json", "text", "srt", "vtt", "verbose_json"]
FORMATS: tuple[str, ...] = get_args(ResponseFormat)

MEDIA_TYPES: dict[str, str] = {
    "json": "application/json",
    "verbose_json": "application/json",
    "text": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
}
"""The Content-Type of each format (OpenAI sends text/plain for text, srt and vtt; these name them better and the
official clients read the body as text either way)."""

WINDOW_S = 30.0
"""Whisper decodes audio in 30 s windows; a segment's `seek` names the window it came from."""


def media_type(fmt: ResponseFormat) -> str:
    """The Content-Type a reply in `fmt` is sent with."""
    return MEDIA_TYPES[fmt]


def format_transcript(
    transcript: Transcript, fmt: ResponseFormat, *, task: str = "transcribe", temperature: float = 0.0
) -> str:
    """`transcript` in `fmt`; `task` and `temperature` are what verbose_json reports they were."""
    if fmt == "json":
        return json.dumps({"text": transcript.text}, ensure_ascii=False)
    if fmt == "text":
        return transcript.text + "\n"
    if fmt == "srt":
        return srt(transcript.segments)
    if fmt == "vtt":
        return vtt(transcript.segments)
    if fmt == "verbose_json":
        return json.dumps(verbose(transcript, task=task, temperature=temperature), ensure_ascii=False)
    raise ValueError(f"unknown transcript format {fmt!r} (known: {', '.join(FORMATS)})")


def timestamp(seconds: float, separator: str) -> str:
    """`HH:MM:SS<separator>mmm`, rounded to the millisecond; negative times read as 0."""
    ms = max(round(seconds * 1000), 0)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{ms:03d}"


def _cue_text(text: str) -> str:
    """A segment's text as cue lines: each line stripped, blank lines (a cue's end) dropped."""
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


def srt(segments: tuple[Segment, ...]) -> str:
    """SubRip: `1`, `00:00:00,000 --> 00:00:02,500`, the text, a blank line."""
    cues: list[str] = []
    for seg in segments:
        text = _cue_text(seg.text.replace("-->", "->"))
        if text:
            span = f"{timestamp(seg.start_s, ',')} --> {timestamp(seg.end_s, ',')}"
            cues.append(f"{len(cues) + 1}\n{span}\n{text}\n\n")
    return "".join(cues)


def vtt(segments: tuple[Segment, ...]) -> str:
    """WebVTT: the `WEBVTT` header, then cues `00:00:00.000 --> 00:00:02.500` and their (escaped) text."""
    out = ["WEBVTT\n\n"]
    for seg in segments:
        text = _cue_text(seg.text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))
        if text:
            out.append(f"{timestamp(seg.start_s, '.')} --> {timestamp(seg.end_s, '.')}\n{text}\n\n")
    return "".join(out)


def compression_ratio(text: str) -> float:
    """Whisper's repetition measure: UTF-8 bytes over their zlib-compressed size (0 for no text)."""
    data = text.encode()
    return len(data) / len(zlib.compress(data)) if data else 0.0


def verbose(transcript: Transcript, *, task: str = "transcribe", temperature: float = 0.0) -> dict[str, object]:
    """verbose_json as a dict.

    Known: task, language, duration, text, and per segment id, start, end, text, compression_ratio (computed as
    Whisper does), temperature (what was asked). Filler, for clients that read every field: `seek` is the start of
    the segment's 30 s window in 10 ms frames (Whisper's unit), `tokens` is empty (token ids are not kept), and
    `avg_logprob` and `no_speech_prob` are 0.0 unless the engine put per-segment lists of them in
    `transcript.extra` ("avg_logprob", "no_speech_prob")."""
    avg = _floats(transcript.extra.get("avg_logprob"), len(transcript.segments))
    no_speech = _floats(transcript.extra.get("no_speech_prob"), len(transcript.segments))
    segments = [
        {
            "id": i,
            "seek": int(seg.start_s // WINDOW_S * WINDOW_S * 100),
            "start": round(float(seg.start_s), 3),
            "end": round(float(seg.end_s), 3),
            "text": seg.text,
            "tokens": [],
            "temperature": temperature,
            "avg_logprob": avg[i],
            "compression_ratio": compression_ratio(seg.text),
            "no_speech_prob": no_speech[i],
        }
        for i, seg in enumerate(transcript.segments)
    ]
    return {
        "task": task,
        "language": language_name(transcript.language),
        "duration": round(float(transcript.duration_s), 3),
        "text": transcript.text,
        "segments": segments,
    }


def _floats(value: object, count: int) -> list[float]:
    """`value` when it is a list of `count` numbers, else zeros."""
    if isinstance(value, list | tuple) and len(value) == count and all(isinstance(v, int | float) for v in value):
        return [float(v) for v in value]
    return [0.0] * count
