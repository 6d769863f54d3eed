"""Audio in (issue 22): files and uploads decoded to 16 kHz mono float32; bad ones refused from their header."""

from __future__ import annotations

import json
import os
import stat
import struct
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engines.audio.decode import (
    MAX_UPLOAD_BYTES,
    AudioInfo,
    BadAudio,
    audio_info,
    load_audio,
    soundfile_formats,
)
from engines.audio.types import SAMPLE_RATE
from engines.errors import BadRequest, EngineUnavailable

ROOT = Path(__file__).resolve().parents[2]


# -- making audio -------------------------------------------------------------------------------------------------


def tone(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def wav_header(rate: int, channels: int, bits: int, data_size: int, *, tag: int = 1) -> bytes:
    align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)
    riff = 4 + 8 + len(fmt) + 8 + data_size
    head = b"RIFF" + struct.pack("<I", riff & 0xFFFFFFFF) + b"WAVE"
    return head + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", data_size & 0xFFFFFFFF)


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    """16-bit PCM WAV of float samples, (frames,) or (frames, channels): built by hand, no soundfile needed."""
    frames = samples.reshape(len(samples), -1)
    pcm = np.clip(np.round(frames * 32767), -32768, 32767).astype("<i2").tobytes()
    return wav_header(rate, frames.shape[1], 16, len(pcm)) + pcm


