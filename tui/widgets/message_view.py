"""One chat message: a header, Markdown body in frozen segments plus a live tail, and a footer."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from textual.app import ComposeResult
from textual.geometry import Region
from textual.message import Message
from textual.strip import Strip
from textual.widget import MountError
from textual.widgets import Static

from tui.widgets.fold import Fold
from tui.widgets.log_message import LogMessage, fenced_code_blocks
from tui.widgets.segment import BlankContent, Segment, SegmentGroup, far, hide_children, show_children
from tui.widgets.segmenter import Piece, Segmenter, split_markdown

FRAME_SECONDS = 1 / 30
"""Streamed text is applied at most this often."""
BUSY_SHARE = 0.35
"""Streaming may keep the UI thread busy this share of the time: frames are spaced by their cost."""
INPUT_QUIET_SECONDS = 0.15
"""After a key press, the next frame waits this long, so what the user types is painted first."""
MAX_WAIT_SECONDS = 0.4
"""Streamed text is never held longer than this (however busy the UI or fast the typing)."""
FRAME_CHARS = 600
"""A frame draws at most about this much streamed text (the rest goes to the next frames)."""
GROUP_SIZE = 8
"""Segments per SegmentGroup."""

ROLE_LABELS = {"user": "You", "assistant": "Assistant", "system": "System", "tool": "Tool"}
STATUS_LABELS = {"cancelled": "stopped", "interrupted": "interrupted", "error": "error"}


class MessageView(BlankContent):
    """A message in the chat log; an assistant reply streams into it with append()."""

    DEFAULT_CSS = """
    MessageView {
        height: auto;
        margin: 0;
        padding: 0 1;
        border-left: outer $primary;
        & > .header { color: $text-muted; text-style: bold; }
        & > .footer { color: $text-muted; display: none; }
        & > .footer.-shown { display: block; }
        & > .status { display: none; }
        &.-user { border-left: outer $primary; background: $primary 8%; }
        &.-user > .header { color: $text-primary; }
        &.-assistant { border-left: outer $accent; }
        &.-assistant > .header { color: $text-accent; }
        &.-system { border-left: outer $warning; background: $warning 5%; }
        &.-system > .header { color: $text-warning; }
        &.-tool { border-left: outer $secondary; }
        &.-tool > .header { color: $text-secondary; }
        &.-cancelled > .status { display: block; color: $text-warning; }
        &.-interrupted > .status { display: block; color: $text-warning; }
        &.-error > .status { display: block; color: $text-error; text-style: bold; }
        &.-error { border-left: outer $error; }
        &.-selected { background: $boost; border-left: thick $secondary; }
        &.-streaming > .header { text-style: bold italic; }
    }
    """

    class SegmentsFrozen(Message):
        """A streaming message froze one or more segments (the log may park far ones)."""

    def __init__(self, message: LogMessage) -> None:
        super().__init__(classes=f"-{message.role}")
        self._message = message
        self._status = message.status
        self._footer = message.footer
        self._error = ""
        self._streaming = message.status == "streaming"
        # A streaming message's text so far goes through the segmenter like any streamed text.
        self._parts = [""] if self._streaming else [message.content]
        self._pending: list[str] = [message.content] if self._streaming and message.content else []
        self._segmenter = Segmenter() if self._streaming else None
        self._tail: Segment | None = None
        self._tail_text = ""
        self._footer_widget = Static(message.footer, classes="footer", markup=False)
        # Thinking above a reply; a tool's result is shown folded in place of Markdown.
        self._fold: Fold | None = None
        if message.role == "assistant":
            self._fold = Fold("Thinking", message.reasoning, classes="thinking")
        elif message.role == "tool":
            self._fold = Fold("Result", message.content, classes="result")
        self._status_widget = Static("", classes="status", markup=False)
        self._lock = asyncio.Lock()
        self._scheduled = False
        self._last_flush = 0.0
        self._pending_since = 0.0
        self._frame_cost = 0.0
        self._parked = False
        self._line_cache: tuple[tuple[object, ...], Strip] | None = None
        self.frames = 0
        """How many times streamed text was applied (a probe for tests and benches)."""
        self._set_status(message.status)
        self._footer_widget.set_class(bool(message.footer), "-shown")

    def render_lines(self, crop: Region) -> list[Strip]:
        # With no top or bottom border or padding every line of the message's own area (its
        # left border, padding and blank content, beneath the segments) is the same: draw one
        # and repeat it, instead of every visible line each time a streamed frame changes the height.
        styles = self.styles
        padding = styles.padding
        if padding.top or padding.bottom or styles.border_top[0] or styles.border_bottom[0]:
            return super().render_lines(crop)
        key = (crop.x, crop.width, self.size.width, styles._cache_key, self.background_colors, *self.app._filters)
        cached = self._line_cache
        if cached is None or cached[0] != key:
            (line,) = super().render_lines(Region(crop.x, 0, crop.width, 1))
            cached = self._line_cache = (key, line)
        return [cached[1]] * crop.height

    # -- what it holds ----------------------------------------------------------------------------------------

    @property
    def key(self) -> int | str:
        """The message key."""
        return self._message.key

    @property
    def role(self) -> str:
        """The message role."""
        return self._message.role

    @property
    def status(self) -> str:
        """complete | streaming | cancelled | error | interrupted."""
        return self._status

    @property
    def footer(self) -> str:
        """The metrics line."""
        return self._footer

    @property
    def streaming(self) -> bool:
        """Whether text may still be appended."""
        return self._streaming

    @property
    def text(self) -> str:
        """The full Markdown source so far, including text not yet drawn."""
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        return self._parts[0] + "".join(self._pending)

    @property
    def message(self) -> LogMessage:
        """This view's state as a LogMessage."""
        reasoning = self._fold.text if self._fold is not None and self.role == "assistant" else ""
        return replace(self._message, content=self.text, footer=self._footer, status=self._status, reasoning=reasoning)

    @property
    def fold(self) -> Fold | None:
        """The folded block (thinking, or a tool's result), if this message has one."""
        return self._fold

    def append_reasoning(self, text: str) -> None:
        """Add streamed thinking to the folded block above the reply."""
        if self._fold is not None and self._streaming:
            self._fold.append(text)

    def toggle_fold(self) -> bool:
        """Fold or unfold its thinking or result; False when it has none."""
        if self._fold is None or not self._fold.text.strip():
            return False
        self._fold.toggle()
        return True

    def code_blocks(self) -> list[str]:
        """The contents of the fenced code blocks, in order."""
        return fenced_code_blocks(self.text)

    def groups(self) -> list[SegmentGroup]:
        """The groups of segments, in order."""
        return [child for child in self.children if isinstance(child, SegmentGroup)]

    def segments(self) -> list[Segment]:
        """The Markdown segments, in order (the last is the live tail while streaming)."""
        return [segment for group in self.groups() for segment in group.segments()]

    def pieces(self) -> list[Piece]:
        """The Markdown of every segment, parked or not."""
        return [segment.piece for segment in self.segments()]

    # -- building and streaming --------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        header = self._message.header or ROLE_LABELS.get(self.role, self.role.title())
        yield Static(header, classes="header", markup=False)
        if self._fold is not None:
            yield self._fold
        if self.role == "tool":
            pass  # the result is the fold
        elif not self._streaming:
            pieces = split_markdown(self._message.content)
            for start in range(0, len(pieces), GROUP_SIZE):
                yield SegmentGroup(*(Segment(piece) for piece in pieces[start : start + GROUP_SIZE]))
        yield self._status_widget
        yield self._footer_widget

    async def on_mount(self) -> None:
        if self._segmenter is not None:
            self._tail = Segment()
            await self.mount(SegmentGroup(self._tail), before=self._status_widget)
            await self.flush()

    def append(self, text: str) -> None:
        """Add streamed text; it is drawn at the next frame (at most ~30 a second), not now."""
        if text and self._streaming:
            if not self._pending:
                self._pending_since = time.monotonic()
            self._pending.append(text)
            self._schedule()

    def finish(self, footer: str = "", status: str = "complete") -> None:
        """End the stream: draw what is buffered, freeze the tail, show `footer` and `status`."""
        self._streaming = False
        if self._fold is not None:
            self._fold.done()
        if footer:
            self._footer = footer
        self._set_status(status)
        self._footer_widget.update(self._footer)
        self._footer_widget.set_class(bool(self._footer), "-shown")
        if self.is_mounted:
            self.call_later(self.flush)

    def set_error(self, text: str) -> None:
        """Show an error under the message (in the error colour) and end its stream."""
        self._error = text
        self.finish(self._footer, "error")

    async def flush(self, limit: int | None = None) -> None:
        """Draw buffered text now: all of it, or while streaming at most about `limit` characters.

        The frame timer passes FRAME_CHARS, so a burst (a fast engine, or text held back while
        the user typed) is drawn over a few short frames instead of one long one that a key
        would wait for; tests and benches may call it to draw everything.
        """
        async with self._lock:
            tail = self._tail
            if tail is None or not tail.is_mounted:
                return
            if self._pending:
                text = "".join(self._pending)
                self._pending.clear()
                if limit is not None and self._streaming and len(text) > limit:
                    cut = text.rfind(" ", limit // 2, limit) + 1 or limit  # between words where it can
                    text, rest = text[:cut], text[cut:]
                    self._pending.append(rest)
                self._parts.append(text)
                self._last_flush = started = time.monotonic()
                self.frames += 1
                try:
                    await self._apply(text)
                except MountError:
                    return  # removed mid-frame (session switched, app quitting): nothing left to draw
                self.call_after_refresh(self._measure_frame, started)
            tail = self._tail  # _apply() may have started a new one
            if not self._streaming and tail is not None and not tail.frozen:
                tail.freeze()

    def _measure_frame(self, started: float) -> None:
        """Remember what the last frame cost: applying the text, the layout and the paint."""
        self._frame_cost = time.monotonic() - started

    def _frame_due(self) -> float:
        """When buffered text should next be drawn (monotonic seconds).

        Frames are spaced so streaming keeps the UI thread busy at most BUSY_SHARE of
        the time, and wait INPUT_QUIET_SECONDS after a key press so typing is painted
        first; but no text waits more than MAX_WAIT_SECONDS.
        """
        interval = max(FRAME_SECONDS, self._frame_cost / BUSY_SHARE)
        last_input: float = getattr(self.app, "last_input_at", 0.0)
        due = max(self._last_flush + interval, last_input + INPUT_QUIET_SECONDS)
        return min(due, self._pending_since + MAX_WAIT_SECONDS)

    def _schedule(self) -> None:
        if self._scheduled or self._tail is None:
            return
        self._scheduled = True
        delay = self._frame_due() - time.monotonic()
        if delay > 0.001:
            self.set_timer(delay, self._on_frame, name="chat-frame")
        else:
            self.call_later(self._on_frame)

    async def _on_frame(self) -> None:
        self._scheduled = False
        if not self._pending:
            return
        if self._streaming and self._frame_due() - time.monotonic() > 0.001:
            self._schedule()  # a key came in meanwhile: let its frame go first
            return
        await self.flush(FRAME_CHARS)
        if self._pending:
            self._schedule()  # the rest of a burst: next frame

    async def _apply(self, text: str) -> None:
        """Hand `text` to the segmenter; grow the tail, freeze it where a segment ends."""
        assert self._segmenter is not None and self._tail is not None
        pieces = self._segmenter.feed(text)
        tail = self._tail
        if not pieces:
            self._tail_text += text
            await tail.append(text)
            if tail.split_before:
                tail.join_fences()
            return
        first, *rest = pieces
        if first.markdown.startswith(self._tail_text):
            if extra := first.markdown[len(self._tail_text) :]:
                await tail.append(extra)
        else:
            # The cut fell inside a line the tail already drew (rare): redraw this segment once.
            await tail.update(first.markdown)
        tail.set_split(first)
        tail.freeze()
        live = self._segmenter.live
        self._tail = Segment()
        self._tail.split_before = self._segmenter.live_split_before
        self._tail_text = live
        await self._add_segments([*(Segment(piece) for piece in rest), self._tail])
        if live:
            await self._tail.append(live)
            self._tail.join_fences()
        self.post_message(self.SegmentsFrozen())

    async def _add_segments(self, segments: list[Segment]) -> None:
        """Mount new segments after the others, filling the last group, then new ones."""
        last = self.groups()[-1]
        room = GROUP_SIZE - len(last.children)
        if room > 0:
            await last.mount_all(segments[:room])
        for start in range(max(room, 0), len(segments), GROUP_SIZE):
            # Mount the group, then its segments: awaiting a group's mount does not wait for
            # children given to its constructor, and the new tail must be mounted before it is
            # appended to.
            group = SegmentGroup()
            await self.mount(group, before=self._status_widget)
            await group.mount_all(segments[start : start + GROUP_SIZE])

    def _set_status(self, status: str) -> None:
        for name in ("streaming", "cancelled", "interrupted", "error"):
            self.set_class(status == name, f"-{name}")
        self._status = status
        label = STATUS_LABELS.get(status, "")
        if status == "error" and self._error:
            label = f"error: {self._error}"
        self._status_widget.update(label)

    # -- parking (see Segment) ----------------------------------------------------------------------------

    @property
    def parked(self) -> bool:
        """Whether the whole message is hidden with its height kept."""
        return self._parked

    def park(self) -> None:
        """Hide the whole message and park its segments, keeping its height (not while it streams)."""
        if self._parked or (self._tail is not None and not self._tail.frozen) or not self.outer_size.height:
            return
        groups = self.groups()
        if not all(segment.ready for group in groups for segment in group.segments()):
            return
        for group in groups:
            group.park()
        hide_children(self)
        self._parked = True

    def unpark(self) -> None:
        """Show the whole message again (its segments come back as they near the viewport)."""
        if self._parked:
            show_children(self)
            self._parked = False

    def park_segments(self, top: int, bottom: int) -> bool:
        """Park the groups and segments outside screen rows top..bottom, rebuild those inside.

        Returns True when a group or segment has no place yet (just shown: look again after a layout).
        """
        revealed = False
        for group in self.groups():
            where = far(group, top, bottom)
            if where:
                group.park()
            elif where is not None:
                if group.parked:
                    group.unpark()
                    revealed = True
                else:
                    revealed = group.park_segments(top, bottom) or revealed
        return revealed
