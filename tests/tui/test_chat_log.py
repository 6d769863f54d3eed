"""ChatLog: streaming into frozen segments, parking, virtualised history, following the bottom, selection."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Awaitable, Callable, Iterator

import pytest
from textual._compositor import Compositor
from textual.app import App, ComposeResult
from textual.geometry import Region, Size
from textual.pilot import Pilot
from textual.screen import Screen
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets.markdown import MarkdownBlock, MarkdownFence

from tui.widgets import message_view
from tui.widgets.chat_log import ChatLog
from tui.widgets.log_message import LogMessage, fenced_code_blocks
from tui.widgets.message_view import MessageView
from tui.widgets.segment import Segment
from tui.widgets.segmenter import FENCE_LINES, Piece, Segmenter, split_markdown

PARAGRAPH = (
    "The model streams its answer a few tokens at a time, and the log must keep up without redrawing "
    "what it has already drawn. Here is `inline()` code and **bold** text."
)


def reply_text(blocks: int, seed: int = 3) -> str:
    """An assistant-like reply: headings, paragraphs, lists, fenced code, in a fixed mix."""
    rng = random.Random(seed)
    out: list[str] = []
    for i in range(blocks):
        kind = i % 6
        if kind == 0:
            out.append(f"## Part {i}")
        elif kind in (1, 4):
            out.append(" ".join(PARAGRAPH.split()[: rng.randint(12, 30)]) + ".")
        elif kind == 2:
            out.append("\n".join(f"- item {i}.{n} {PARAGRAPH[: rng.randint(10, 60)]}" for n in range(4)))
        elif kind == 3:
            body = "\n".join(f"    return x * {n}  # line {n}" for n in range(rng.randint(3, 9)))
            out.append(f"```python\ndef f_{i}(x):\n{body}\n```")
        else:
            out.append("\n".join(f"{n}. step {n} of {i}" for n in range(1, 4)))
    return "\n\n".join(out) + "\n"


def pieces_of(text: str, sizes: list[int], seed: int = 0) -> Iterator[str]:
    """`text` cut into chunks of sizes drawn from `sizes`."""
    rng = random.Random(seed)
    pos = 0
    while pos < len(text):
        size = rng.choice(sizes)
        yield text[pos : pos + size]
        pos += size


def strip_synthetic(pieces: list[Piece]) -> str:
    """Join pieces back into the original text by removing the fences the segmenter added."""
    out = []
    for piece in pieces:
        text = piece.markdown
        if piece.split_before:
            text = text.split("\n", 1)[1]
        if piece.split_after:
            text = text[: text.rstrip("\n").rfind("\n") + 1]
        out.append(text)
    return "".join(out)


def shown(segment: Segment) -> bool:
    """Whether a segment draws its text (from its blocks or its static lines), not a parked blank."""
    return not segment.parked and (segment.static or bool(segment.query(MarkdownBlock)))


def rendered(segment: Segment) -> list[tuple[str, str]]:
    """What a segment shows: each Markdown block's kind and text."""
    out = []
    for block in segment.query(MarkdownBlock):
        text = block.code if isinstance(block, MarkdownFence) else block._content.plain
        kind = next(cls for cls in type(block).__mro__ if cls.__module__.startswith("textual."))
        out.append((kind.__name__, text))  # a tail's blocks are Textual's, updated in place
    return out


class LogApp(App[None]):
    def __init__(self) -> None:
        super().__init__()
        self.selections: list[ChatLog.Selected] = []
        self.ended: list[tuple[str, str, str, str]] = []
        """Each ReplyEnded heard: status, footer, error, and what its view showed then ("status:text")."""
        self.last_input_at = 0.0  # as LlmTuiApp keeps it: streaming frames yield to typing

    def compose(self) -> ComposeResult:
        yield ChatLog()

    def on_chat_log_selected(self, event: ChatLog.Selected) -> None:
        self.selections.append(event)

    def on_chat_log_reply_ended(self, event: ChatLog.ReplyEnded) -> None:
        view = self.query_one(ChatLog).reply(event.key)
        shown = f"{view.status}:{view.text}" if view is not None else "no view"
        self.ended.append((event.status, event.footer, event.error, shown))


