"""Whisper speech to text on the transformers engine: a folder whose config says "whisper" loads here.

Audio is cut into 30-second windows (what Whisper's encoder takes) and each is decoded with `generate()`, so
`cancel` is checked and `progress` told between windows; the transformers ASR pipeline does the same windows with
overlapping strides but offers neither hook. The language is forced, or detected once on the first window and then
kept for the rest (as Whisper's own long-form decoding does). Timestamps tokens become segments; times are the
window's start plus the token's offset, clamped to the window and the audio.

Same safety as the engine: safetensors only, `local_files_only`, `trust_remote_code` False.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engines.adapters.transformers_load import LoadPlan, describe, load_weights
from engines.audio.types import SAMPLE_RATE, Audio, Segment, TranscribeOptions, Transcript
from engines.errors import BadModelFile, BadRequest, Cancelled, CapabilityNotSupported

WINDOW_S = 30
"""Seconds of audio Whisper's encoder takes at once."""
_MAX_CONFIG = 1 << 20
_TIME_PRECISION = 0.02
"""Seconds per timestamp token step (<|0.00|>, <|0.02|>, …)."""


class _QuietGenerateWarning(logging.Filter):
    """Drops the warning transformers' Whisper generate() causes itself on every real checkpoint (it passes the
    config's suppress_tokens back as arguments), which would otherwise reach the CLI's stderr."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "together with generation-related" not in record.getMessage()


_QUIET = _QuietGenerateWarning()


def is_whisper(folder: Path) -> bool:
    """True when the folder's config.json names a Whisper model (model_type or architecture)."""
    try:
        with open(folder / "config.json", "rb") as f:
            raw = f.read(_MAX_CONFIG + 1)  # a config.json is a few KiB: a huge one is not a Whisper's
        if len(raw) > _MAX_CONFIG:
            return False
        config = json.loads(raw)
    except (OSError, ValueError, RecursionError):
        return False
    if not isinstance(config, dict):
        return False
    architectures = config.get("architectures") or []
    return config.get("model_type") == "whisper" or "WhisperForConditionalGeneration" in architectures


def not_speech_capability(engine: str, capability: str, model: str) -> CapabilityNotSupported:
    """The refusal for chat or embeddings on a Whisper model, naming what the model is."""
    error = CapabilityNotSupported(engine, capability)
    error.args = (f"{model} is a speech-to-text model: it transcribes audio, it cannot do {capability}",)
    return error


@dataclass(slots=True)
class Whisper:
    """A loaded Whisper model and its processor (feature extractor + tokenizer)."""

    model: Any
    processor: Any
    name: str

    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer


def load_whisper(folder: Path, plan: LoadPlan, name: str) -> Whisper:
    """Load WhisperForConditionalGeneration and WhisperProcessor from a local folder (BadModelFile if it cannot)."""
    import transformers

    try:
        processor = transformers.WhisperProcessor.from_pretrained(
            str(folder), local_files_only=True, trust_remote_code=False
        )
    except Exception as exc:
        raise BadModelFile(str(folder), f"transformers cannot load its Whisper processor: {describe(exc)}") from None
    model = load_weights(transformers.WhisperForConditionalGeneration, folder, plan, folder)
    model.eval()
    logging.getLogger("transformers.generation.utils").addFilter(_QUIET)  # the same filter object: added once
    return Whisper(model, processor, name)


def transcribe(
    whisper: Whisper,
    audio: Audio,
    options: TranscribeOptions,
    cancel: threading.Event,
    progress: Callable[[float], None] | None = None,
) -> Transcript:
    """Transcribe (or translate) `audio` window by window; Cancelled between windows once `cancel` is set."""
    import torch

    started = time.perf_counter()
    model = whisper.model
    samples = audio.samples
    window = WINDOW_S * SAMPLE_RATE
    starts = list(range(0, len(samples), window)) or [0]
    language = _language_token(whisper, options.language) if options.language else None
    kwargs = _generate_kwargs(whisper, options)
    segments: list[Segment] = []
    texts: list[str] = []
    for index, first in enumerate(starts):
        if cancel.is_set():
            raise Cancelled(f"transcription cancelled after {index} of {len(starts)} chunks")
        piece = samples[first : first + window]
        offset, length = first / SAMPLE_RATE, len(piece) / SAMPLE_RATE
        features = whisper.processor.feature_extractor(piece, sampling_rate=SAMPLE_RATE, return_tensors="pt")
        input_features = features.input_features.to(device=model.device, dtype=model.dtype)
        with torch.inference_mode():
            if language is None:
                language = _detect(whisper, input_features)
            out = model.generate(input_features, language=language, **kwargs)
        ids = [int(t) for t in out[0].tolist()]
        text, found = _parse(whisper, ids, offset, length, options.timestamps)
        texts.append(text)
        segments.extend(found)
        if progress is not None:
            progress((index + 1) / len(starts))
    return Transcript(
        text="".join(texts).strip(),
        segments=tuple(segments),
        language=(language or "").strip("<|>") or None,
        duration_s=audio.duration_s,
        elapsed_s=time.perf_counter() - started,
        model=whisper.name,
        extra={"chunks": len(starts)},
    )


