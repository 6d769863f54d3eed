"""Audio in: a file or an upload decoded, checked and resampled to 16 kHz mono float32 before any model sees it.

Every check that the first bytes and the header allow runs before a sample is decoded, and before numpy or a
decoder is imported: an empty file, a text or HTML file with an audio name, a truncated WAV (its header declares
more frames than the file holds), absurd sample rates or channel counts, and a duration over `max_seconds` are
refused in milliseconds, in a few KiB of memory, with one `BadAudio` that names the file and never echoes it.

Limits (each a keyword argument of `load_audio`):
- `MAX_SECONDS` = 2 h: a long meeting or lecture. The samples it decodes to take 461 MB (2 h × 16 kHz × 4 bytes);
  longer recordings are refused from their header, or while decoding when no header says how long they are.
- `MAX_BYTES` = 2 GiB for a file: room for a 2-hour 48 kHz 24-bit stereo WAV (2.07 GB). Decoding reads blocks,
  so a file's size costs no memory; the byte limit stops a header that lies about a huge file.
- `MAX_UPLOAD_BYTES` = 100 MiB for bytes (an upload is in memory already; the server should stop reading the
  body at this size). OpenAI's transcription endpoint takes 25 MB.
- Sample rates from 1 kHz to 768 kHz, 1 to 64 channels; ffmpeg is given `FFMPEG_TIMEOUT_S` (10 min).

Decoders:
- soundfile (libsndfile) reads WAV/RF64/W64, FLAC, OGG/Vorbis, OGG/Opus, AIFF, AU, CAF, and MP3 where its
  libsndfile is 1.1 or newer (what the installed one reads is asked, not assumed: `soundfile_formats()`).
  It reads blocks, each down-mixed (mean of the channels) and resampled as it arrives.
- ffmpeg, when it is on PATH, reads the rest (M4A/MP4, AAC, WebM/Matroska, AMR, WMA, MP3 without libsndfile
  MP3): `-ac 1 -ar 16000 -f f32le` on its stdout, `-t` one second past the limit, at most that many bytes read,
  killed past `FFMPEG_TIMEOUT_S`, and killed at once when the Duration it prints from the header is too long.
  Uploads reach it through a temporary file (an M4A's index may sit at its end, which a pipe cannot seek to).
  `Audio.source_rate` and `channels` come from the stream line it prints (0 where it prints none).

Resampling: soxr (libsoxr; a wheel of about 0.5 MB installed, needing only numpy) in its default "HQ" quality,
streamed block by block. Measured (tests/engines/test_audio_decode.py): a 1 kHz tone at 44.1 kHz, resampled to
16 kHz, differs from the exact 16 kHz tone by a relative RMS error of 2e-7 (-133 dB) away from the edges. Linear
interpolation (numpy alone) measured -55 dB on that tone and -27 dB at 5 kHz, where it also aliases; a windowed
sinc of our own would be code to keep. Whisper's feature extractor takes 16 kHz as given and does not resample.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import os
import re
import shutil
import stat
import struct
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, NamedTuple

from engines.audio.types import SAMPLE_RATE, Audio
from engines.errors import BadRequest, EngineUnavailable

if TYPE_CHECKING:
    import numpy as np

MAX_SECONDS = 2 * 3600.0
"""The longest audio decoded (2 hours)."""
MAX_BYTES = 2 * 1024**3
"""The largest audio file read (2 GiB)."""
MAX_UPLOAD_BYTES = 100 * 1024**2
"""The largest upload decoded (100 MiB): the default `max_bytes` when the source is bytes."""
FFMPEG_TIMEOUT_S = 600.0
"""How long ffmpeg may take to decode one file."""
MIN_RATE, MAX_RATE = 1_000, 768_000
MAX_CHANNELS = 64

_HEAD = 4096  # bytes read to tell what a file is
_MAX_CHUNKS = 4096  # RIFF chunks walked before the audio data; real files have a handful
_STREAMED = 0x7FFFF000  # a 32-bit RIFF size at least this big is a writer's "unknown length" (sox, ffmpeg, pipes)
_BLOCK_SAMPLES = 1 << 20  # samples (frames × channels) decoded per block: 4 MiB of float32


class BadAudio(BadRequest):
    """An audio file or upload that cannot be used: not audio, corrupt, truncated, empty, too long or too big."""


class AudioInfo(NamedTuple):
    """What a cheap look at an audio file tells: its format, and where known its rate, channels and length."""

    format: str
    sample_rate: int | None
    channels: int | None
    duration_s: float | None
    """None where only decoding can tell (formats ffmpeg reads)."""


def load_audio(
    source: Path | bytes,
    *,
    name: str | None = None,
    max_seconds: float = MAX_SECONDS,
    max_bytes: int | None = None,
    ffmpeg_timeout_s: float = FFMPEG_TIMEOUT_S,
) -> Audio:
    """Decode a file or uploaded bytes to 16 kHz mono float32 in [-1, 1]; BadAudio naming it when it is unusable.

    `name` is how messages name it (default: the path, or "upload"); `max_bytes` defaults to MAX_BYTES for a
    path and MAX_UPLOAD_BYTES for bytes. EngineUnavailable when nothing installed can decode it.
    """
    with _opened(source, name, max_bytes) as src:
        probe = _probe(src)
        if probe.seconds is not None:
            _check_seconds(src.shown, probe.seconds, max_seconds)
        reason = ""
        for decoder in _decoders(src.shown, probe):
            if decoder == "ffmpeg":
                return _decode_ffmpeg(src, probe, max_seconds, ffmpeg_timeout_s)
            try:
                return _decode_soundfile(src, probe, max_seconds)
            except _CannotOpen as exc:
                reason = exc.reason
        raise _unrecognised(src.shown, probe.label, reason)


def audio_info(source: Path | bytes, *, name: str | None = None) -> AudioInfo:
    """Format, sample rate, channels and duration from the header, decoding nothing; BadAudio as load_audio."""
    with _opened(source, name, None if isinstance(source, bytes) else MAX_BYTES) as src:
        probe = _probe(src)
        reason = ""
        if probe.label is not None and probe.rate is not None and probe.seconds is not None:
            return AudioInfo(probe.label, probe.rate, probe.channels, probe.seconds)
        for decoder in _decoders(src.shown, probe):
            if decoder == "ffmpeg":
                return AudioInfo(probe.label or "unknown (ffmpeg)", None, None, None)
            try:
                with _soundfile_open(src) as f:
                    frames = f.frames if 0 < f.frames < 2**62 else None
                    _check_shape(src.shown, probe.label or f.format, f.samplerate, f.channels)
                    seconds = None if frames is None else frames / f.samplerate
                    return AudioInfo(probe.label or str(f.format), f.samplerate, f.channels, seconds)
            except _CannotOpen as exc:
                reason = exc.reason
        raise _unrecognised(src.shown, probe.label, reason)


def soundfile_formats() -> list[str]:
    """The formats the installed soundfile reads, as messages name them (WAV, FLAC, OGG/Vorbis, ...); [] without it."""
    sf = _soundfile()
    if sf is None:
        return []
    return [label for label in _SOUNDFILE_LABELS if label != "OGG" and _soundfile_reads(sf, label)]


# -- the source --------------------------------------------------------------------------------------------------


@dataclass
class _Source:
    stream: IO[bytes]
    size: int
    shown: str
    path: Path | None
    data: bytes | None

    def read_at(self, offset: int, n: int) -> bytes:
        self.stream.seek(offset)
        return self.stream.read(n)


@contextlib.contextmanager
def _opened(source: Path | bytes, name: str | None, max_bytes: int | None) -> Iterator[_Source]:
    if isinstance(source, bytes | bytearray | memoryview):
        shown = _shown(name or "upload")
        _check_size(shown, len(source), MAX_UPLOAD_BYTES if max_bytes is None else max_bytes, "uploads")
        data = bytes(source)
        yield _Source(io.BytesIO(data), len(data), shown, None, data)
        return
    path = Path(source)
    shown = _shown(name or str(path))
    try:
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            raise BadAudio(f"{shown} is a folder, not an audio file")
        if not stat.S_ISREG(mode):  # a FIFO or a device would block or never end
            raise BadAudio(f"{shown} is not a regular file")
        f = open(path, "rb")  # noqa: SIM115 - closed below, after the caller is done with it
    except FileNotFoundError:
        raise BadAudio(f"no such audio file: {shown}") from None
    except PermissionError:
        raise BadAudio(f"cannot read {shown}: permission denied") from None
    except OSError as exc:
        raise BadAudio(f"cannot read {shown}: {exc.strerror or exc}") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        _check_size(shown, size, MAX_BYTES if max_bytes is None else max_bytes, "audio files")
        yield _Source(f, size, shown, path, None)


def _shown(name: str) -> str:
    # An upload's file name is the client's text: keep it printable and short in messages.
    clean = "".join(ch if ch.isprintable() else "?" for ch in name)
    return clean if len(clean) <= 120 else clean[:119] + "…"


def _check_size(shown: str, size: int, limit: int, what: str) -> None:
    if size == 0:
        raise BadAudio(f"{shown} is empty (0 bytes)")
    if size > limit:
        raise BadAudio(f"{shown} is {_bytes(size)}; {what} are limited to {_bytes(limit)}")


# -- what is it: the first bytes and the header -----------------------------------------------------------------


@dataclass(frozen=True)
class _Probe:
    label: str | None
    """The format from the first bytes: WAV, FLAC, OGG/Opus, MP3, M4A, ...; None when unknown."""
    rate: int | None = None
    channels: int | None = None
    frames: int | None = None
    """From a WAV header; None when the header does not say."""

    @property
    def seconds(self) -> float | None:
        return None if self.frames is None or not self.rate else self.frames / self.rate


# Formats soundfile may read, in the order messages list them: label -> (libsndfile format, subtype or None).
_SOUNDFILE_LABELS: dict[str, tuple[str, str | None]] = {
    "WAV": ("WAV", None),
    "FLAC": ("FLAC", None),
    "OGG/Vorbis": ("OGG", "VORBIS"),
    "OGG/Opus": ("OGG", "OPUS"),
    "MP3": ("MP3", None),
    "AIFF": ("AIFF", None),
    "RF64": ("RF64", None),
    "W64": ("W64", None),
    "AU": ("AU", None),
    "CAF": ("CAF", None),
    "OGG": ("OGG", None),
}
_FFMPEG_LABELS = ("M4A", "MP4", "MOV", "3GP", "AAC", "WebM/Matroska", "AMR", "WMA", "OGG/Speex")
_AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac", ".webm", ".mp4", ".aiff"}


def _sniff(head: bytes) -> str | None:
    """The audio format from the first bytes, or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "WAV"
    if head[:4] == b"RF64" and head[8:12] == b"WAVE":
        return "RF64"
    if head[:4] == b"riff" and head[16:20] == b"wave":
        return "W64"
    if head[:4] == b"fLaC":
        return "FLAC"
    if head[:4] == b"OggS":
        page = head[:128]
        for marker, label in ((b"\x01vorbis", "OGG/Vorbis"), (b"OpusHead", "OGG/Opus"), (b"Speex   ", "OGG/Speex")):
            if marker in page:
                return label
        return "OGG"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "AIFF"
    if head[:4] == b".snd":
        return "AU"
    if head[:4] == b"caff":
        return "CAF"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand[:3] in (b"M4A", b"M4B"):
            return "M4A"
        return "MOV" if brand == b"qt  " else "3GP" if brand[:3] == b"3gp" else "MP4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "WebM/Matroska"
    if head[:5] == b"#!AMR":
        return "AMR"
    if head[:4] == b"\x30\x26\xb2\x75":
        return "WMA"
    if head[:3] == b"ID3":
        return "MP3"
    if len(head) >= 2 and head[0] == 0xFF:
        if head[1] & 0xF6 == 0xF0:  # ADTS sync with layer 0: AAC
            return "AAC"
        if head[1] & 0xE0 == 0xE0 and head[1] & 0x06:  # MPEG audio frame sync, layer I-III
            return "MP3"
    return None