def run(test: Callable[[LogApp, ChatLog, Pilot[None]], Awaitable[None]], size: tuple[int, int] = (80, 24)) -> None:
    """Run `test` inside a headless LogApp."""

    async def main() -> None:
        app = LogApp()
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            await test(app, app.query_one(ChatLog), pilot)

    asyncio.run(main())


async def stream(view: MessageView, text: str, pilot: Pilot[None], sizes: list[int] | None = None) -> None:
    """Append `text` in small pieces, drawing after each (as frames would)."""
    for chunk in pieces_of(text, sizes or [2, 9, 30, 80]):
        view.append(chunk)
        await view.flush()
    await pilot.pause()


async def settle(pilot: Pilot[None]) -> None:
    await pilot.pause()
    await pilot.wait_for_scheduled_animations()
    await pilot.pause()


async def until(pilot: Pilot[None], condition: Callable[[], object], what: str) -> None:
    """Let the app run frame by frame until `condition` holds (parking settles over a few layouts)."""
    for _ in range(40):
        if condition():
            return
        await settle(pilot)
    raise AssertionError(f"never happened: {what}")


# -- the segmenter ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sizes", [[1], [3, 17, 40], [200, 1000], [7]])
def test_segments_do_not_depend_on_chunking(sizes: list[int]) -> None:
    text = reply_text(60) + "```sh\n" + "".join(f"echo {n}\n" for n in range(130)) + "```\n\nAfter the fence.\n"
    whole = split_markdown(text)
    segmenter = Segmenter()
    streamed: list[Piece] = []
    for chunk in pieces_of(text, sizes):
        streamed += segmenter.feed(chunk)
    streamed.append(segmenter.finish())
    assert streamed == whole
    assert len(whole) > 5
    assert strip_synthetic(whole) == text
    assert all(len(piece.markdown) < 6000 for piece in whole)


def test_cuts_only_between_blocks() -> None:
    text = "Intro paragraph\nstill the intro.\n\n- a\n\n- b\n- c\n\n    indented code\n\n    more code\n\nEnd.\n"
    pieces = split_markdown(text, segment_chars=1)
    assert [p.markdown for p in pieces] == [
        "Intro paragraph\nstill the intro.\n\n",
        "- a\n\n- b\n- c\n\n    indented code\n\n    more code\n\n",
        "End.\n",
    ]


def test_open_fence_is_split_into_code_pieces() -> None:
    code = "".join(f"x = {n}\n" for n in range(2 * FENCE_LINES + 5))
    pieces = split_markdown("Look:\n\n```python\n" + code, segment_chars=1)
    fence_pieces = [p for p in pieces if "x = " in p.markdown]
    assert len(fence_pieces) == 3
    assert fence_pieces[0].split_after and not fence_pieces[0].split_before
    assert fence_pieces[1].split_before and fence_pieces[1].split_after
    assert fence_pieces[2].split_before and not fence_pieces[2].split_after
    for piece in fence_pieces:
        assert fenced_code_blocks(piece.markdown), piece.markdown[:80]
    assert "\n".join(block for p in fence_pieces for block in fenced_code_blocks(p.markdown)) == code.rstrip("\n")


# -- streaming ------------------------------------------------------------------------------------------------


def test_streamed_reply_renders_like_a_loaded_one(monkeypatch: pytest.MonkeyPatch) -> None:
    text = reply_text(40)
    late_updates: list[Segment] = []
    for name in ("append", "update"):
        original = getattr(Segment, name)

        def spy(self: Segment, markdown: str, _original: Callable[..., object] = original) -> object:
            if self.frozen and self.ready:  # drawn before, and no more text was to come
                late_updates.append(self)
            return _original(self, markdown)

        monkeypatch.setattr(Segment, name, spy)
    # Compare every block: keep far segments built (parking has its own test) and keep their
    # blocks (drawing them into static lines has its own test).
    monkeypatch.setattr(ChatLog, "_update_parking", lambda self: None)
    monkeypatch.setattr(Segment, "_schedule_capture", lambda self: None)

    async def test(app: LogApp, log: ChatLog, pilot: Pilot[None]) -> None:
        live = log.start_reply("r1", header="gemma-3-270m · llama.cpp")
        await pilot.pause()
        await stream(live, text, pilot)
        live.finish(footer="TTFT 71 ms · 48.2 tok/s · 13→32 tokens")
        loaded = log.add_message(LogMessage("r2", "assistant", text, header="gemma-3-270m · llama.cpp"))
        await settle(pilot)

        assert live.text == loaded.text == text
        assert live.pieces() == loaded.pieces() == split_markdown(text)
        assert len(live.segments()) > 3
        assert [rendered(s) for s in live.segments()] == [rendered(s) for s in loaded.segments()]
        assert not late_updates, "a frozen segment was drawn again"
        assert all(segment.frozen for segment in live.segments())
        assert live.code_blocks() == fenced_code_blocks(text) and len(live.code_blocks()) == 7

    run(test, size=(100, 40))


