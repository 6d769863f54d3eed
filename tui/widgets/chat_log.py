"""The chat transcript: a scrolling log of messages, one of them perhaps streaming.

The cost of a streamed chunk stays flat however long a reply or a session grows:

- a reply is frozen Markdown segments of a few KB plus one live tail holding
  only the unfinished blocks (`segmenter` decides the cuts, `Segment` draws);
- `MessageView.append()` only buffers; the text is applied at most ~30 times
  a second;
- segments and whole messages more than a screen away from the viewport are
  parked: their widgets are dropped and their height kept, and rebuilt from
  their Markdown when they come near again;
- `load()` mounts only the newest messages; older ones are mounted a page at
  a time when the view nears the top, keeping what the user looks at in place;
- the view follows new text only while it is at the bottom (Textual's anchor).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.widget import AwaitMount

from tui.widgets.log_message import LogMessage

if TYPE_CHECKING:
    from tui.widgets.message_view import MessageView

PARKING_RETRIES = 100
"""Times to look again for a place of a just-shown group or segment before parking gives up on it."""
PARKING_RETRY_DELAY = 0.03
"""Seconds between those looks (about a frame; a busy app may need many before it lays them out)."""


def _views_of(messages: Sequence[LogMessage]) -> list[MessageView]:
    # Markdown and its parser load with the first message shown, not with the app (nor with an empty chat).
    if not messages:
        return []
    from tui.widgets.message_view import MessageView

    return [MessageView(message) for message in messages]


class ChatLog(VerticalScroll, can_focus=True):
    """Messages of one chat session; k/j (or ctrl+up/down) select one, the usual keys scroll."""

    DEFAULT_CSS = """
    ChatLog {
        height: 1fr;
        padding: 0 1 0 0;
        &:focus { background-tint: $foreground 3%; }
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("k,ctrl+up", "select_previous", "Prev"),  # shown: the footer lists the focused widget's keys
        Binding("j,ctrl+down", "select_next", "Next"),
        Binding("t", "toggle_fold", "Fold", show=False),  # the folded line itself says "t shows"
    ]

    INITIAL_MESSAGES: ClassVar[int] = 20
    """How many of the newest messages load() mounts."""
    PAGE_MESSAGES: ClassVar[int] = 20
    """How many earlier messages are mounted when the view nears the top."""

    selected: reactive[int] = reactive(-1, init=False)
    """Index in `messages` of the selected message, or -1 for none."""

    class Selected(Message):
        """The selected message changed (`message` is None when the selection was cleared)."""

        def __init__(self, message: LogMessage | None, index: int = -1, chat_log: ChatLog | None = None) -> None:
            super().__init__()
            self.message = message
            self.index = index
            self.chat_log = chat_log

        @property
        def control(self) -> ChatLog | None:
            """The chat log that sent this message."""
            return self.chat_log

    class ReplyText(Message, bubble=False):
        """Streamed text for the reply `key` (posted by `post_text`, drawn by the log itself)."""

        def __init__(self, key: int | str, text: str) -> None:
            super().__init__()
            self.key = key
            self.text = text

    class ReplyReasoning(Message, bubble=False):
        """Streamed thinking for the reply `key` (posted by `post_reasoning`)."""

        def __init__(self, key: int | str, text: str) -> None:
            super().__init__()
            self.key = key
            self.text = text

    class ReplyEnded(Message):
        """The reply `key` ended: the log has drawn its end, and the message goes on up to whoever started it.

        `status` is "complete", "cancelled" or "error"; `error` says what went wrong when it is "error".
        """

        def __init__(self, key: int | str, status: str, footer: str = "", error: str = "") -> None:
            super().__init__()
            self.key = key
            self.status = status
            self.footer = footer
            self.error = error

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._entries: list[LogMessage] = []
        self._views: list[MessageView] = []  # views of _entries[_first:], in order
        self._first = 0
        self._paging = False
        self._parking_scheduled = False
        self._parking_retries = 0
        self._width = 0

    def _size_updated(self, size: Size, virtual_size: Size, container_size: Size, layout: bool = True) -> bool:
        # The reflow that measured a taller log already moved it to its bottom when following;
        # the layout Textual would ask for again on a new virtual size changes nothing but its cost
        # (a second whole-screen reflow for every streamed frame that adds a line).
        return super()._size_updated(size, virtual_size, container_size, layout=False)

    # -- the model ---------------------------------------------------------------------------------------------

    @property
    def messages(self) -> list[LogMessage]:
        """Every message in the log, mounted or not, streaming ones with their text so far."""
        first = self._first
        return self._entries[:first] + [view.message for view in self._views]

    @property
    def mounted_range(self) -> range:
        """Indices of the messages that have a mounted view."""
        return range(self._first, len(self._entries))

    @property
    def selected_message(self) -> LogMessage | None:
        """The selected message, if any."""
        index = self.selected
        if not 0 <= index < len(self._entries):
            return None
        return self._views[index - self._first].message if index >= self._first else self._entries[index]

    def view_at(self, index: int) -> MessageView | None:
        """The view of message `index` if it is mounted."""
        return self._views[index - self._first] if self._first <= index < len(self._entries) else None

    # -- changing what is shown ----------------------------------------------------------------------------------

    def load(self, messages: Sequence[LogMessage]) -> None:
        """Show `messages` instead of everything (switching sessions); mounts only the newest."""
        self._entries = list(messages)
        self._first = max(0, len(self._entries) - self.INITIAL_MESSAGES)
        self._views = _views_of(self._entries[self._first :])
        self.workers.cancel_group(self, "chat-log-page")
        self.workers.cancel_group(self, "chat-log-reveal")
        self._paging = False
        self.set_reactive(ChatLog.selected, -1)
        if not self.is_attached:
            return  # on_mount mounts them
        self.remove_children()
        mounting = self.mount_all(self._views) if self._views else None
        if self.is_mounted:
            self.anchor()
            # Not in this widget's own message loop: waiting there for a refresh would block the
            # very layout request that refresh needs.
            self.run_worker(self._settle(mounting), group="chat-log-settle", exclusive=True)

    async def _settle(self, mounting: AwaitMount | None) -> None:
        """Once freshly mounted messages are built: park what is far, page in more if the view is not full."""
        if mounting is None:
            return  # nothing was mounted, so no refresh will come to wait for
        await mounting
        await self._next_refresh()
        self._schedule_parking()
        self._maybe_page()

    def clear(self) -> None:
        """Remove every message."""
        self.load([])

    def add_message(self, message: LogMessage) -> MessageView:
        """Append a message (finished unless its status is "streaming")."""
        (view,) = _views_of([message])
        self._entries.append(message)
        self._views.append(view)
        if self.is_attached:
            self.mount(view)
        return view

    def start_reply(self, key: int | str, header: str = "") -> MessageView:
        """Append an assistant message that streams with MessageView.append()."""
        return self.add_message(LogMessage(key, "assistant", "", header=header, status="streaming"))

    def reply(self, key: int | str) -> MessageView | None:
        """The mounted view of the message with `key` (the newest one if several)."""
        for view in reversed(self._views):
            if view.key == key:
                return view
        return None

    # -- a reply streaming in (posted from the instance's worker thread) ------------------------------------------

    def post_text(self, key: int | str, text: str) -> None:
        """Stream `text` into reply `key`; safe from any thread (it only posts: the worker never waits on the UI)."""
        self.post_message(self.ReplyText(key, text))

    def post_reasoning(self, key: int | str, text: str) -> None:
        """Stream thinking into reply `key`'s folded block; safe from any thread."""
        self.post_message(self.ReplyReasoning(key, text))

    def post_end(self, key: int | str, status: str, footer: str = "", error: str = "") -> None:
        """End reply `key` after the text posted before; safe from any thread. ReplyEnded then goes up the DOM."""
        self.post_message(self.ReplyEnded(key, status, footer, error))

    def on_chat_log_reply_text(self, message: ChatLog.ReplyText) -> None:
        # Looked up by key at each event: reopening the session (new settings) mid-reply rebuilds its view.
        if (view := self.reply(message.key)) is not None:
            view.append(message.text)

    def on_chat_log_reply_reasoning(self, message: ChatLog.ReplyReasoning) -> None:
        if (view := self.reply(message.key)) is not None:
            view.append_reasoning(message.text)

    def on_chat_log_reply_ended(self, message: ChatLog.ReplyEnded) -> None:
        if (view := self.reply(message.key)) is None:
            return
        if message.status == "error":
            view.set_error(message.error)
        else:
            view.finish(footer=message.footer, status=message.status)

    # -- following the bottom and paging in older messages ---------------------------------------------------

    def on_mount(self) -> None:
        early = [view for view in self._views if not view.is_attached]
        if early:  # messages given before this log was in the DOM
            self.run_worker(self._settle(self.mount_all(early)), group="chat-log-settle", exclusive=True)
        self.anchor()
        self.call_after_refresh(self._maybe_page)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        self._maybe_page()
        self._schedule_parking()

    def on_resize(self) -> None:
        if self.size.width != self._width:
            # Parked heights were measured at the old width: show everything, measure again.
            self._width = self.size.width
            for view in self._views:
                view.unpark()
                for group in view.groups():
                    group.unpark()
                for segment in view.segments():
                    segment.unpark()
            self._schedule_parking()

    def on_message_view_segments_frozen(self, event: MessageView.SegmentsFrozen) -> None:
        event.stop()
        self._schedule_parking()

    def _schedule_parking(self) -> None:
        if not self._parking_scheduled and self.is_mounted:
            self._parking_scheduled = True
            self.call_after_refresh(self._update_parking)

    def _update_parking(self) -> None:
        """Park messages and segments more than a screen away from the viewport; show the others."""
        self._parking_scheduled = False
        region = self.region
        if not region or not self._views:
            return
        from tui.widgets.segment import far

        margin = region.height
        # The regions below come from the last layout, which may predate the latest scroll
        # (this can run between a scroll and its reflow): shift the window by that lag.
        lag = self._layout_lag()
        top, bottom = region.y - margin + lag, region.bottom + margin + lag
        revealed = False
        for view in self._views:
            where = far(view, top, bottom)
            if where:
                view.park()
            elif where is None:
                continue
            elif view.parked:
                view.unpark()
                revealed = True
            else:
                revealed = view.park_segments(top, bottom) or revealed
        if (revealed or lag) and self._parking_retries < PARKING_RETRIES:
            # What was just shown has no place yet, or the layout lagged: look again
            # after a layout has had time to run (bounded, in case the app is closing).
            self._parking_retries += 1
            self.set_timer(PARKING_RETRY_DELAY, self._schedule_parking, name="chat-parking")
        else:
            self._parking_retries = 0

    def _layout_lag(self) -> int:
        """Rows by which the children's last laid-out regions trail the current scroll position."""
        anchor = self._views[0]
        if not anchor.region:
            return 0
        expected = self.scrollable_content_region.y + anchor.virtual_region.y - round(self.scroll_offset.y)
        return anchor.region.y - expected

    @property
    def following(self) -> bool:
        """Whether new content scrolls the view (the user is at the bottom)."""
        return self.is_anchored and self.scroll_y >= self.max_scroll_y

    def _maybe_page(self) -> None:
        if self._paging or self._first == 0 or not self.is_mounted:
            return
        if self.scroll_y > max(self.size.height, 1):
            return
        self._paging = True
        self.run_worker(self._page_up(max(0, self._first - self.PAGE_MESSAGES)), group="chat-log-page")

    async def _page_up(self, start: int) -> None:
        """Mount messages start.._first above the others, keeping what the user looks at in place."""
        try:
            await self._mount_earlier(start)
        finally:
            self._paging = False
        self.call_after_refresh(self._maybe_page)

    async def _mount_earlier(self, start: int) -> None:
        if start >= self._first or not self._views:
            return
        anchor_view = self._views[0]
        old_y = anchor_view.virtual_region.y
        old_scroll = self.scroll_target_y  # where a running scroll animation is going
        following = self.following
        views = _views_of(self._entries[start : self._first])
        self._first = start
        self._views[:0] = views
        await self.mount_all(views, before=anchor_view)
        await self._next_refresh()
        if not following:
            delta = anchor_view.virtual_region.y - old_y
            self.scroll_to(y=old_scroll + delta, animate=False, immediate=True)
        self._schedule_parking()

    async def _next_refresh(self) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def done() -> None:
            if not future.done():
                future.set_result(None)

        self.call_after_refresh(done)
        await future

    # -- selection ------------------------------------------------------------------------------------------

    def validate_selected(self, value: int) -> int:
        return max(-1, min(value, len(self._entries) - 1))

    def action_select_previous(self) -> None:
        """Select the message above (the last one if none is selected)."""
        if self._entries:
            self.selected = len(self._entries) - 1 if self.selected < 0 else max(0, self.selected - 1)

    def action_select_next(self) -> None:
        """Select the message below."""
        if self._entries:
            self.selected = len(self._entries) - 1 if self.selected < 0 else self.selected + 1

    def action_toggle_fold(self) -> None:
        """Fold or unfold the selected message's thinking or tool result (else the newest one that has one)."""
        if (view := self.view_at(self.selected)) is not None and view.toggle_fold():
            return
        for view in reversed(self._views):
            if view.toggle_fold():
                return
        self.app.notify("No thinking or tool result to show here.", timeout=3)

    def clear_selection(self) -> None:
        """Select nothing."""
        self.selected = -1

    def watch_selected(self, old: int, new: int) -> None:
        if (view := self.view_at(old)) is not None:
            view.remove_class("-selected")
        if new >= 0:
            self.run_worker(self._reveal(new), group="chat-log-reveal", exclusive=True)
        self.post_message(self.Selected(self.selected_message, new, self))

    async def _reveal(self, index: int) -> None:
        """Highlight message `index` and scroll it into view, mounting earlier pages if needed."""
        if index < self._first:
            await self._mount_earlier(max(0, min(index, self._first - self.PAGE_MESSAGES)))
        if index != self.selected or (view := self.view_at(index)) is None:
            return
        view.add_class("-selected")
        view.unpark()
        following = self.following
        self.scroll_to_widget(view, animate=False, immediate=True)
        if following and self.scroll_y >= self.max_scroll_y:
            self.anchor()