_NOT_AUDIO = (
    (b"version https://git-lfs", "a Git LFS pointer (the audio itself was never fetched)"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"GGUF", "a GGUF model file"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"MThd", "a MIDI file (notes, not recorded sound)"),
    (b"\x7fELF", "a program"),
)


def _looks_like(head: bytes) -> str | None:
    """What a file that is not audio looks like, from its first bytes (never its content), or None."""
    for magic, what in _NOT_AUDIO:
        if head.startswith(magic):
            return what
    first = head.lstrip()[:1]
    if first == b"<":
        return "an HTML or XML page (a failed download?)"
    if first in (b"{", b"["):
        return "JSON"
    return "a text file" if _is_text(head) else None


def _is_text(head: bytes) -> bool:
    sample = head[:1024]
    if not sample or b"\x00" in sample:
        return False
    text = codecs.getincrementaldecoder("utf-8")(errors="strict")
    try:
        chars = text.decode(sample, final=False)  # the sample may end inside a character
    except UnicodeDecodeError:
        return False
    readable = sum(ch.isprintable() or ch in "\t\r\n\f" for ch in chars)
    return bool(chars) and readable >= 0.95 * len(chars)


def _probe(src: _Source) -> _Probe:
    head = src.read_at(0, _HEAD)
    label = _sniff(head)
    if label is None:
        what = _looks_like(head)
        if what is not None:
            suffix = Path(src.shown).suffix.lower()
            named = f" (named {suffix}, but without a {suffix[1:].upper()} header)" if suffix in _AUDIO_SUFFIXES else ""
            raise BadAudio(f"{src.shown} is not audio: it looks like {what}{named}")
        return _Probe(None)
    if label in ("WAV", "RF64"):
        return _wav_header(src, label)
    if label.startswith("OGG") and not _ogg_ends_whole(src):
        # An Ogg file has no length in its header: libsndfile would read a cut one as a shorter, valid one.
        raise BadAudio(
            f"{src.shown}: truncated {label}: the file ends inside an Ogg page; an interrupted download or copy?"
        )
    return _Probe(label)