def screen_lines(app: App[None]) -> list[str]:
    """The whole screen as terminal text with colours (what a user sees)."""
    compositor = app.screen._compositor
    return [strip.render(app.console) for strip in compositor.render_strips(compositor.size)]


def picture(view: MessageView) -> list[str]:
    """Every line of a message's segments, on screen or not, with colours."""
    return [strip.render(view.app.console) for segment in view.segments() for strip in segment.picture()]


def test_a_long_stream_draws_what_a_fresh_render_of_its_markdown_draws() -> None:
    """Streamed into a live tail, frozen and drawn into static lines: the same picture as the whole text loaded."""
    text = reply_text(48)

    async def test(app: LogApp, log: ChatLog, pilot: Pilot[None]) -> None:
        live = log.start_reply("r1", header="m")
        await pilot.pause()
        await stream(live, text, pilot, sizes=[3, 11, 40])
        live.finish()
        await settle(pilot)
        await until(pilot, lambda: all(s.static for s in live.segments()), "the streamed message is drawn")
        streamed, streamed_pieces = picture(live), live.pieces()
        log.load([LogMessage("r2", "assistant", text, header="m")])
        await settle(pilot)
        fresh = log.view_at(0)
        assert fresh is not None
        await until(pilot, lambda: all(s.static for s in fresh.segments()), "the loaded message is drawn")
        assert len(fresh.segments()) > 3
        assert streamed_pieces == fresh.pieces()
        assert streamed == picture(fresh)
        shown_text = "\n".join(strip.text for segment in fresh.segments() for strip in segment.picture())
        assert shown_text.count("def f_") == text.count("def f_") and "step 3 of 47" in shown_text

    # Keep far segments drawn: parking has its own test.
    run(test, size=(100, 200))


