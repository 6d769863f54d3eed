"""EngineManager + transformers adapter vs raw `model.generate()` with a TextIteratorStreamer, in one process run.

Both paths use the same loaded model, prompt tokens, greedy decoding and max tokens; rounds
alternate between the two so drift in machine load hits both alike. Decode tokens/s is timed
from the first visible text to the last, over the tokens generated after the first one.
Prints both figures and the ratio managed/raw (target >= 0.97), as the median of the per-round ratios
and as the ratio of the medians. Nothing is asserted.

The first run converts the GGUF once into the cache dir (about a minute for Gemma 3 270M on two cores).

    python bench/transformers_decode.py [--rounds 5] [--max-tokens 64] [--threads 2] [--model PATH] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.managed_run import run_managed
from engines.adapters.transformers_engine import TransformersEngine
from engines.catalog.resolve import resolve_model
from engines.manager import EngineManager
from engines.types import ChatMessage, LaunchOptions, ModelSpec

PROMPT = "Round {i}. Write a long story about a dragon who learns to bake bread. Use many paragraphs."


def default_model() -> Path:
    import platformdirs

    spec = resolve_model("gemma-3-270m", models_dir=Path(platformdirs.user_cache_dir("llm-tui-tests")))
    assert spec.path is not None
    return spec.path


def run_raw(engine: TransformersEngine, tokens: list[int], max_tokens: int) -> tuple[float, float, int]:
    """TTFT (ms) and decode tokens/s of transformers' own generate() streaming through a TextIteratorStreamer."""
    import torch
    import transformers

    model: Any = engine.model
    streamer = transformers.TextIteratorStreamer(engine.tokenizer, skip_prompt=True, skip_special_tokens=True)
    input_ids = torch.tensor([tokens], dtype=torch.long, device=model.device)
    result: dict[str, Any] = {}

    def generate() -> None:
        result["out"] = model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            streamer=streamer,
            max_new_tokens=max_tokens,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            pad_token_id=engine.tokenizer.pad_token_id,
        )

    t0 = time.perf_counter()
    first = last = 0.0
    thread = threading.Thread(target=generate)
    thread.start()
    for text in streamer:
        now = time.perf_counter()
        # The adapter does not show a reply's leading blanks, so both sides time the first visible text.
        if first == 0.0 and text.strip():
            first = now
        if first:
            last = now
    thread.join()
    n = int(result["out"].shape[1]) - len(tokens)
    if n != max_tokens:
        raise SystemExit(f"raw run generated {n} of {max_tokens} tokens; choose a prompt that fills max_tokens")
    return (first - t0) * 1000, (n - 1) / (last - first), n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--model", type=Path, help="a GGUF file or a Hugging Face folder (default: Gemma 3 270M)")
    parser.add_argument("--cache-dir", type=Path, help="where GGUF conversions live (default: the user cache)")
    args = parser.parse_args()

    model = args.model or default_model()
    if model.is_dir():
        spec = ModelSpec(id=model.name, path=model, format="hf", engines=("transformers",))
    else:
        spec = resolve_model(str(model), models_dir=model.parent)
    # No stop sequences: both paths must run to max_tokens.
    spec = ModelSpec(
        id=spec.id, path=spec.path, format=spec.format, chat_template=spec.chat_template, engines=("transformers",)
    )
    options = LaunchOptions(n_ctx=args.n_ctx, n_threads=args.threads, device=args.device, dtype=args.dtype)
    engine = TransformersEngine(cache_dir=args.cache_dir, progress=lambda line: print(f"[load] {line}", flush=True))

    raw_ttft: list[float] = []
    raw_tps: list[float] = []
    our_ttft: list[float] = []
    our_tps: list[float] = []
    with EngineManager() as manager:
        t0 = time.perf_counter()
        run_id = manager.start(spec, options, engine)
        print(f"loaded in {time.perf_counter() - t0:.1f} s from {engine.model_dir}")
        tokens: list[int] = []
        for i in range(args.rounds + 1):
            messages = [ChatMessage("user", PROMPT.format(i=i))]
            tokens = engine.tokenize_prompt(messages)
            r = run_raw(engine, tokens, args.max_tokens)
            o = run_managed(manager, run_id, messages, args.max_tokens)
            if i == 0:
                continue  # warm-up round: allocator, thread pools, page cache
            raw_ttft.append(r[0])
            raw_tps.append(r[1])
            our_ttft.append(o[0])
            our_tps.append(o[1])
            print(
                f"round {i}: raw ttft {r[0]:7.1f} ms {r[1]:6.2f} tok/s | managed ttft {o[0]:7.1f} ms {o[1]:6.2f} tok/s",
                flush=True,
            )

    ratio = statistics.median(our_tps) / statistics.median(raw_tps)
    # Rounds are paired (same prompt, back to back), so the median of the per-round ratios cancels most of
    # the machine's drift; the ratio of the two medians is shown too.
    paired = statistics.median(o / r for o, r in zip(our_tps, raw_tps, strict=True))
    setup = f"{len(tokens)} prompt tokens, {args.max_tokens} generated, {args.threads} threads, {args.device}"
    print(f"model {model.name}, {setup}")
    print(f"decode tok/s: raw generate() {statistics.median(raw_tps):.2f}, managed {statistics.median(our_tps):.2f}")
    print(f"decode ratio managed/raw, median of paired rounds = {paired:.3f} (target >= 0.97: {_verdict(paired)})")
    print(f"decode ratio of the medians = {ratio:.3f} (target >= 0.97: {_verdict(ratio)})")
    print(f"TTFT: raw {statistics.median(raw_ttft):.1f} ms, managed {statistics.median(our_ttft):.1f} ms")


def _verdict(ratio: float) -> str:
    return "met" if ratio >= 0.97 else "NOT met"


if __name__ == "__main__":
    main()
