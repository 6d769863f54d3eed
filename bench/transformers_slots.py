"""Concurrent requests on the transformers engine: batched (`parallel` = N) against one at a time, one process run.

N greedy chat requests (different prompts, no stop text, so every reply runs to max_tokens) are submitted together
to an instance of the same converted Gemma 3 270M, once launched with `parallel` 1 (they queue) and once with
`parallel` N (one batch, one forward pass per step). Aggregate tok/s = completion tokens of all replies / wall time
from the first submit to the last reply; each side's best of `--rounds`. Also says whether every batched reply is
the text the same request gets alone. Prints one JSON line; nothing is asserted.

    python bench/transformers_slots.py [--requests 4] [--max-tokens 64] [--rounds 2] [--threads 2]

Measured on the 2-core CPU dev VM (float32, 4 requests x 64 tokens): one at a time 13.8 tok/s, batched 35.0 tok/s,
ratio 2.55, every batched reply identical to its lone one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.transformers_decode import default_model
from engines.adapters.transformers_engine import TransformersEngine
from engines.manager import EngineManager
from engines.templates.chat import load_builtin_template
from engines.types import ChatMessage, LaunchOptions, ModelSpec, Params

TOPICS = ("a dragon", "the sea", "dogs", "a cat", "the moon", "trains", "bread", "rain")


def run(spec: ModelSpec, options: LaunchOptions, prompts: list[str], params: Params) -> tuple[float, list[str]]:
    with EngineManager() as manager:
        run_id = manager.start(spec, options, TransformersEngine())
        manager.submit(run_id, [ChatMessage("user", "Hi")], replace(params, max_tokens=2)).result()  # warm-up
        began = time.perf_counter()
        handles = [manager.submit(run_id, [ChatMessage("user", p)], params) for p in prompts]
        results = [h.result() for h in handles]
        elapsed = time.perf_counter() - began
    tokens = sum(r.done.usage.completion_tokens for r in results if r.done is not None)
    return tokens / elapsed, [r.text for r in results]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    spec = ModelSpec(
        id="gemma-3-270m",
        path=default_model(),
        format="gguf",
        chat_template=load_builtin_template("base-qa"),
        engines=("transformers",),
    )
    prompts = [f"Write a long story about {TOPICS[i % len(TOPICS)]}." for i in range(args.requests)]
    params = Params(temperature=0, max_tokens=args.max_tokens)
    figures: dict[int, float] = {}
    texts: dict[int, list[str]] = {}
    for parallel in (1, args.requests):
        options = LaunchOptions(n_ctx=1024, n_threads=args.threads, parallel=parallel)
        best = max((run(spec, options, prompts, params) for _ in range(args.rounds)), key=lambda r: r[0])
        figures[parallel], texts[parallel] = best
        print(f"parallel {parallel}: {best[0]:.1f} tok/s aggregate", flush=True)
    ratio = figures[args.requests] / figures[1]
    same = texts[1] == texts[args.requests]
    print(
        json.dumps(
            {
                "one_at_a_time_tps": round(figures[1], 1),
                "batched_tps": round(figures[args.requests], 1),
                "ratio": round(ratio, 3),
                "identical": same,
                "requests": args.requests,
            }
        )
    )


if __name__ == "__main__":
    main()