def test_frozen_segments_are_drawn_once_and_keep_no_widgets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once frozen, a segment is drawn into strips once; later frames never draw its blocks again."""
    block_renders: list[Segment] = []
    original = MarkdownBlock.render_lines

    def spy(self: MarkdownBlock, crop: Region) -> list[Strip]:
        segment = self.query_ancestor(Segment)
        if segment.frozen and segment.captures:
            block_renders.append(segment)
        return original(self, crop)

    monkeypatch.setattr(MarkdownBlock, "render_lines", spy)

    async def test(app: LogApp, log: ChatLog, pilot: Pilot[None]) -> None:
        view = log.start_reply(1)
        await pilot.pause()
        await stream(view, reply_text(50), pilot, sizes=[5, 20])

        def drawn_at_the_final_width() -> bool:
            """Static, and drawn at the width the log has once its scrollbar shows: on a busy machine the scrollbar
            can arrive after the first drawing, and the new width draws the segments again, once."""
            overflows = log.virtual_size.height > log.size.height
            segments = view.segments()[:-1]
            drawn = all(s.static and s._strips_key == s._lines_key() and not s._rebuilding for s in segments)
            return overflows == log.show_vertical_scrollbar and drawn

        await until(pilot, drawn_at_the_final_width, "frozen segments are static at the final width")
        frozen = view.segments()[:-1]
        assert len(frozen) >= 3
        assert all(s.captures and not s.children for s in frozen)
        captures = [s.captures for s in frozen]
        block_renders.clear()
        await stream(view, reply_text(12, seed=9), pilot, sizes=[5, 20])
        view.finish()
        await settle(pilot)
        assert [s.captures for s in frozen] == captures, "a frozen segment was drawn again"
        assert not block_renders, "the blocks of a drawn segment were rendered again"

    run(test, size=(100, 200))  # nothing parked: parking has its own test


@pytest.mark.parametrize("state", ["plain", "selected", "unfocused"])
def test_static_lines_look_like_the_blocks_they_replace(state: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Static lines are drawn over what is beneath them now: selecting or unfocusing redraws them to match."""
    text = reply_text(12)

    async def shot(capture: bool) -> list[str]:
        if not capture:
            monkeypatch.setattr(Segment, "_schedule_capture", lambda self: None)
        app = LogApp()
        async with app.run_test(size=(90, 50)) as pilot:
            log = app.query_one(ChatLog)
            log.load([LogMessage(1, "user", "Show me."), LogMessage(2, "assistant", text, header="m")])
            log.focus()
            await settle(pilot)
            view = log.view_at(1)
            assert view is not None
            if capture:
                await until(pilot, lambda: all(s.static for s in view.segments()), "drawn into static lines")
            if state == "selected":
                await pilot.press("k")
            elif state == "unfocused":
                log.blur()
            await settle(pilot)
            if capture:
                await until(pilot, lambda: all(s.static for s in view.segments()), "drawn again")
                assert all(not s.children for s in view.segments())
            else:
                assert all(s.children and not s.static for s in view.segments())
            return screen_lines(app)

    with_blocks = asyncio.run(shot(capture=False))
    monkeypatch.undo()
    assert asyncio.run(shot(capture=True)) == with_blocks


def test_static_lines_are_drawn_again_at_a_new_width() -> None:
    text = reply_text(24)

    async def test(app: LogApp, log: ChatLog, pilot: Pilot[None]) -> None:
        log.load([LogMessage(1, "assistant", text, header="m")])
        await settle(pilot)
        view = log.view_at(0)
        assert view is not None
        await until(pilot, lambda: all(s.static for s in view.segments()), "drawn into static lines")
        wide = picture(view)
        await pilot.resize_terminal(70, 120)
        await until(
            pilot,
            lambda: all(s.static and s.picture()[0].cell_length == s.size.width for s in view.segments()),
            "drawn again at the new width",
        )
        narrow = picture(view)
        assert narrow != wide and len(narrow) > len(wide)  # rewrapped, so taller
        log.load([LogMessage(2, "assistant", text, header="m")])
        await settle(pilot)
        fresh = log.view_at(0)
        assert fresh is not None
        await until(pilot, lambda: all(s.static for s in fresh.segments()), "the fresh message is drawn")
        assert picture(fresh) == narrow

    run(test, size=(100, 120))


def test_a_growing_tail_lays_out_the_screen_only_when_it_gains_a_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """Words that fit on the tail's last line repaint that line; a new line costs one reflow, not two."""
    reflows: list[int] = []
    original = Compositor.reflow

    def spy(self: Compositor, parent: Widget, size: Size) -> object:
        if isinstance(parent, Screen):
            reflows.append(1)
        return original(self, parent, size)

    monkeypatch.setattr(Compositor, "reflow", spy)

    async def test(app: LogApp, log: ChatLog, pilot: Pilot[None]) -> None:
        log.load([LogMessage(n, "user", f"message {n}\n\n{PARAGRAPH}") for n in range(6)])  # taller than the view
        view = log.start_reply(1)
        await settle(pilot)
        view.append("Start. ")
        await view.flush()
        await settle(pilot)
        tail = view.segments()[-1]
        heights, frames = {tail.outer_size.height}, 0
        reflows.clear()
        for n in range(120):
            view.append(f"word{n} ")
            await view.flush()
            await pilot.pause()
            frames += 1
            heights.add(tail.outer_size.height)
        await settle(pilot)
        new_lines = len(heights) - 1
        assert new_lines >= 8  # the paragraph wrapped onto many lines
        assert len(reflows) <= new_lines + 2, f"{len(reflows)} reflows for {new_lines} new lines in {frames} frames"
        assert log.scroll_y == log.max_scroll_y  # still following the tail

    run(test, size=(60, 20))


