"""Keypress-to-screen latency while a fast fake engine streams a long reply.

Headless app at 100×30; a FakeEngine streams a long Markdown reply as fast
as it can while keys are typed into the prompt. Each sample is the time from
posting a key to the app having processed it and painted the next frame
(Pilot.press returns after the app is idle again). Target: p99 < 50 ms.
For reference the same keys are timed with no reply streaming.

    python bench/tui_latency.py [--keys 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engines.adapters.fake import FakeEngine
from engines.config import load_config
from tui.app import LlmTuiApp
from tui.runtime import Runtime
from tui.screens.chat import ChatScreen
from tui.widgets.prompt import PromptInput

PARAGRAPH = "The quick brown fox jumps over the lazy dog while **streaming** tokens arrive. " * 3
REPLY = "\n\n".join([PARAGRAPH if i % 5 else f"```python\ndef f{i}(x):\n    return x * {i}\n```" for i in range(400)])


async def measure(keys: int, streaming: bool, folder: Path) -> list[float]:
    """Milliseconds per key press."""
    config = load_config(env={"LLM_TUI_DATA_DIR": str(folder / ("s" if streaming else "q"))}, cwd=folder)
    engine = FakeEngine(reply=REPLY, token_delay_s=0.0005)
    model = folder / "fake.gguf"
    model.write_bytes(b"GGUF")
    runtime = Runtime(config, engine_choice=lambda ref: engine)
    app = LlmTuiApp(runtime, model=str(model))
    samples: list[float] = []
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            while runtime.active is None or "ready" not in app.status_text:
                await pilot.pause(0.05)
            screen = app.screen
            assert isinstance(screen, ChatScreen)
            prompt = screen.query_one(PromptInput)
            if streaming:
                prompt.focus()
                await pilot.press(*"go", "enter")
                while screen.turn is None:
                    await pilot.pause(0.01)
            prompt.focus()
            for i in range(keys):
                if streaming and screen.turn is None:
                    break  # the reply ended: only count keys typed while it streamed
                t0 = time.perf_counter()
                await pilot.press("abcdefghij"[i % 10])
                samples.append((time.perf_counter() - t0) * 1000)
            if screen.turn is not None:
                screen.turn.handle.cancel()
    finally:
        runtime.close()
    return samples


def report(label: str, samples: list[float]) -> float:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    p50 = statistics.median(samples)
    print(f"{label}: n={len(samples)} p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {ordered[-1]:.1f} ms")
    return p99


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        quiet = asyncio.run(measure(args.keys, False, Path(tmp)))
        busy = asyncio.run(measure(args.keys, True, Path(tmp)))
    report("idle app      ", quiet)
    p99 = report("while streaming", busy)
    print(f"p99 while streaming = {p99:.1f} ms (target < 50 ms: {'met' if p99 < 50 else 'NOT met'})")


if __name__ == "__main__":
    main()
