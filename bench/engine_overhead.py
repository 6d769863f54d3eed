"""EngineManager + llama.cpp adapter vs raw llama-cpp-python streaming, in one process run.

Same model, prompt tokens, sampling and threads on both paths; rounds
alternate between the two so drift in machine load hits both alike.
Prints the decode tokens/s ratio (target >= 0.97) and the TTFT difference
(target < 5 ms).

    python bench/engine_overhead.py [--rounds 5] [--max-tokens 128] [--threads 2] [--model PATH]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.managed_run import run_managed
from engines.adapters.llama_cpp import LlamaCppEngine
from engines.catalog.resolve import resolve_model
from engines.manager import EngineManager
from engines.types import ChatMessage, LaunchOptions

PROMPT = "Round {i}. Write a long story about a dragon who learns to bake bread. Use many paragraphs."


def default_model() -> Path:
    import platformdirs

    spec = resolve_model("gemma-3-270m", models_dir=Path(platformdirs.user_cache_dir("llm-tui-tests")))
    assert spec.path is not None
    return spec.path


def run_raw(llm: object, tokens: list[int], max_tokens: int) -> tuple[float, float, int]:
    """TTFT (ms) and decode tokens/s of llama-cpp-python's own streaming completion."""
    t0 = time.perf_counter()
    first = last = 0.0
    finish = None
    stream = llm.create_completion(tokens, max_tokens=max_tokens, temperature=0.0, stream=True)  # type: ignore[attr-defined]
    for chunk in stream:
        now = time.perf_counter()
        # The adapter does not show a reply's leading blank lines, so both sides
        # time the first visible text.
        if first == 0.0 and chunk["choices"][0]["text"].strip():
            first = now
        last = now
        finish = chunk["choices"][0]["finish_reason"] or finish
    if finish != "length":
        raise SystemExit(f"raw run ended with finish_reason={finish!r}; choose a prompt that fills max_tokens")
    return (first - t0) * 1000, (max_tokens - 1) / (last - first), max_tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--model", type=Path)
    args = parser.parse_args()

    import llama_cpp

    model = args.model or default_model()
    spec = resolve_model(str(model), models_dir=model.parent)
    options = LaunchOptions(n_ctx=args.n_ctx, n_threads=args.threads)
    engine = LlamaCppEngine(selftest=False)
    raw = llama_cpp.Llama(
        str(model), n_ctx=args.n_ctx, n_threads=args.threads, n_threads_batch=args.threads, verbose=False
    )

    raw_ttft: list[float] = []
    raw_tps: list[float] = []
    our_ttft: list[float] = []
    our_tps: list[float] = []
    with EngineManager() as manager:
        run_id = manager.start(spec, options, engine)
        for i in range(args.rounds + 1):
            messages = [ChatMessage("user", PROMPT.format(i=i))]
            tokens = engine.tokenize_prompt(messages)
            r = run_raw(raw, tokens, args.max_tokens)
            o = run_managed(manager, run_id, messages, args.max_tokens)
            if i == 0:
                continue  # warm-up round: page cache, allocator, thread pools
            raw_ttft.append(r[0])
            raw_tps.append(r[1])
            our_ttft.append(o[0])
            our_tps.append(o[1])
            print(
                f"round {i}: raw ttft {r[0]:7.1f} ms {r[1]:6.1f} tok/s | managed ttft {o[0]:7.1f} ms {o[1]:6.1f} tok/s"
            )
        prompt_tokens = len(tokens)

    ratio = statistics.median(our_tps) / statistics.median(raw_tps)
    # Rounds are paired (same prompt, back to back), so the median of the
    # per-round differences cancels most of the machine's drift.
    ttft_diff = statistics.median(o - r for o, r in zip(our_ttft, raw_ttft, strict=True))
    print(f"model {model.name}, {prompt_tokens} prompt tokens, {args.max_tokens} generated, {args.threads} threads")
    print(f"decode tok/s: raw {statistics.median(raw_tps):.2f}, managed {statistics.median(our_tps):.2f}")
    print(f"decode ratio managed/raw = {ratio:.3f} (target >= 0.97: {'met' if ratio >= 0.97 else 'NOT met'})")
    print(f"TTFT: raw {statistics.median(raw_ttft):.1f} ms, managed {statistics.median(our_ttft):.1f} ms")
    verdict = "met" if ttft_diff < 5 else "NOT met"
    print(f"TTFT overhead (median of paired differences) = {ttft_diff:+.1f} ms (target < 5 ms: {verdict})")


if __name__ == "__main__":
    main()
