"""How long one abandoned embedding request keeps a served model busy (issue 18, item 10).

Against a running `llm-tui serve` (no key, loopback): sends N words to /v1/embeddings, hangs up after
--leave seconds, then at once asks a streamed chat completion and times its first token. Also reports
what the embeddings route answers for the same text (400 context_length_exceeded once input is checked)
and how long the server took for a text that fits.

Usage: python bench/embed_stall.py --url http://127.0.0.1:PORT --model gemma-3-270m [--words 2600] [--leave 3]
"""

from __future__ import annotations

import argparse
import json
import time

import httpx


def words(n: int, salt: str = "") -> str:
    """N distinct-looking words (a repeated sentence would tokenize very differently from prose)."""
    vocab = ["river", "stone", "light", "window", "market", "winter", "garden", "letter", "music", "paper"]
    return " ".join(f"{vocab[(i * 7 + len(salt)) % len(vocab)]}{salt if i % 50 == 0 else ''}" for i in range(n))


def first_token_s(url: str, model: str) -> float:
    """Seconds until a streamed chat request's first content chunk."""
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "stream": True}
    began = time.perf_counter()
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=120) as reply:
        for line in reply.iter_lines():
            if line.startswith("data: ") and '"content"' in line:
                return time.perf_counter() - began
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--words", type=int, default=2600)
    parser.add_argument("--leave", type=float, default=3.0)
    parser.add_argument("--texts", type=int, default=1, help="send the words split into this many texts")
    args = parser.parse_args()
    per = args.words // args.texts
    texts = [words(per, salt=str(i)) for i in range(args.texts)]
    body = {"model": args.model, "input": texts if args.texts > 1 else texts[0]}
    began = time.perf_counter()
    answer = "hung up"
    try:
        reply = httpx.post(f"{args.url}/v1/embeddings", json=body, timeout=args.leave)
        answer = f"{reply.status_code} {json.dumps(reply.json())[:300]}"
    except httpx.TimeoutException:
        pass
    left = time.perf_counter() - began
    ttft = first_token_s(args.url, args.model)
    print(f"embeddings ({args.words} words in {args.texts} texts): {answer} after {left:.1f} s")
    print(f"chat first token right after: {ttft:.1f} s")


if __name__ == "__main__":
    main()