def test_long_open_fence_stays_code_and_small(monkeypatch: pytest.MonkeyPatch) -> None:
    code_lines = [f"value_{n} = compute({n})" for n in range(3 * FENCE_LINES)]
    monkeypatch.setattr(Segment, "_schedule_capture", lambda self: None)  # keep the blocks to look at

    async def test(app: LogApp, log: ChatLog, pilot: Pilot[None]) -> None:
        view = log.start_reply(1)
        await pilot.pause()
        view.append("Here is a long script:\n\n```python\n")
        for line in code_lines:
            view.append(line + "\n")
            await view.flush()
            # The live tail never holds more than one split's worth of the fence.
            assert view.segments()[-1].source.count("\n") <= FENCE_LINES + 4
        await settle(pilot)
        fences = [block for segment in view.segments() for block in segment.query(MarkdownFence)]
        assert len(fences) >= 3
        assert all(fence.lexer == "python" for fence in fences)
        assert "\n".join(fence.code for fence in fences) == "\n".join(code_lines)
        assert view.code_blocks() == ["\n".join(code_lines)]

    run(test, size=(100, 200))


def test_appends_are_coalesced_to_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many appends make few frames; a burst is drawn over a few short frames, never one long one."""
    applied: list[str] = []
    original = MessageView._apply

    async def spy(self: MessageView, text: str) -> None:
        applied.append(text)
        await original(self, text)

    monkeypatch.setattr(MessageView, "_apply", spy)

    async def test(app: LogApp, log: ChatLog, pilot: Pilot[None]) -> None:
        view = log.start_reply(1)
        await pilot.pause()
        words = [f"word{n} " for n in range(300)]
        for word in words:
            view.append(word)
        assert view.text == "".join(words)  # the model is current at once

        def drawn() -> bool:
            return "".join(s.source for s in view.segments()) == "".join(words)

        await until(pilot, drawn, "the burst is drawn")
        burst = len("".join(words))
        assert burst > 2 * message_view.FRAME_CHARS
        assert 2 <= view.frames <= burst // (message_view.FRAME_CHARS // 2) + 1
        assert all(len(text) <= message_view.FRAME_CHARS for text in applied)
        assert all(text.endswith(" ") for text in applied)  # cut between words

        view.finish()  # finishing draws whatever is left in one go
        view.append("ignored")
        await settle(pilot)
        assert view.segments()[-1].frozen and drawn()

    run(test)


def test_frames_wait_for_typing_but_not_forever(monkeypatch: pytest.MonkeyPatch) -> None:
    """Right after a key press streamed text waits (the key is painted first), but never past MAX_WAIT_SECONDS."""
    monkeypatch.setattr(message_view, "MAX_WAIT_SECONDS", 1.0)

    async def frame_after(view: MessageView, text: str, limit_s: float) -> float:
        before, started = view.frames, time.monotonic()
        view.append(text)
        while view.frames == before:
            assert time.monotonic() - started < limit_s, "streamed text was never drawn"
            await asyncio.sleep(0.01)
        return time.monotonic() - started

    async def test(app: LogApp, log: ChatLog, pilot: Pilot[None]) -> None:
        view = log.start_reply(1)
        await pilot.pause()
        app.last_input_at = time.monotonic() + 3600  # the user keeps typing
        assert await frame_after(view, "held back ", limit_s=10) >= 1.0
        assert view.segments()[-1].source == "held back "

        monkeypatch.setattr(message_view, "MAX_WAIT_SECONDS", 3600.0)
        app.last_input_at = 0.0  # nobody typing: drawn at the frame rate, not held to the limit
        await frame_after(view, "next ", limit_s=10)
        assert view.segments()[-1].source == "held back next "

    run(test)


def test_finish_shows_footer_and_status() -> None:
    async def test(app: LogApp, log: ChatLog, pilot: Pilot[None]) -> None:
        done = log.start_reply(1, header="m · e")
        stopped = log.start_reply(2)
        failed = log.start_reply(3)
        await pilot.pause()
        assert done.has_class("-streaming")
        done.append("All **done**.")
        stopped.append("Half a sent")
        failed.append("Partial")
        done.finish(footer="TTFT 71 ms · 48.2 tok/s · 13→32 tokens")
        stopped.finish(status="cancelled")
        failed.set_error("connection reset")
        failed.finish(status="error")
        await settle(pilot)

        footer = done.query_one(".footer")
        assert footer.display and "48.2 tok/s" in str(footer.render())
        assert not done.query_one(".status").display
        assert stopped.has_class("-cancelled") and "stopped" in str(stopped.query_one(".status").render())
        assert failed.has_class("-error") and "connection reset" in str(failed.query_one(".status").render())
        assert not done.streaming and done.segments()[-1].frozen
        statuses = {m.key: (m.status, m.content, m.footer) for m in log.messages}
        assert statuses[1] == ("complete", "All **done**.", "TTFT 71 ms · 48.2 tok/s · 13→32 tokens")
        assert statuses[2][:2] == ("cancelled", "Half a sent")
        assert statuses[3][:2] == ("error", "Partial")
        assert log.reply(2) is stopped and log.reply(99) is None
        done.append("ignored after finish")
        assert done.text == "All **done**."

    run(test)


def test_a_reply_posted_from_another_thread_is_drawn_then_its_end_goes_up() -> None:
    """The token path's last hop: a worker thread posts text and the end; the parent hears once both are drawn."""

    async def test(app: LogApp, log: ChatLog, pilot: Pilot[None]) -> None:
        log.start_reply(1, header="m · e")
        log.start_reply(2)
        await pilot.pause()

        def worker() -> None:
            for word in ("All ", "**done**", "."):
                log.post_text(1, word)
            log.post_end(1, "complete", "13→32 tokens")
            log.post_text(2, "Half")
            log.post_end(2, "error", error="connection reset")

        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
        await until(pilot, lambda: len(app.ended) == 2, "both ends heard by the app")
        assert app.ended == [
            ("complete", "13→32 tokens", "", "complete:All **done**."),
            ("error", "", "connection reset", "error:Half"),
        ]
        assert "13→32 tokens" in str(log.reply(1).query_one(".footer").render())  # type: ignore[union-attr]

    run(test)


