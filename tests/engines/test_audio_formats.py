"""Transcripts written as OpenAI's transcription endpoint writes them: json, text, srt, vtt, verbose_json."""

from __future__ import annotations

import json

import pytest

from engines.audio.formats import FORMATS, compression_ratio, format_transcript, media_type, timestamp
from engines.audio.languages import language_name
from engines.audio.types import Segment, Transcript

TWO = Transcript(
    " Hello there. It is late.",
    (Segment(0.0, 1.5, " Hello there."), Segment(1.5, 3.0, " It is late.")),
    language="en",
    duration_s=3.2,
)


def test_json_and_text() -> None:
    assert json.loads(format_transcript(TWO, "json")) == {"text": " Hello there. It is late."}
    assert format_transcript(TWO, "text") == " Hello there. It is late.\n"
    assert media_type("json") == "application/json" and media_type("text").startswith("text/plain")


def test_srt_numbers_its_cues_with_comma_milliseconds() -> None:
    assert format_transcript(TWO, "srt") == (
        "1\n00:00:00,000 --> 00:00:01,500\nHello there.\n\n2\n00:00:01,500 --> 00:00:03,000\nIt is late.\n\n"
    )


def test_vtt_has_its_header_and_dot_milliseconds() -> None:
    assert format_transcript(TWO, "vtt") == (
        "WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nHello there.\n\n00:00:01.500 --> 00:00:03.000\nIt is late.\n\n"
    )


@pytest.mark.parametrize(
    ("seconds", "srt", "vtt"),
    [
        (0.0, "00:00:00,000", "00:00:00.000"),
        (1.5, "00:00:01,500", "00:00:01.500"),
        (59.9996, "00:01:00,000", "00:01:00.000"),  # rounded to the millisecond, carried into the minute
        (3725.25, "01:02:05,250", "01:02:05.250"),
        (100 * 3600 + 1.001, "100:00:01,001", "100:00:01.001"),  # hours grow, never wrap
        (-0.2, "00:00:00,000", "00:00:00.000"),
    ],
)
def test_timestamps(seconds: float, srt: str, vtt: str) -> None:
    assert timestamp(seconds, ",") == srt and timestamp(seconds, ".") == vtt


def test_hours_in_cues() -> None:
    late = Transcript("x", (Segment(7322.5, 7324.0, " x"),), duration_s=7324.0)
    assert "02:02:02,500 --> 02:02:04,000" in format_transcript(late, "srt")
    assert "02:02:02.500 --> 02:02:04.000" in format_transcript(late, "vtt")


def test_no_segments() -> None:
    empty = Transcript("", (), duration_s=1.0)
    assert format_transcript(empty, "srt") == ""
    assert format_transcript(empty, "vtt") == "WEBVTT\n\n"
    assert format_transcript(empty, "text") == "\n"
    assert json.loads(format_transcript(empty, "verbose_json"))["segments"] == []


def test_empty_segments_get_no_cue_and_numbering_stays_consecutive() -> None:
    t = Transcript("a b", (Segment(0, 1, " a"), Segment(1, 2, "  \n "), Segment(2, 3, " b")))
    srt = format_transcript(t, "srt")
    assert srt == "1\n00:00:00,000 --> 00:00:01,000\na\n\n2\n00:00:02,000 --> 00:00:03,000\nb\n\n"
    assert format_transcript(t, "vtt").count(" --> ") == 2


def test_arrows_and_blank_lines_cannot_break_a_cue() -> None:
    tricky = Transcript("x", (Segment(0, 1, " left --> right\n\n\nnext line <b>&</b>"),))
    srt = format_transcript(tricky, "srt")
    assert srt == "1\n00:00:00,000 --> 00:00:01,000\nleft -> right\nnext line <b>&</b>\n\n"
    assert srt.count("-->") == 1
    vtt = format_transcript(tricky, "vtt")
    assert vtt.endswith("00:00:00.000 --> 00:00:01.000\nleft --&gt; right\nnext line &lt;b&gt;&amp;&lt;/b&gt;\n\n")
    assert vtt.count("-->") == 1 and "\n\n\n" not in vtt


def test_verbose_json_has_every_field_openai_gives() -> None:
    doc = json.loads(format_transcript(TWO, "verbose_json", temperature=0.2))
    assert {k: doc[k] for k in ("task", "language", "duration", "text")} == {
        "task": "transcribe",
        "language": "english",
        "duration": 3.2,
        "text": " Hello there. It is late.",
    }
    first, second = doc["segments"]
    assert set(first) == {
        "id",
        "seek",
        "start",
        "end",
        "text",
        "tokens",
        "temperature",
        "avg_logprob",
        "compression_ratio",
        "no_speech_prob",
    }
    assert (first["id"], first["start"], first["end"], first["text"]) == (0, 0.0, 1.5, " Hello there.")
    assert (second["id"], second["start"], second["temperature"]) == (1, 1.5, 0.2)
    assert first["compression_ratio"] == pytest.approx(compression_ratio(" Hello there."))


def test_verbose_json_seek_names_the_30_s_window_and_takes_engine_scores() -> None:
    t = Transcript(
        "a b",
        (Segment(10, 12, " a"), Segment(65, 70, " b")),
        extra={"avg_logprob": [-0.25, -0.5], "no_speech_prob": [0.01, 0.02]},
    )
    segs = json.loads(format_transcript(t, "verbose_json"))["segments"]
    assert [s["seek"] for s in segs] == [0, 6000]
    assert [s["avg_logprob"] for s in segs] == [-0.25, -0.5]
    assert [s["no_speech_prob"] for s in segs] == [0.01, 0.02]


def test_language_names() -> None:
    assert language_name("en") == "english" and language_name("yue") == "cantonese"
    assert language_name("English") == "english" and language_name(None) == "unknown"


def test_every_format_is_written() -> None:
    assert set(FORMATS) == {"json", "text", "srt", "vtt", "verbose_json"}
    for fmt in FORMATS:
        assert format_transcript(TWO, fmt)  # type: ignore[arg-type]