_OGG_PAGE_MAX = 27 + 255 + 255 * 255


def _ogg_ends_whole(src: _Source) -> bool:
    """Whether the last Ogg page is complete (a valid file never ends inside one); reads at most 128 KiB."""
    start = max(0, src.size - 2 * _OGG_PAGE_MAX)
    tail = src.read_at(start, src.size - start)
    at = tail.rfind(b"OggS\0")
    if at < 0:
        return True  # no page start near the end: nothing to judge by, libsndfile decides
    segments = tail[at + 27 : at + 27 + tail[at + 26]] if at + 27 <= len(tail) else b""
    if at + 27 > len(tail) or len(segments) < tail[at + 26]:
        return False
    end = at + 27 + len(segments) + sum(segments)
    return end <= len(tail) and not (end < len(tail) and b"OggS".startswith(tail[end:]))


_PCM_LIKE = {1, 3, 6, 7}  # PCM, IEEE float, A-law, µ-law: a fixed number of bytes per frame
_EXTENSIBLE = 0xFFFE


def _wav_header(src: _Source, label: str) -> _Probe:
    """Rate, channels and frames from a RIFF/RF64 header, walking chunk headers only; truncation refused."""
    shown = src.shown
    fmt: tuple[int, int, int, int] | None = None  # format tag, channels, rate, block align
    fact: int | None = None
    ds64_data: int | None = None
    pos = 12
    for _ in range(_MAX_CHUNKS):
        header = src.read_at(pos, 8)
        if len(header) < 8:
            where = "inside its header (no format chunk)" if fmt is None else "before its audio data"
            raise BadAudio(f"{shown}: truncated {label}: the file ends {where}")
        cid, size = header[:4], int.from_bytes(header[4:], "little")
        body = pos + 8
        if cid == b"ds64" and label == "RF64":
            d = src.read_at(body, 28)
            if len(d) < 16:
                raise BadAudio(f"{shown}: truncated RF64: the file ends inside its ds64 chunk")
            ds64_data = int.from_bytes(d[8:16], "little")
        elif cid == b"fmt ":
            d = src.read_at(body, min(size, 40))
            if size < 16 or len(d) < 16:
                what = "truncated" if len(d) < min(size, 16) else "corrupt"
                raise BadAudio(f"{shown}: {what} {label} header: its format chunk is {len(d)} bytes, needs 16")
            tag, channels, rate, _, align, _ = struct.unpack("<HHIIHH", d[:16])
            if tag == _EXTENSIBLE and len(d) >= 26:
                tag = int.from_bytes(d[24:26], "little")
            _check_shape(shown, label, rate, channels)
            if align == 0:
                raise BadAudio(f"{shown}: corrupt {label} header: 0 bytes per frame")
            fmt = (tag, channels, rate, align)
        elif cid == b"fact" and size >= 4:
            fact = int.from_bytes(src.read_at(body, 4).ljust(4, b"\0"), "little")
        elif cid == b"data":
            if fmt is None:
                raise BadAudio(f"{shown}: corrupt {label}: its audio data comes before the format chunk")
            tag, channels, rate, align = fmt
            available = max(src.size - body, 0)
            if label == "RF64" and size == 0xFFFFFFFF and ds64_data is not None:
                declared = ds64_data
            elif size == 0 or (size >= _STREAMED and size > available):
                declared = available  # written by a stream that never came back to fill the size in
            else:
                declared = size
            if declared > available:
                said = f"{_seconds(declared // align / rate)} of audio" if tag in _PCM_LIKE else "more audio"
                holds = f"{_seconds(available // align / rate)}" if tag in _PCM_LIKE else f"{_bytes(available)}"
                raise BadAudio(
                    f"{shown}: truncated {label}: its header says {said} ({_bytes(declared)}) but the file holds "
                    f"{holds} ({_bytes(available)}); an interrupted download or copy?"
                )
            frames = declared // align if tag in _PCM_LIKE else fact
            if frames == 0:
                raise BadAudio(f"{shown} holds no audio ({label} with 0 samples)")
            return _Probe(label, rate, channels, frames)
        pos = body + size + (size & 1)
    raise BadAudio(f"{shown}: corrupt {label}: more than {_MAX_CHUNKS} chunks before its audio data")


