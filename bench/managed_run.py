"""One request through the EngineManager, timed as its caller sees it (shared by the engine benches)."""

from __future__ import annotations

import time

from engines.manager import EngineManager
from engines.types import ChatMessage, Delta, Done, Params


def run_managed(
    manager: EngineManager, run_id: str, messages: list[ChatMessage], max_tokens: int
) -> tuple[float, float, int]:
    """TTFT (ms), decode tokens/s (first delta to Done, over the tokens after the first) and tokens generated."""
    t0 = time.perf_counter()
    first = last = 0.0
    done: Done | None = None
    for event in manager.submit(run_id, messages, Params(temperature=0.0, max_tokens=max_tokens)):
        now = time.perf_counter()
        if isinstance(event, Delta):
            if first == 0.0:
                first = now
            last = now
        elif isinstance(event, Done):
            done = event
            last = now
    if done is None or done.finish_reason != "length":
        raise SystemExit(f"managed run did not fill max_tokens: {done}")
    n = done.usage.completion_tokens
    return (first - t0) * 1000, (n - 1) / (last - first), n
