"""Speech-to-text real-time factor through llm-tui against a plain transformers ASR pipeline (issue 22).

RTF = audio seconds / wall seconds (higher is faster). llm-tui's side is EngineManager.transcribe on a
transformers-engine instance (queue, worker thread, 30-second windows with generate()); the baseline is
`transformers.pipeline("automatic-speech-recognition", model=folder, chunk_length_s=30)` on the same samples,
both with segment timestamps and the language detected. Runs alternate, after one warm-up each; medians reported.

The model is the tests' tiny random-weight Whisper unless --model names a Whisper folder: its text is garbage, so
no quality figure is measured, only speed. Usage: python bench/transcribe_rtf.py [--seconds 150] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engines.audio.types import SAMPLE_RATE, Audio  # noqa: E402
from engines.manager import EngineManager  # noqa: E402
from engines.types import LaunchOptions, ModelSpec  # noqa: E402
from tests.engines import tiny_whisper  # noqa: E402


def speech_like(seconds: float) -> np.ndarray:
    """Tones that change every few seconds, with noise and pauses: something for every window to decode."""
    rng = np.random.default_rng(0)
    pieces = []
    left = seconds
    while left > 0:
        length = min(left, float(rng.uniform(2, 6)))
        if rng.random() < 0.2:
            pieces.append(np.zeros(int(length * SAMPLE_RATE), np.float32))
        else:
            pieces.append(tiny_whisper.tone(length, hz=float(rng.uniform(150, 900)), seed=len(pieces)))
        left -= length
    return np.concatenate(pieces)[: int(seconds * SAMPLE_RATE)]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", type=Path, help="a Whisper model folder (default: the tiny random-weight one)")
    parser.add_argument("--seconds", type=float, default=150.0, help="audio length (default: 150, 5 windows)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import torch
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.model or tiny_whisper.build(Path(tmp) / "tiny-whisper")
        samples = speech_like(args.seconds)
        audio = Audio(samples, "bench", "WAV", SAMPLE_RATE, 1)
        pipe = transformers.pipeline("automatic-speech-recognition", model=str(folder), chunk_length_s=30, device="cpu")

        def plain() -> float:
            began = time.perf_counter()
            pipe(samples.copy(), return_timestamps=True)
            return time.perf_counter() - began

        with EngineManager() as manager:
            spec = ModelSpec(id=folder.name, path=folder, format="hf")
            run_id = manager.start(spec, LaunchOptions(device="cpu"), "transformers")

            def ours() -> float:
                began = time.perf_counter()
                manager.transcribe(run_id, audio)
                return time.perf_counter() - began

            ours(), plain()  # warm-up: first-call allocations, lazy imports
            ours_s: list[float] = []
            plain_s: list[float] = []
            for _ in range(args.repeats):
                ours_s.append(ours())
                plain_s.append(plain())
            chunks = manager.transcribe(run_id, audio).extra.get("chunks")

    ours_rtf = args.seconds / statistics.median(ours_s)
    plain_rtf = args.seconds / statistics.median(plain_s)
    print(f"model: {folder.name if args.model else 'tiny random-weight Whisper (d_model 64, 2+2 layers)'}")
    print(f"audio: {args.seconds:.0f} s, {chunks} windows of 30 s; torch threads {torch.get_num_threads()}")
    print(f"repeats: {args.repeats} (median), after one warm-up each")
    print(f"llm-tui (EngineManager.transcribe): median {statistics.median(ours_s):.3f} s  RTF {ours_rtf:.1f}x")
    print(f"transformers pipeline (chunk 30 s): median {statistics.median(plain_s):.3f} s  RTF {plain_rtf:.1f}x")
    print(f"ratio llm-tui / pipeline RTF: {ours_rtf / plain_rtf:.2f} (target >= 0.95)")


if __name__ == "__main__":
    main()
