"""Cost per streamed chunk of ChatLog as one reply grows to ~20k tokens, against Textual's MarkdownStream.

Headless app at 100x30. One reply of realistic Markdown (headings, paragraphs
with inline code and bold, bullet and numbered lists, fenced Python, tables,
in a repeating mix so every window sees the same kinds of blocks) is streamed
in chunks of 8 words (~10 tokens).

Inside each measured window (about 1,000 tokens of stream around 1k, 5k, 10k
and 20k) every chunk is applied and a frame is produced before the next one:
the worst case, since the real log coalesces to ~30 frames a second. Between
windows the stream is fast-forwarded with one frame every --skip chunks; the
state reached (segments, parked widgets) is the same, only the run is shorter.

A frame is forced in one of two ways (--frame):
- idle (default): wait until the app is idle, then draw (pilot.pause()
  without its first step, which posts a callback to every widget in the DOM
  and waits for all of them: a test-harness cost growing with the DOM, that
  the running app does not pay);
- pilot: Textual's own `pilot.pause()`.
Both include the >= 20 ms idle wait in the wall time.

Prints, per window, the median and mean wall time and CPU time (process time,
all threads: the work itself) per chunk, and the ratio last / first window
(target for ChatLog: <= 1.5). Then the same for one `Markdown` widget fed by
`MarkdownStream` up to ~4k tokens. Medians are the figures to compare: means
include the occasional segment cut and garbage collection, and this machine
is shared.

    python bench/chat_log_render.py [--tokens 20000] [--stream-tokens 4000] [--frame idle|pilot] [--skip 10]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from textual._wait import wait_for_idle
from textual.app import App, ComposeResult
from textual.containers import VerticalScroll
from textual.pilot import Pilot
from textual.widgets import Markdown

from tui.widgets.chat_log import ChatLog

TOKENS_PER_WORD = 4 / 3
WORDS_PER_CHUNK = 8
_VOCABULARY = (
    "the model returns a stream of tokens and each token is appended to the reply while the terminal "
    "keeps drawing frames so we measure how long one frame takes as the text grows cache layer widget "
    "parser block fence quantization context memory thread queue latency"
)
WORDS = _VOCABULARY.split()


def _sentence(rng: random.Random, n: int) -> str:
    words = [rng.choice(WORDS) for _ in range(n)]
    if rng.random() < 0.3:
        i = rng.randrange(n)
        words[i] = f"**{words[i]}**"
    if rng.random() < 0.3:
        i = rng.randrange(n)
        words[i] = f"`{words[i]}()`"
    return " ".join(words).capitalize() + "."


CYCLE = ("heading", "paragraph", "bullets", "paragraph", "code", "paragraph", "numbered", "paragraph", "table", "code")
"""The block kinds of one ~900-token stretch; the reply repeats it, so every window of the
stream sees the same mix (a long fence costs more per chunk than a paragraph)."""


def _block(rng: random.Random, kind: str, step: int) -> str:
    if kind == "heading":
        return f"## Step {step}: {_sentence(rng, 4)}"
    if kind == "paragraph":
        return " ".join(_sentence(rng, rng.randint(10, 18)) for _ in range(4))
    if kind == "bullets":
        return "\n".join(f"- {_sentence(rng, rng.randint(6, 10))}" for _ in range(5))
    if kind == "numbered":
        return "\n".join(f"{i}. {_sentence(rng, rng.randint(6, 10))}" for i in range(1, 6))
    if kind == "code":
        lines = [
            f"def {rng.choice(WORDS)}_{i}(x: int) -> int:\n    return x * {i}  # {rng.choice(WORDS)}" for i in range(8)
        ]
        return "```python\n" + "\n".join(lines) + "\n```"
    rows = "\n".join(f"| {rng.choice(WORDS)} | {rng.randint(1, 99)} | {_sentence(rng, 4)} |" for _ in range(5))
    return "| name | value | note |\n|---|---|---|\n" + rows


def reply_markdown(n_words: int, seed: int = 7) -> str:
    """A long assistant-style reply of about `n_words` words: headings, paragraphs with inline
    code and bold, bullet and numbered lists, fenced Python, tables, in a repeating mix."""
    rng = random.Random(seed)
    blocks: list[str] = []
    count = 0
    while count < n_words:
        kind = CYCLE[len(blocks) % len(CYCLE)]
        blocks.append(_block(rng, kind, len(blocks) + 1))
        count += len(blocks[-1].split())
    return "\n\n".join(blocks) + "\n"


def chunks_of(text: str, words: int = WORDS_PER_CHUNK) -> list[str]:
    """Split `text` into pieces of `words` words, whitespace kept, so they join back to `text`."""
    pieces: list[str] = []
    start = index = seen = 0
    in_word = False
    for index, char in enumerate(text):
        if char.isspace():
            in_word = False
        elif not in_word:
            in_word = True
            if seen == words:
                pieces.append(text[start:index])
                start, seen = index, 0
            seen += 1
    pieces.append(text[start:])
    return [piece for piece in pieces if piece]


@dataclass
class Sample:
    tokens: float
    wall_ms: float
    cpu_ms: float


Window = tuple[str, float, float]


class LogApp(App[None]):
    def compose(self) -> ComposeResult:
        yield ChatLog()


class StreamApp(App[None]):
    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Markdown()


async def idle_frame(pilot: Pilot[None]) -> None:
    """pilot.pause() without its walk over every widget: wait until the app is idle, then draw a frame.

    pause() first posts a callback to every widget in the DOM and waits for all
    of them: a test-harness cost that grows with the number of widgets, which
    the running app does not pay.
    """
    await wait_for_idle(0)
    pilot.app.screen._on_timer_update()


async def pilot_frame(pilot: Pilot[None]) -> None:
    """Textual's own pilot.pause()."""
    await pilot.pause()