# -- following the bottom, parking, history ---------------------------------------------------------------


def test_follows_the_bottom_only_when_at_the_bottom() -> None:
    async def test(app: LogApp, log: ChatLog, pilot: Pilot[None]) -> None:
        log.load([LogMessage(n, "user" if n % 2 else "assistant", f"message {n}\n\n{PARAGRAPH}") for n in range(12)])
        log.focus()
        view = log.start_reply("live")
        await settle(pilot)
        await stream(view, reply_text(8), pilot, sizes=[20, 70])
        await settle(pilot)
        assert log.max_scroll_y > 0 and log.scroll_y == log.max_scroll_y

        await pilot.press("pageup")
        await settle(pilot)
        reading = log.scroll_y
        assert reading < log.max_scroll_y
        await stream(view, reply_text(8, seed=4), pilot, sizes=[20, 70])
        await settle(pilot)
        assert log.scroll_y == reading  # the view did not move under the reader
        assert log.max_scroll_y > reading

        await pilot.press("end")
        await settle(pilot)
        await stream(view, reply_text(6, seed=5), pilot, sizes=[20, 70])
        await settle(pilot)
        assert log.scroll_y == log.max_scroll_y

    run(test)


def test_far_segments_are_parked_and_rebuilt_near() -> None:
    async def test(app: LogApp, log: ChatLog, pilot: Pilot[None]) -> None:
        view = log.start_reply(1)
        await pilot.pause()
        await stream(view, reply_text(260), pilot, sizes=[900, 2500])
        view.finish()
        await until(pilot, lambda: any(group.parked for group in view.groups()), "a far group is parked")
        segments = view.segments()
        parked = [s for s in segments if s.parked]
        assert len(parked) >= len(segments) // 2
        assert all(not s.children for s in parked)
        assert any(group.parked for group in view.groups())
        height = log.virtual_size.height

        await pilot.press("home")
        first = view.segments()[0]
        await until(pilot, lambda: shown(first), "the first segment is rebuilt")
        assert view.groups()[-1].parked and all(s.parked or not s.source for s in view.groups()[-1].segments())
        assert log.virtual_size.height == height  # parking kept every height
        assert view.text == reply_text(260)

    run(test)