def _check_shape(shown: str, label: str, rate: int, channels: int) -> None:
    if not MIN_RATE <= rate <= MAX_RATE:
        raise BadAudio(
            f"{shown}: corrupt {label} header: a sample rate of {rate} Hz "
            f"(audio is {MIN_RATE // 1000}–{MAX_RATE // 1000} kHz)"
        )
    if not 1 <= channels <= MAX_CHANNELS:
        raise BadAudio(f"{shown}: corrupt {label} header: {channels} channels (at most {MAX_CHANNELS} are read)")


def _check_seconds(shown: str, seconds: float, max_seconds: float, *, at_least: bool = False) -> None:
    if seconds > max_seconds:
        length = f"longer than {_seconds(max_seconds)}" if at_least else f"{_seconds(seconds)} long"
        raise BadAudio(
            f"{shown} is {length}; audio is limited to {_seconds(max_seconds)} (split it into shorter parts)"
        )


# -- which decoder ------------------------------------------------------------------------------------------------


Decoder = Literal["soundfile", "ffmpeg"]


def _decoders(shown: str, probe: _Probe) -> tuple[Decoder, ...]:
    """The decoders to try, in order; BadAudio or EngineUnavailable when nothing here reads this format."""
    sf = _soundfile()
    ffmpeg = _ffmpeg()
    label = probe.label
    if label is None:  # an unknown binary: libsndfile knows formats not sniffed here, then ffmpeg knows more
        found = (*(("soundfile",) if sf else ()), *(("ffmpeg",) if ffmpeg else ()))
        if not found:
            raise _nothing_installed(shown)
        return found
    if label in _SOUNDFILE_LABELS and sf is not None and _soundfile_reads(sf, label):
        return ("soundfile", "ffmpeg") if ffmpeg else ("soundfile",)  # ffmpeg for codecs inside that libsndfile lacks
    if ffmpeg is not None:
        return ("ffmpeg",)
    if label in _SOUNDFILE_LABELS and sf is None:
        raise _nothing_installed(shown)
    readable = ", ".join(soundfile_formats()) or "nothing (pip install 'llm-tui[audio]')"
    raise BadAudio(
        f"{shown}: {label} audio needs ffmpeg, which is not on PATH (install ffmpeg, or convert the file to WAV "
        f"or FLAC); without it llm-tui reads {readable}"
    )