def peak_hz(samples: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


@pytest.fixture
def sf() -> Any:
    return pytest.importorskip("soundfile")


# -- decoding -----------------------------------------------------------------------------------------------------


def test_a_16k_mono_wav_comes_back_sample_for_sample(tmp_path: Path) -> None:
    x = tone(440, 1.0, SAMPLE_RATE)
    path = tmp_path / "a.wav"
    path.write_bytes(wav_bytes(x, SAMPLE_RATE))
    audio = load_audio(path)
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert len(audio.samples) == 16000 and audio.duration_s == 1.0
    assert np.max(np.abs(audio.samples - x)) < 1e-4
    assert (audio.source, audio.source_format, audio.source_rate, audio.channels) == (str(path), "WAV", 16000, 1)
    assert audio_info(path) == AudioInfo("WAV", 16000, 1, 1.0)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_resampled_to_16k_with_the_exact_duration_and_the_tone_where_it_was(tmp_path: Path, rate: int) -> None:
    path = tmp_path / "tone.wav"
    path.write_bytes(wav_bytes(tone(1000, 1.5, rate), rate))
    audio = load_audio(path)
    assert abs(len(audio.samples) - 24000) <= 1, len(audio.samples)
    assert audio.source_rate == rate
    assert abs(peak_hz(audio.samples) - 1000) <= 1 / 1.5  # within one FFT bin
    assert np.max(np.abs(audio.samples)) == pytest.approx(0.5, abs=0.01)


def test_the_resampler_error_is_measured_against_the_exact_tone(tmp_path: Path, sf: Any) -> None:
    """The figure the module docstring quotes: 44.1 kHz float -> 16 kHz, relative RMS error away from the edges."""
    path = tmp_path / "tone.wav"
    sf.write(path, tone(1000, 2.0, 44100), 44100, subtype="FLOAT")
    got = load_audio(path).samples.astype(np.float64)
    exact = tone(1000, 2.0, SAMPLE_RATE).astype(np.float64)
    inner = slice(1600, len(exact) - 1600)
    error = np.sqrt(np.mean((got[inner] - exact[inner]) ** 2)) / np.sqrt(np.mean(exact[inner] ** 2))
    print(f"relative RMS error {error:.2e} ({20 * np.log10(error):.0f} dB)")
    assert error < 1e-4


def test_stereo_is_down_mixed_to_the_mean_of_its_channels(tmp_path: Path) -> None:
    left = tone(440, 1.0, 48000, amplitude=0.8)
    stereo = np.stack([left, np.zeros_like(left)], axis=1)
    path = tmp_path / "stereo.wav"
    path.write_bytes(wav_bytes(stereo, 48000))
    audio = load_audio(path)
    assert audio.channels == 2 and audio.source_rate == 48000
    assert np.max(np.abs(audio.samples)) == pytest.approx(0.4, abs=0.01)
    assert abs(peak_hz(audio.samples) - 440) <= 1


def test_float_samples_past_full_scale_are_clipped(tmp_path: Path, sf: Any) -> None:
    path = tmp_path / "loud.wav"
    sf.write(path, tone(440, 0.5, SAMPLE_RATE, amplitude=3.0), SAMPLE_RATE, subtype="FLOAT")
    samples = load_audio(path).samples
    assert samples.max() == 1.0 and samples.min() == -1.0


@pytest.mark.parametrize(
    ("fmt", "subtype", "suffix", "label", "rate", "slack_s"),
    [
        ("FLAC", "PCM_16", "flac", "FLAC", 44100, 0.0),
        ("OGG", "VORBIS", "ogg", "OGG/Vorbis", 44100, 0.0),
        ("OGG", "OPUS", "opus", "OGG/Opus", 48000, 0.0),
        ("MP3", "MPEG_LAYER_III", "mp3", "MP3", 44100, 0.1),  # encoder delay and padding
    ],
)
def test_compressed_formats_read_by_soundfile(
    tmp_path: Path, sf: Any, fmt: str, subtype: str, suffix: str, label: str, rate: int, slack_s: float
) -> None:
    if fmt not in sf.available_formats() or subtype not in sf.available_subtypes(fmt):
        pytest.skip(f"this libsndfile ({sf.__libsndfile_version__}) cannot write {fmt}/{subtype}")
    path = tmp_path / f"tone.{suffix}"
    sf.write(path, np.stack([tone(1000, 2.0, rate)] * 2, axis=1), rate, format=fmt, subtype=subtype)
    audio = load_audio(path)
    assert (audio.source_format, audio.source_rate, audio.channels) == (label, rate, 2)
    assert audio.duration_s == pytest.approx(2.0, abs=slack_s + 1 / SAMPLE_RATE)
    assert abs(peak_hz(audio.samples) - 1000) <= 1
    assert label in soundfile_formats()
    info = audio_info(path)
    assert (info.format, info.sample_rate, info.channels) == (label, rate, 2)


def test_an_upload_is_decoded_from_bytes_and_named_by_its_file_name(sf: Any) -> None:
    import io

    buf = io.BytesIO()
    sf.write(buf, tone(440, 1.0, 22050), 22050, format="FLAC")
    data = buf.getvalue()
    audio = load_audio(data, name="clip.flac")
    assert (audio.source, audio.source_format, audio.duration_s) == ("clip.flac", "FLAC", 1.0)
    assert load_audio(data).source == "upload"
    with pytest.raises(BadAudio, match=r"^clip\.flac is .*; uploads are limited to 100 bytes$"):
        load_audio(data, name="clip.flac", max_bytes=100)


def test_byte_limits_for_files_and_uploads(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    path.write_bytes(wav_bytes(tone(440, 1.0, SAMPLE_RATE), SAMPLE_RATE))
    with pytest.raises(BadAudio, match=r"a\.wav is 31\.3 KiB; audio files are limited to 1\.0 KiB$"):
        load_audio(path, max_bytes=1024)
    with pytest.raises(BadAudio, match=r"^upload is 100\.0 MiB; uploads are limited to 100\.0 MiB$") as caught:
        load_audio(b"\0" * (MAX_UPLOAD_BYTES + 1))
    assert isinstance(caught.value, BadRequest)  # the server answers 400


def test_a_streamed_wav_whose_header_never_got_its_length_is_read_to_its_end(tmp_path: Path) -> None:
    data = wav_bytes(tone(440, 1.0, SAMPLE_RATE), SAMPLE_RATE)
    streamed = data[:40] + b"\xff\xff\xff\xff" + data[44:]
    audio = load_audio(streamed, name="live.wav")
    assert len(audio.samples) == 16000


def test_a_header_too_long_for_max_seconds_is_refused_before_decoding(tmp_path: Path, sf: Any) -> None:
    path = tmp_path / "three.flac"
    sf.write(path, tone(440, 3.0, SAMPLE_RATE), SAMPLE_RATE)
    with pytest.raises(BadAudio, match=r"three\.flac is 3\.0 s long; audio is limited to 1\.0 s"):
        load_audio(path, max_seconds=1)


# -- the three that must show one clear error, and load nothing heavy ----------------------------------------------


def truncated_wav(tmp_path: Path) -> Path:
    data = wav_bytes(tone(440, 10.0, SAMPLE_RATE), SAMPLE_RATE)
    path = tmp_path / "cut.wav"
    path.write_bytes(data[: len(data) // 2])
    return path


def text_wav(tmp_path: Path) -> Path:
    path = tmp_path / "notes.wav"
    path.write_text("password = hunter2\nthis is not a recording\n" * 20)
    return path


def three_hours_of_silence(tmp_path: Path) -> Path:
    """A valid 16 kHz 16-bit mono WAV header declaring 3 hours, the samples a sparse hole (no disk used)."""
    data_size = 3 * 3600 * SAMPLE_RATE * 2
    path = tmp_path / "silence.wav"
    path.write_bytes(wav_header(SAMPLE_RATE, 1, 16, data_size))
    os.truncate(path, 44 + data_size)
    return path


def test_a_truncated_wav_says_how_much_its_header_promised(tmp_path: Path) -> None:
    with pytest.raises(BadAudio) as caught:
        load_audio(truncated_wav(tmp_path))
    assert str(caught.value) == (
        f"{tmp_path}/cut.wav: truncated WAV: its header says 10.0 s of audio (312.5 KiB) but the file holds 5.0 s "
        "(156.2 KiB); an interrupted download or copy?"
    )


def test_a_text_file_named_wav_says_what_it_looks_like_and_never_echoes_it(tmp_path: Path) -> None:
    with pytest.raises(BadAudio) as caught:
        load_audio(text_wav(tmp_path))
    assert str(caught.value) == (
        f"{tmp_path}/notes.wav is not audio: it looks like a text file (named .wav, but without a WAV header)"
    )
    assert "hunter2" not in str(caught.value)


def test_three_hours_is_refused_from_the_header_in_milliseconds_and_little_memory(tmp_path: Path) -> None:
    path = three_hours_of_silence(tmp_path)
    assert path.stat().st_size == 345_600_044
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(BadAudio) as caught:
            load_audio(path)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    limit = "audio is limited to 2 h 00 min (split it into shorter parts)"
    assert str(caught.value) == f"{path} is 3 h 00 min long; {limit}"
    assert elapsed < 0.5, elapsed
    assert peak < 1_000_000, peak  # far under 50 MB: the header is all that is read
    assert audio_info(path) == AudioInfo("WAV", SAMPLE_RATE, 1, 3 * 3600.0)


def test_bad_inputs_load_no_decoder_and_no_audio_load_imports_torch(tmp_path: Path) -> None:
    bad = [truncated_wav(tmp_path), text_wav(tmp_path), three_hours_of_silence(tmp_path)]
    good = tmp_path / "good.wav"
    good.write_bytes(wav_bytes(tone(440, 0.5, 44100), 44100))
    script = textwrap.dedent(
        """
        import json, sys
        from pathlib import Path
        from engines.audio.decode import BadAudio, load_audio
        errors = []
        for arg in sys.argv[1:-1]:
            try:
                load_audio(Path(arg))
            except BadAudio as exc:
                errors.append(str(exc))
        after_bad = sorted(m for m in ("numpy", "soundfile", "soxr", "torch", "transformers") if m in sys.modules)
        seconds = load_audio(Path(sys.argv[-1])).duration_s
        heavy = sorted(m for m in ("torch", "transformers") if m in sys.modules)
        print(json.dumps({"errors": errors, "after_bad": after_bad, "seconds": seconds, "heavy": heavy}))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script, *map(str, bad), str(good)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert len(result["errors"]) == 3
    assert result["after_bad"] == []  # refused from the first bytes and the header alone
    assert result["seconds"] == 0.5 and result["heavy"] == []


# -- other bad inputs -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", r"^x\.wav is empty \(0 bytes\)$"),
        (wav_header(SAMPLE_RATE, 1, 16, 0), r"^x\.wav holds no audio \(WAV with 0 samples\)$"),
        (wav_header(5, 1, 16, 100) + bytes(100), r"a sample rate of 5 Hz \(audio is 1–768 kHz\)$"),
        (wav_header(10_000_000, 1, 16, 100) + bytes(100), r"a sample rate of 10000000 Hz"),
        (wav_header(SAMPLE_RATE, 0, 16, 100) + bytes(100), r"0 channels \(at most 64 are read\)$"),
        (wav_header(SAMPLE_RATE, 1000, 16, 2000) + bytes(2000), r"1000 channels"),
        (wav_header(SAMPLE_RATE, 1, 16, 100)[:30], r"^x\.wav: truncated WAV header: its format chunk is 10 bytes"),
        (b"RIFF\0\0\0\0WAVE", r"^x\.wav: truncated WAV: the file ends inside its header \(no format chunk\)$"),
        (b"<!DOCTYPE html><html><body>Not found</body></html>", r"looks like an HTML or XML page"),
        (b'{"error": "rate limited"}', r"^x\.wav is not audio: it looks like JSON \(named \.wav"),
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\n", r"a Git LFS pointer"),
        (b"\x89PNG\r\n\x1a\n" + bytes(100), r"it looks like a PNG image"),
    ],
)
def test_bad_bytes_get_one_specific_message(data: bytes, message: str) -> None:
    with pytest.raises(BadAudio, match=message):
        load_audio(data, name="x.wav")


def test_a_path_that_is_missing_or_a_folder(tmp_path: Path) -> None:
    with pytest.raises(BadAudio, match=r"^no such audio file: .*nope\.wav$"):
        load_audio(tmp_path / "nope.wav")
    with pytest.raises(BadAudio, match=r"is a folder, not an audio file$"):
        load_audio(tmp_path)


@pytest.mark.parametrize(
    ("fmt", "subtype", "message"),
    [
        ("FLAC", "PCM_16", r"^cut: corrupt or truncated FLAC: flac decoder lost sync$"),
        ("OGG", "VORBIS", r"^cut: truncated OGG/Vorbis: the file ends inside an Ogg page; an interrupted download"),
        ("OGG", "OPUS", r"^cut: truncated OGG/Opus: the file ends inside an Ogg page"),
        ("MP3", "MPEG_LAYER_III", r"^cut: truncated MP3: its header says 5\.0 s of audio but only 2\.\d s could be"),
    ],
)
def test_a_compressed_file_cut_in_half_is_refused_not_returned_short(
    sf: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fmt: str, subtype: str, message: str
) -> None:
    import io

    if fmt not in sf.available_formats():
        pytest.skip(f"this libsndfile ({sf.__libsndfile_version__}) has no {fmt}")
    monkeypatch.setenv("PATH", str(tmp_path))  # no ffmpeg to fall back on
    buf = io.BytesIO()
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, 5 * 44100).astype(np.float32)
    sf.write(buf, noise, 48000 if subtype == "OPUS" else 44100, format=fmt, subtype=subtype)
    data = buf.getvalue()
    with pytest.raises(BadAudio, match=message):
        load_audio(data[: len(data) // 2], name="cut")


def test_without_soundfile_or_ffmpeg_the_fix_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setitem(sys.modules, "soundfile", None)  # import soundfile raises ImportError
    with pytest.raises(EngineUnavailable, match=r"soundfile is not installed .*pip install 'llm-tui\[audio\]'"):
        load_audio(wav_bytes(tone(440, 0.5, SAMPLE_RATE), SAMPLE_RATE), name="a.wav")


def test_without_soxr_only_16k_audio_is_read(monkeypatch: pytest.MonkeyPatch, sf: Any) -> None:
    monkeypatch.setitem(sys.modules, "soxr", None)
    assert load_audio(wav_bytes(tone(440, 0.5, SAMPLE_RATE), SAMPLE_RATE)).duration_s == 0.5
    with pytest.raises(EngineUnavailable, match=r"soxr is not installed \(it resamples 44100 Hz audio to 16 kHz\)"):
        load_audio(wav_bytes(tone(440, 0.5, 44100), 44100))


def test_unknown_binary_is_not_a_recognised_format(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sf: Any) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no ffmpeg
    noise = bytes(range(256)) * 8
    with pytest.raises(BadAudio, match=r"^blob is not a recognised audio format .* ffmpeg, which reads more"):
        load_audio(noise, name="blob")


# -- ffmpeg -------------------------------------------------------------------------------------------------------

M4A = b"\0\0\0\x20ftypM4A \0\0\0\0M4A mp42isom\0\0\0\0" + bytes(200)
FAKE_FFMPEG = """\
#!{python}
import json, math, os, struct, sys, time
mode = os.environ.get("FAKE_FFMPEG", "ok")
with open(os.environ["FAKE_FFMPEG_ARGS"], "w") as f:
    json.dump(sys.argv[1:], f)
err = sys.stderr
err.write("Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'x':\\n  Metadata:\\n    title           : secret lyrics\\n")
duration = "03:00:00.00" if mode == "long" else "00:00:01.00"
err.write("  Duration: %s, start: 0.000000, bitrate: 128 kb/s\\n" % duration)
err.write("  Stream #0:0[0x1](und): Audio: aac (LC) (mp4a / 0x6134706D), 44100 Hz, stereo, fltp, 128 kb/s\\n")
err.flush()
if mode == "fail":
    err.write("file:x: Invalid data found when processing input\\n")
    sys.exit(1)
if mode in ("long", "hang"):
    time.sleep(60)
if mode == "endless":
    while True:
        sys.stdout.buffer.write(bytes(1 << 16))
samples = [0.5 * math.sin(2 * math.pi * 440 * i / 16000) for i in range(16000)]
sys.stdout.buffer.write(struct.pack("<%df" % len(samples), *samples))
"""


@pytest.fixture
def ffmpeg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake ffmpeg alone on PATH; FAKE_FFMPEG picks how it behaves; it writes its arguments to the returned file."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "ffmpeg"
    exe.write_text(FAKE_FFMPEG.format(python=sys.executable))
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    args = tmp_path / "ffmpeg-args.json"
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("FAKE_FFMPEG_ARGS", str(args))
    return args


def test_m4a_goes_to_ffmpeg_as_16k_mono_f32(tmp_path: Path, ffmpeg: Path) -> None:
    path = tmp_path / "talk.m4a"
    path.write_bytes(M4A)
    audio = load_audio(path, max_seconds=60)
    assert len(audio.samples) == 16000 and abs(peak_hz(audio.samples) - 440) <= 1
    assert (audio.source_format, audio.source_rate, audio.channels) == ("M4A (aac)", 44100, 2)
    args = json.loads(ffmpeg.read_text())
    assert args[args.index("-i") + 1] == f"file:{path.resolve()}"
    for flag, value in (("-ac", "1"), ("-ar", "16000"), ("-f", "f32le"), ("-t", "61.000"), ("-map", "0:a:0")):
        assert args[args.index(flag) + 1] == value
    assert audio_info(path) == AudioInfo("M4A", None, None, None)


def test_an_uploaded_m4a_reaches_ffmpeg_through_a_temporary_file_that_is_removed(
    tmp_path: Path, ffmpeg: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    audio = load_audio(M4A, name="voice.m4a")
    assert audio.source == "voice.m4a" and len(audio.samples) == 16000
    assert (args := json.loads(ffmpeg.read_text()))[args.index("-i") + 1].startswith(f"file:{spool}/llm-tui-audio-")
    assert list(spool.iterdir()) == []


def test_ffmpeg_is_stopped_when_the_duration_it_reads_is_over_the_limit(
    tmp_path: Path, ffmpeg: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_FFMPEG", "long")  # prints a 3-hour Duration, then decodes for a minute
    started = time.perf_counter()
    with pytest.raises(BadAudio, match=r"^long\.m4a is 3 h 00 min long; audio is limited to 2 h 00 min"):
        load_audio(M4A, name="long.m4a")
    assert time.perf_counter() - started < 5


def test_ffmpeg_output_past_the_limit_is_cut_off(ffmpeg: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_FFMPEG", "endless")  # says 1 s, then writes forever
    with pytest.raises(BadAudio, match=r"^x\.m4a is longer than 2\.0 s; audio is limited to 2\.0 s"):
        load_audio(M4A, name="x.m4a", max_seconds=2)


def test_ffmpeg_that_hangs_is_killed_at_its_time_limit(ffmpeg: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_FFMPEG", "hang")
    with pytest.raises(BadAudio, match=r"^x\.m4a: ffmpeg had not finished decoding it after 0\.5 s; stopped it$"):
        load_audio(M4A, name="x.m4a", ffmpeg_timeout_s=0.5)


def test_ffmpeg_errors_are_its_error_line_never_the_file_tags(ffmpeg: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_FFMPEG", "fail")
    with pytest.raises(BadAudio) as caught:
        load_audio(M4A, name="x.m4a")
    assert str(caught.value) == "x.m4a: ffmpeg could not decode it: file:x: Invalid data found when processing input"


def test_without_ffmpeg_an_m4a_says_what_reads_what(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BadAudio) as caught:
        load_audio(M4A, name="talk.m4a")
    message = str(caught.value)
    assert message.startswith(
        "talk.m4a: M4A audio needs ffmpeg, which is not on PATH (install ffmpeg, or convert the file to WAV or FLAC); "
        "without it llm-tui reads "
    )
    assert message.endswith(", ".join(soundfile_formats()) or "nothing (pip install 'llm-tui[audio]')")