def test_parking_right_after_a_scroll_uses_where_things_will_be() -> None:
    """Parking can run after a scroll but before its reflow; the stale regions are shifted, not trusted."""

    async def test(app: LogApp, log: ChatLog, pilot: Pilot[None]) -> None:
        view = log.start_reply(1)
        await pilot.pause()
        await stream(view, reply_text(260), pilot, sizes=[900, 2500])
        view.finish()
        await until(pilot, lambda: view.groups()[0].parked, "the first group is parked")
        bottom = round(log.scroll_offset.y)
        assert log._layout_lag() == 0
        log.scroll_to(y=0, animate=False, immediate=True)
        assert log._layout_lag() == -bottom  # the regions still show the old position
        log._update_parking()
        assert not view.groups()[0].parked  # shown now, from where it will be
        await until(pilot, lambda: shown(view.segments()[0]), "the first segment is rebuilt")
        assert log._layout_lag() == 0

    run(test)


def test_load_mounts_a_window_and_pages_in_older_messages() -> None:
    messages = [
        LogMessage(n, "user" if n % 2 == 0 else "assistant", f"Message number {n}.\n\n{PARAGRAPH}") for n in range(500)
    ]

    async def test(app: LogApp, log: ChatLog, pilot: Pilot[None]) -> None:
        log.load(messages)
        log.focus()
        await settle(pilot)
        assert len(log.query(MessageView)) == ChatLog.INITIAL_MESSAGES
        assert log.mounted_range == range(500 - ChatLog.INITIAL_MESSAGES, 500)
        assert log.messages == messages
        assert log.scroll_y == log.max_scroll_y

        oldest = log.view_at(log.mounted_range.start)
        assert oldest is not None
        await pilot.press("home")
        await until(pilot, lambda: len(log.mounted_range) >= 40 and not log._paging, "an earlier page is mounted")
        assert len(log.mounted_range) >= ChatLog.INITIAL_MESSAGES + ChatLog.PAGE_MESSAGES
        # Paging in kept the message the user had reached where it was.
        await until(pilot, lambda: oldest.region.y == log.region.y, "the view stays where it was")
        assert log.messages == messages
        assert len(log.query(MessageView)) == len(log.mounted_range)

        log.load(messages[:3])
        await settle(pilot)
        assert len(log.query(MessageView)) == 3 and log.messages == messages[:3]
        log.clear()
        await settle(pilot)
        assert log.messages == [] and not log.query(MessageView)

    run(test)


def test_keys_select_messages() -> None:
    messages = [LogMessage(n, "user" if n % 2 == 0 else "assistant", f"Message {n}") for n in range(30)]

    async def test(app: LogApp, log: ChatLog, pilot: Pilot[None]) -> None:
        log.load(messages)
        log.focus()
        await settle(pilot)
        await pilot.press("k")
        await settle(pilot)
        assert log.selected == 29 and log.selected_message == messages[29]
        assert app.selections[-1].message == messages[29] and app.selections[-1].chat_log is log
        last, before = log.view_at(29), log.view_at(27)
        assert last is not None and before is not None
        assert last.has_class("-selected")

        await pilot.press("k", "ctrl+up")
        await settle(pilot)
        assert log.selected == 27 and app.selections[-1].index == 27
        assert not last.has_class("-selected") and before.has_class("-selected")
        await pilot.press("j")
        await settle(pilot)
        assert log.selected == 28

        # Selecting a message that is not mounted yet mounts it and shows it.
        log.selected = 2
        await until(pilot, lambda: (v := log.view_at(2)) is not None and v.has_class("-selected"), "message 2 shown")
        view = log.view_at(2)
        assert view is not None
        assert log.region.contains_region(view.region) or view.region.y == log.region.y
        assert app.selections[-1].message == messages[2]

        log.clear_selection()
        await settle(pilot)
        assert log.selected_message is None and app.selections[-1].message is None

    run(test)