FRAMES: dict[str, Callable[[Pilot[None]], Awaitable[None]]] = {"idle": idle_frame, "pilot": pilot_frame}


class Target(Protocol):
    async def push(self, chunk: str) -> None: ...
    async def draw(self) -> None: ...
    async def close(self) -> None: ...


class LogTarget:
    """One streaming reply in a ChatLog; draw() applies the buffered text (the frame timer's job)."""

    def __init__(self, app: App[None]) -> None:
        self.view = app.query_one(ChatLog).start_reply(1, "bench · headless")

    async def push(self, chunk: str) -> None:
        self.view.append(chunk)

    async def draw(self) -> None:
        await self.view.flush()

    async def close(self) -> None:
        self.view.finish("done")


class StreamTarget:
    """One Markdown widget fed by Textual's MarkdownStream (which applies text in its own task)."""

    def __init__(self, app: App[None]) -> None:
        app.query_one(VerticalScroll).anchor()
        self.stream = Markdown.get_stream(app.query_one(Markdown))

    async def push(self, chunk: str) -> None:
        await self.stream.write(chunk)

    async def draw(self) -> None:
        pass

    async def close(self) -> None:
        await self.stream.stop()


async def measure(
    make: Callable[[App[None]], Target],
    app: App[None],
    chunks: list[str],
    windows: list[Window],
    frame: Callable[[Pilot[None]], Awaitable[None]],
    skip: int,
) -> list[Sample]:
    """Stream `chunks`; inside `windows` time each chunk with its frame, elsewhere draw every `skip` chunks."""
    samples: list[Sample] = []
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        target = make(app)
        await pilot.pause()
        words = 0
        for index, chunk in enumerate(chunks):
            words += len(chunk.split())
            tokens = words * TOKENS_PER_WORD
            if any(low <= tokens <= high for _, low, high in windows):
                wall, cpu = time.perf_counter(), time.process_time()
                await target.push(chunk)
                await target.draw()
                await frame(pilot)
                samples.append(Sample(tokens, (time.perf_counter() - wall) * 1e3, (time.process_time() - cpu) * 1e3))
            else:
                await target.push(chunk)
                if index % skip == 0:
                    await target.draw()
                    await frame(pilot)
        await target.close()
        await pilot.pause()
    return samples


def summary(samples: list[Sample]) -> tuple[float, float, float, float]:
    walls = [s.wall_ms for s in samples]
    cpus = [s.cpu_ms for s in samples]
    return statistics.median(walls), statistics.fmean(walls), statistics.median(cpus), statistics.fmean(cpus)


def report(name: str, samples: list[Sample], windows: list[Window]) -> None:
    print(f"\n{name}")
    print(
        f"  {'window':<12}{'chunks':>7}{'wall med':>10}{'wall mean':>11}{'cpu med':>9}{'cpu mean':>10}  (ms per chunk)"
    )
    rows: list[tuple[str, tuple[float, float, float, float]]] = []
    for label, low, high in windows:
        part = [s for s in samples if low <= s.tokens <= high]
        if part:
            rows.append((label, summary(part)))
            row = rows[-1][1]
            print(f"  {label:<12}{len(part):>7}{row[0]:>10.1f}{row[1]:>11.1f}{row[2]:>9.1f}{row[3]:>10.1f}")
    if len(rows) >= 2:
        (first_label, first), (last_label, last) = rows[0], rows[-1]
        ratios = ", ".join(
            f"{name} {last[i] / first[i]:.2f}"
            for i, name in enumerate(("wall median", "wall mean", "cpu median", "cpu mean"))
        )
        print(f"  ratio {last_label} / {first_label}: {ratios}")


def windows_for(top: int) -> list[Window]:
    """About 1,000 tokens of stream around 1k, then around a few points up to `top`."""
    points = [p for p in (5000, 10000) if p + 500 < top - 1000]
    return [
        ("~1k", 500, 1500),
        *((f"~{p // 1000}k", p - 500, p + 500) for p in points),
        (f"~{top / 1000:g}k", top - 1000, top),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=20000, help="length of the ChatLog reply")
    parser.add_argument("--stream-tokens", type=int, default=4000, help="length of the MarkdownStream reply (0: skip)")
    parser.add_argument(
        "--frame", choices=sorted(FRAMES), default="idle", help="how a frame is forced (see idle_frame)"
    )
    parser.add_argument("--skip", type=int, default=10, help="outside the windows, draw once every N chunks")
    args = parser.parse_args()
    frame = FRAMES[args.frame]

    text = reply_markdown(int(args.tokens / TOKENS_PER_WORD))
    chunks = chunks_of(text)
    assert "".join(chunks) == text
    print(f"reply: {len(text)} chars, {len(text.split())} words (~{args.tokens} tokens), {len(chunks)} chunks")
    print(f"frame: {args.frame}; outside the measured windows one frame every {args.skip} chunks")

    windows = windows_for(args.tokens)
    started = time.perf_counter()
    samples = asyncio.run(measure(LogTarget, LogApp(), chunks, windows, frame, args.skip))
    report(f"ChatLog ({time.perf_counter() - started:.0f} s)", samples, windows)

    if args.stream_tokens:
        stream_chunks = chunks_of(reply_markdown(int(args.stream_tokens / TOKENS_PER_WORD)))
        windows = windows_for(args.stream_tokens)
        started = time.perf_counter()
        samples = asyncio.run(measure(StreamTarget, StreamApp(), stream_chunks, windows, frame, args.skip))
        report(f"Textual MarkdownStream ({time.perf_counter() - started:.0f} s)", samples, windows)


if __name__ == "__main__":
    main()
