"""Keypress-to-screen latency while a fast fake engine streams a long reply.

Headless app at 100×30; a FakeEngine streams a long Markdown reply as fast
as it can (~2,000 tokens/s, --tokens-per-s) while keys are typed into the
prompt every 40 ms (--typing-ms). Each key goes in through the driver, as a terminal's would; a sample is
the time from then until the end of the first screen refresh after the
prompt holds the character (a `call_after_refresh` callback). Target: p99 <
50 ms. For reference the same keys are timed with no reply streaming.

Not `Pilot.press`: it waits until the whole process is idle (CPU time of
every thread, for up to a second, twice), which never happens while an engine
thread streams, so it measured its own timeout (~2 s), not the app.

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

from textual import events
from textual.app import App

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engines.adapters.fake import FakeEngine
from engines.config.load import load_config
from tui.app import LlmTuiApp
from tui.runtime import Runtime
from tui.screens.chat import ChatScreen
from tui.widgets.prompt import PromptInput

PARAGRAPH = "The quick brown fox jumps over the lazy dog while **streaming** tokens arrive. " * 3
POLL_S = 0.001
REPLY = "\n\n".join([PARAGRAPH if i % 5 else f"```python\ndef f{i}(x):\n    return x * {i}\n```" for i in range(400)])


async def measure(
    keys: int, streaming: bool, folder: Path, tokens_per_s: float = 2000, typing_interval_s: float = 0.04
) -> list[float]:
    """Milliseconds per key press."""
    config = load_config(env={"LLM_TUI_DATA_DIR": str(folder / ("s" if streaming else "q"))}, cwd=folder)
    engine = FakeEngine(reply=REPLY, token_delay_s=1 / tokens_per_s)
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
            await pilot.pause()
            for i in range(keys):
                if streaming and screen.turn is None:
                    break  # the reply ended: only count keys typed while it streamed
                samples.append(await key_to_frame(app, prompt, "abcdefghij"[i % 10]))
                await asyncio.sleep(typing_interval_s)
            if screen.turn is not None:
                screen.turn.handle.cancel()
    finally:
        runtime.close()
    return samples


async def key_to_frame(app: App[None], prompt: PromptInput, char: str) -> float:
    """Milliseconds from a key entering the driver to the refresh that shows it in the prompt."""
    driver = app._driver
    assert driver is not None
    before = prompt.text.count(char)
    loop = asyncio.get_running_loop()
    painted: asyncio.Future[float] = loop.create_future()
    t0 = time.perf_counter()
    key = events.Key(char, char)
    key.set_sender(app)
    driver.send_message(key)
    while prompt.text.count(char) == before:
        await asyncio.sleep(POLL_S)
    app.screen.call_after_refresh(lambda: painted.done() or painted.set_result(time.perf_counter()))
    return (await painted - t0) * 1000


def report(label: str, samples: list[float]) -> float:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    p50 = statistics.median(samples)
    print(f"{label}: n={len(samples)} p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {ordered[-1]:.1f} ms")
    return p99


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=200)
    parser.add_argument("--tokens-per-s", type=float, default=2000, help="how fast the fake engine streams")
    parser.add_argument("--typing-ms", type=float, default=40, help="pause between key presses")
    args = parser.parse_args()
    gap = args.typing_ms / 1000
    with tempfile.TemporaryDirectory() as tmp:
        quiet = asyncio.run(measure(args.keys, False, Path(tmp), typing_interval_s=gap))
        busy = asyncio.run(measure(args.keys, True, Path(tmp), args.tokens_per_s, gap))
    print(f"keys every {args.typing_ms:g} ms; fake engine at {args.tokens_per_s:g} tokens/s")
    report("idle app      ", quiet)
    p99 = report("while streaming", busy)
    print(f"p99 while streaming = {p99:.1f} ms (target < 50 ms: {'met' if p99 < 50 else 'NOT met'})")


if __name__ == "__main__":
    main()