def _nothing_installed(shown: str) -> EngineUnavailable:
    return EngineUnavailable(
        "audio",
        f"nothing installed can decode {shown}: soundfile is not installed and ffmpeg is not on PATH",
        "pip install 'llm-tui[audio]' (WAV, FLAC, OGG, MP3), and install ffmpeg for M4A/AAC",
    )


def _unrecognised(shown: str, label: str | None, reason: str) -> BadAudio:
    hint = "" if _ffmpeg() else "; ffmpeg, which reads more formats and codecs, is not on PATH"
    if label is not None:
        return BadAudio(f"{shown}: cannot decode this {label} (corrupt or truncated?): libsndfile says {reason}{hint}")
    return BadAudio(
        f"{shown} is not a recognised audio format (no WAV, FLAC, OGG, MP3 or M4A header; libsndfile says {reason})"
        f"{hint}"
    )


def _soundfile() -> Any:
    try:
        import soundfile
    except (ImportError, OSError):  # OSError: the package is there but its libsndfile is not
        return None
    return soundfile


def _soundfile_reads(sf: Any, label: str) -> bool:
    fmt, subtype = _SOUNDFILE_LABELS[label]
    if fmt not in sf.available_formats():
        return False
    return subtype is None or subtype in sf.available_subtypes(fmt)