def _generate_kwargs(whisper: Whisper, options: TranscribeOptions) -> dict[str, Any]:
    if options.task not in ("transcribe", "translate"):
        raise BadRequest(f"task {options.task!r}: expected 'transcribe' or 'translate'")
    if options.temperature < 0:
        raise BadRequest(f"temperature {options.temperature}: must be 0 or more")
    kwargs: dict[str, Any] = {"task": options.task, "return_timestamps": options.timestamps}
    if options.temperature > 0:
        kwargs.update(do_sample=True, temperature=options.temperature)
    else:
        kwargs.update(do_sample=False)
    if options.prompt:
        import torch

        ids = whisper.processor.get_prompt_ids(options.prompt, return_tensors="pt")
        kwargs["prompt_ids"] = torch.as_tensor(ids).to(whisper.model.device)
    return kwargs


def _language_token(whisper: Whisper, language: str) -> str:
    """`language` ("en", "<|en|>", "english") as the model's token, or BadRequest listing what it knows."""
    known: dict[str, int] = getattr(whisper.model.generation_config, "lang_to_id", None) or {}
    code = language.strip().lower().strip("<|>")
    if f"<|{code}|>" in known:
        return f"<|{code}|>"
    from transformers.models.whisper.tokenization_whisper import TO_LANGUAGE_CODE

    if TO_LANGUAGE_CODE.get(code) and f"<|{TO_LANGUAGE_CODE[code]}|>" in known:
        return f"<|{TO_LANGUAGE_CODE[code]}|>"
    names = ", ".join(sorted(k.strip("<|>") for k in known)[:20]) or "none"
    raise BadRequest(f"language {language!r}: {whisper.name} knows {names}")


def _detect(whisper: Whisper, input_features: Any) -> str | None:
    """The language token Whisper hears in the first window (None for an English-only model)."""
    config = whisper.model.generation_config
    known: dict[str, int] = getattr(config, "lang_to_id", None) or {}
    if not known or not getattr(config, "is_multilingual", True):
        return None
    ids = whisper.model.detect_language(input_features)
    by_id = {v: k for k, v in known.items()}
    token = by_id.get(int(ids.reshape(-1)[0]))
    return token


def _parse(
    whisper: Whisper, ids: list[int], offset: float, length: float, timestamps: bool
) -> tuple[str, list[Segment]]:
    """A window's text and segments from its generated ids: what follows <|startoftranscript|> if it is there (a
    prompt comes before it), specials skipped, text between timestamp tokens made a segment."""
    config = whisper.model.generation_config
    start_token = getattr(config, "decoder_start_token_id", None)
    if start_token in ids:
        ids = ids[len(ids) - ids[::-1].index(start_token) :]
    tokenizer = whisper.tokenizer
    # Whisper's vocabulary puts every control token (<|endoftext|>, <|startofprev|>, languages, tasks, times) after
    # the text tokens, as its own decoder does: a token from <|endoftext|> on is never text, listed special or not.
    eot = getattr(tokenizer, "eos_token_id", None)
    special = set(tokenizer.all_special_ids) | (set(range(eot, len(tokenizer))) if isinstance(eot, int) else set())
    no_timestamps = getattr(config, "no_timestamps_token_id", None)
    first_time = no_timestamps + 1 if no_timestamps is not None else None
    end = offset + length
    segments: list[Segment] = []
    words: list[int] = []
    begin: float | None = None
    last = offset

    def close(at: float) -> None:
        nonlocal last
        text = tokenizer.decode(words, skip_special_tokens=True)
        # Kept in order and inside the window, whatever the model says (a timestamp may go back, or past the end).
        start = min(max(begin if begin is not None else last, last), end)
        stop = min(max(at, start), end)
        if text.strip() and start < end:
            segments.append(Segment(round(start, 2), round(stop, 2), text.strip()))
        last = stop

    for token in ids:
        if first_time is not None and token >= first_time:
            at = offset + (token - first_time) * _TIME_PRECISION
            if words:
                close(at)
                words, begin = [], None
            else:
                begin = at
        elif token not in special:
            words.append(token)
    if words:
        close(end)
    text = tokenizer.decode(
        [t for t in ids if t not in special and (first_time is None or t < first_time)], skip_special_tokens=True
    )
    if not timestamps and text.strip():
        segments = [Segment(round(offset, 2), round(end, 2), text.strip())]
    return text, segments
