"""A tiny Whisper in the real on-disk format (config, generation config, tokenizer, feature extractor, safetensors),
built offline with seeded random weights: it loads and transcribes like a real checkpoint, but says garbage.

Tests assert structure (segments, languages, chunks, cancel), never what the model heard.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

LANGUAGES = ("en", "de", "fr", "es")
TASKS = ("transcribe", "translate")
MERGES = ("Ġ t", "h e", "Ġt he", "i n", "Ġ a")
"""A few real GPT-2 merges, so the BPE has something to merge."""
ENDS_AFTER = 16
"""Decoder positions from which the model all but always says <|endoftext|>: random weights would otherwise babble
to the 448-token limit in every 30-second window (seconds each on a CPU)."""
VERSION = 1
"""Bumped when the model's files change, so a cached copy from an older build is not reused."""


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte ↔ printable-character table (what byte-level BPE vocabularies are written in)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(printable, (chr(c) for c in chars), strict=True))


def _vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    vocab = {ch: i for i, ch in enumerate(sorted(_bytes_to_unicode().values()))}
    merges = [tuple(m.split(" ")) for m in MERGES]
    for left, right in merges:
        vocab.setdefault(left + right, len(vocab))
    return vocab, [(a, b) for a, b in merges]


def special_tokens() -> list[str]:
    """Whisper's special tokens in a real checkpoint's order: timestamps right after <|notimestamps|>."""
    tokens = ["<|endoftext|>", "<|startoftranscript|>"]
    tokens += [f"<|{lang}|>" for lang in LANGUAGES]
    tokens += ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>"]
    tokens += ["<|notimestamps|>"]
    tokens += [f"<|{i * 0.02:.2f}|>" for i in range(1501)]  # <|0.00|> … <|30.00|>
    return tokens


def build(folder: Path, *, seed: int = 0) -> Path:
    """Write the tiny Whisper into `folder` (created) and return it."""
    import torch
    from transformers import (
        AddedToken,
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperTokenizer,
    )

    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = _vocab()
    tokenizer = WhisperTokenizer(vocab=vocab, merges=merges)
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in special_tokens()], special_tokens=True)
    tokenizer.pad_token = "<|endoftext|>"
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in special_tokens()}
    eot, sot, no_ts = ids["<|endoftext|>"], ids["<|startoftranscript|>"], ids["<|notimestamps|>"]

    config = WhisperConfig(
        vocab_size=len(tokenizer),
        num_mel_bins=80,
        d_model=64,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        max_source_positions=1500,
        max_target_positions=448,
        pad_token_id=eot,
        bos_token_id=eot,
        eos_token_id=eot,
        decoder_start_token_id=sot,
        begin_suppress_tokens=[220, eot],
        suppress_tokens=[],
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config).eval()
    _end_after(model, eot, ENDS_AFTER)
    generation = GenerationConfig(
        decoder_start_token_id=sot,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        max_length=448,
        begin_suppress_tokens=[220, eot],
        suppress_tokens=[],
        forced_decoder_ids=[[1, None], [2, ids["<|transcribe|>"]]],
        is_multilingual=True,
        lang_to_id={f"<|{lang}|>": ids[f"<|{lang}|>"] for lang in LANGUAGES},
        task_to_id={task: ids[f"<|{task}|>"] for task in TASKS},
        no_timestamps_token_id=no_ts,
        prev_sot_token_id=ids["<|startofprev|>"],
        max_initial_timestamp_index=50,
        return_timestamps=False,
    )
    model.generation_config = generation
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(folder)
    return folder


def _end_after(model: object, eot: int, position: int) -> None:
    """Steer the model to <|endoftext|> from decoder `position` on: the learned position embeddings from there carry a
    large zero-mean direction, and <|endoftext|>'s (tied) output embedding points the same way."""
    import torch

    generator = torch.Generator().manual_seed(1)
    d_model = model.config.d_model  # type: ignore[attr-defined]
    direction = torch.randn(d_model, generator=generator)
    direction = (direction - direction.mean()) / direction.norm()
    decoder = model.model.decoder  # type: ignore[attr-defined]
    with torch.no_grad():
        decoder.embed_positions.weight[position:] += 4.0 * direction
        decoder.embed_tokens.weight[eot] = 4.0 * direction


def cached(root: Path) -> Path:
    """The tiny Whisper under `root`, built once; several processes (pytest-xdist) share it under a lock."""
    from filelock import FileLock

    folder = root / f"tiny-whisper-v{VERSION}"
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if not (folder / "model.safetensors").is_file():
            staging = root / f"{folder.name}.partial"
            build(staging)
            if folder.exists():
                import shutil

                shutil.rmtree(folder)
            staging.rename(folder)
    return folder


def tone(seconds: float, *, hz: float = 440.0, level: float = 0.3, seed: int = 0) -> np.ndarray:
    """A sine tone with a little noise, mono float32 at 16 kHz."""
    n = int(seconds * 16_000)
    t = np.arange(n, dtype=np.float32) / 16_000
    noise = np.random.default_rng(seed).normal(0, 0.01, n)
    return (level * np.sin(2 * np.pi * hz * t) + noise).astype(np.float32)