def _ffmpeg() -> str | None:
    return shutil.which("ffmpeg")


# -- soundfile ----------------------------------------------------------------------------------------------------


class _CannotOpen(Exception):
    """libsndfile does not recognise the file (another decoder may)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@contextlib.contextmanager
def _soundfile_open(src: _Source) -> Iterator[Any]:
    sf = _soundfile()
    src.stream.seek(0)
    try:
        f = sf.SoundFile(src.stream)
    except (RuntimeError, TypeError, ValueError) as exc:  # LibsndfileError is a RuntimeError
        raise _CannotOpen(_libsndfile_reason(exc)) from None
    with f:
        yield f


def _libsndfile_reason(exc: BaseException) -> str:
    # soundfile's own text names the Python file object; libsndfile's error string says what is wrong.
    text = str(getattr(exc, "error_string", None) or exc).strip().rstrip(".")
    return text.removeprefix("Error : ")


def _decode_soundfile(src: _Source, probe: _Probe, max_seconds: float) -> Audio:
    import numpy as np

    shown = src.shown
    with _soundfile_open(src) as f:
        label = probe.label or str(f.format)
        rate, channels = int(f.samplerate), int(f.channels)
        _check_shape(shown, label, rate, channels)
        frames = int(f.frames) if 0 <= f.frames < 2**62 else None  # libsndfile says 2**63-1 when it cannot tell
        if frames == 0:
            raise BadAudio(f"{shown} holds no audio ({label} with 0 samples)")
        if frames is not None:
            _check_seconds(shown, frames / rate, max_seconds)
        limit = int(max_seconds * rate) + 1
        expected = SAMPLE_RATE * 60 if frames is None else frames * SAMPLE_RATE // rate + 64
        out = _Samples(expected)
        resample = _resampler(rate)
        block = max(1024, _BLOCK_SAMPLES // channels)
        read = 0
        try:
            while True:
                data = f.read(block, dtype="float32", always_2d=True)
                if not len(data):
                    break
                read += len(data)
                if read > limit:  # the header did not say, or said less
                    _check_seconds(shown, read / rate, max_seconds, at_least=True)
                mono = data[:, 0] if channels == 1 else data.mean(axis=1, dtype=np.float32)
                if not np.isfinite(mono).all():
                    raise BadAudio(f"{shown}: corrupt {label}: it holds samples that are not numbers (NaN or inf)")
                out.add(mono if resample is None else resample.resample_chunk(mono, last=False))
        except RuntimeError as exc:
            raise BadAudio(f"{shown}: corrupt or truncated {label}: {_libsndfile_reason(exc)}") from None
    if resample is not None:
        out.add(resample.resample_chunk(np.zeros(0, np.float32), last=True))
    if read == 0:
        raise BadAudio(f"{shown} holds no audio ({label} with 0 samples)")
    if frames is not None and read < frames:
        raise BadAudio(
            f"{shown}: truncated {label}: its header says {_seconds(frames / rate)} of audio but only "
            f"{_seconds(read / rate)} could be decoded; an interrupted download or copy?"
        )
    return Audio(out.array(), shown, label, rate, channels)


class _Samples:
    """A float32 buffer filled block by block, grown by doubling when a header said too little."""

    def __init__(self, capacity: int) -> None:
        import numpy as np

        self.buf: np.ndarray = np.empty(max(capacity, 1024), np.float32)
        self.n = 0

    def add(self, x: np.ndarray) -> None:
        import numpy as np

        end = self.n + len(x)
        if end > len(self.buf):
            grown = np.empty(max(end, 2 * len(self.buf)), np.float32)
            grown[: self.n] = self.buf[: self.n]
            self.buf = grown
        self.buf[self.n : end] = x
        self.n = end

    def array(self) -> np.ndarray:
        samples = self.buf[: self.n]
        if len(self.buf) - self.n > self.n // 4:  # a view would keep the slack alive
            samples = samples.copy()
        samples.clip(-1.0, 1.0, out=samples)  # float files and resampling overshoot may pass ±1
        return samples


def _resampler(rate: int) -> Any:
    if rate == SAMPLE_RATE:
        return None
    try:
        import soxr
    except ImportError:
        raise EngineUnavailable(
            "audio", f"soxr is not installed (it resamples {rate} Hz audio to 16 kHz)", "pip install 'llm-tui[audio]'"
        ) from None
    return soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")


# -- ffmpeg -------------------------------------------------------------------------------------------------------


_DURATION = re.compile(rb"^\s*Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")
_STREAM = re.compile(rb"Stream #\d+:\d+.*?: Audio: (\w+)[^,]*, (\d+) Hz, ([^,]+)")
_LAYOUTS = {"mono": 1, "stereo": 2, "quad": 4}


class _FfmpegLog(threading.Thread):
    """Reads ffmpeg's stderr as it comes: the input's duration (ffmpeg is killed when it is over the limit), the
    first audio stream's codec, rate and channels, and the last unindented lines (its errors; indented lines
    hold the file's tags, which are never shown)."""

    def __init__(self, proc: subprocess.Popen[bytes], max_seconds: float) -> None:
        super().__init__(daemon=True)
        self.proc = proc
        self.max_seconds = max_seconds
        self.seconds: float | None = None
        self.codec, self.rate, self.channels = "", 0, 0
        self.errors: list[str] = []

    def run(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if self.seconds is None and (m := _DURATION.match(line)):
                h, mnt, s = m.groups()
                self.seconds = int(h) * 3600 + int(mnt) * 60 + float(s)
                if self.seconds > self.max_seconds:
                    self.proc.kill()
            elif not self.codec and (m := _STREAM.search(line)):
                self.codec, self.rate = m[1].decode(), int(m[2])
                layout = m[3].decode().strip()
                n = re.match(r"(\d+) channels|(\d+)\.(\d+)", layout)
                self.channels = _LAYOUTS.get(layout, 0)
                if n:
                    self.channels = int(n[1]) if n[1] else int(n[2]) + int(n[3])
            elif line[:1] not in (b" ", b"\t") and line.strip():
                self.errors = [*self.errors[-2:], line.decode("utf-8", "replace").strip()[:300]]


@contextlib.contextmanager
def _as_file(src: _Source) -> Iterator[Path]:
    if src.path is not None:
        yield src.path.resolve()
        return
    assert src.data is not None
    with tempfile.NamedTemporaryFile(prefix="llm-tui-audio-") as tmp:
        tmp.write(src.data)
        tmp.flush()
        yield Path(tmp.name)


def _decode_ffmpeg(src: _Source, probe: _Probe, max_seconds: float, timeout_s: float) -> Audio:
    import numpy as np

    shown = src.shown
    exe = _ffmpeg()
    if exe is None:
        raise BadAudio(f"{shown}: ffmpeg is not on PATH (install it to read {probe.label or 'this format'})")
    cap = (int((max_seconds + 1) * SAMPLE_RATE) + 1) * 4  # bytes of f32le that -t lets through, and one more
    buf = bytearray()
    with _as_file(src) as path:
        cmd = [
            exe, "-nostdin", "-hide_banner", "-nostats",
            "-i", f"file:{path}",  # file: so that a name is never read as a protocol or an option
            "-map", "0:a:0", "-vn", "-sn", "-dn",
            "-t", f"{max_seconds + 1:.3f}",
            "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "f32le", "pipe:1",
        ]  # fmt: skip
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        log = _FfmpegLog(proc, max_seconds)
        log.start()
        timed_out = threading.Event()

        def stop() -> None:
            timed_out.set()
            proc.kill()

        timer = threading.Timer(timeout_s, stop)
        timer.start()
        assert proc.stdout is not None
        try:
            while len(buf) <= cap and (chunk := proc.stdout.read(min(1 << 20, cap + 1 - len(buf)))):
                buf += chunk
        finally:
            timer.cancel()
            if proc.poll() is None and (len(buf) > cap or timed_out.is_set()):
                proc.kill()
            proc.stdout.close()
            rc = proc.wait()
            log.join(timeout=5)
    if log.seconds is not None:
        _check_seconds(shown, log.seconds, max_seconds)
    if timed_out.is_set():
        raise BadAudio(f"{shown}: ffmpeg had not finished decoding it after {timeout_s:g} s; stopped it")
    n = len(buf) // 4
    if n > max_seconds * SAMPLE_RATE + 1:
        _check_seconds(shown, n / SAMPLE_RATE, max_seconds, at_least=True)
    if rc != 0:
        said = log.errors[-1] if log.errors else f"exit status {rc}"
        raise BadAudio(f"{shown}: ffmpeg could not decode it: {said}")
    if n == 0:
        raise BadAudio(f"{shown} holds no audio (ffmpeg decoded 0 samples)")
    samples = np.frombuffer(memoryview(buf)[: n * 4], dtype="<f4").astype(np.float32, copy=False)
    if not np.isfinite(samples).all():
        raise BadAudio(f"{shown}: ffmpeg decoded samples that are not numbers (NaN or inf)")
    np.clip(samples, -1.0, 1.0, out=samples)
    label = probe.label or "unknown"
    fmt = f"{label} ({log.codec})" if log.codec else label
    return Audio(samples, shown, fmt, log.rate, log.channels)  # 0: ffmpeg did not say


# -- words --------------------------------------------------------------------------------------------------------


def _seconds(s: float) -> str:
    """12.5 s, 4 min 05 s, 3 h 00 min: a length as people say it."""
    if s < 60:
        return f"{s:.1f} s"
    total = round(s)
    if total < 3600:
        return f"{total // 60} min {total % 60:02d} s"
    return f"{total // 3600} h {total % 3600 // 60:02d} min"


def _bytes(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"
