"""The conversation log: finished Markdown is rendered once; only a streaming reply's tail stays live.

A streaming reply is a column of frozen Markdown segments (cut by
tui.widgets.segmenter at finished block boundaries, a few KB each) plus one
live Markdown widget holding the unfinished tail, so the cost of an appended
chunk does not grow with the reply. Appends are buffered and applied at most
~30 times a second. A long history mounts only its newest messages; older
ones are mounted a page at a time when the view reaches the top.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Markdown, Static

from tui.widgets.segmenter import Segmenter

FRAME_SECONDS = 1 / 30
STATUS_LABELS = {"cancelled": "stopped", "interrupted": "interrupted (the app stopped mid-reply)", "error": "error"}


@dataclass(frozen=True, slots=True)
class LogMessage:
    """One message as the log shows it."""

    key: int | str
    role: str
    content: str
    header: str = ""
    footer: str = ""
    status: str = "complete"


def fenced_code_blocks(markdown: str) -> list[str]:
    """The contents of the fenced code blocks in `markdown`, in order."""
    blocks: list[str] = []
    current: list[str] | None = None
    fence = ""
    for line in markdown.splitlines():
        stripped = line.strip()
        if current is None:
            if stripped.startswith(("```", "~~~")):
                fence = stripped[:3]
                current = []
        elif stripped.startswith(fence) and stripped.strip("`~ ") == "":
            blocks.append("\n".join(current))
            current = None
        else:
            current.append(line)
    if current is not None:
        blocks.append("\n".join(current))
    return blocks


class MessageView(Vertical):
    """One message: a header, its Markdown (frozen segments + live tail) and a footer."""

    DEFAULT_CSS = """
    MessageView { height: auto; padding: 0 1; margin: 0 0 1 0; border-left: thick $primary 40%; }
    MessageView.-user { border-left: thick $primary; background: $boost; }
    MessageView.-assistant { border-left: thick $accent; }
    MessageView.-system { border-left: thick $secondary; color: $text-muted; }
    MessageView.-selected { background: $accent 15%; }
    MessageView > .header { text-style: bold; color: $text-accent; }
    MessageView > .footer { color: $text-muted; }
    MessageView > .error { color: $error; }
    MessageView > Markdown { margin: 0; padding: 0; }
    """

    def __init__(self, message: LogMessage) -> None:
        super().__init__(classes=f"-{message.role}")
        self._message = message
        self._segmenter = Segmenter()
        self._pending = ""
        self._scheduled = False
        self._tail: Markdown | None = None
        self._footer = Static(message.footer, classes="footer")
        self._footer.display = bool(message.footer or message.status in STATUS_LABELS)

    @property
    def key(self) -> int | str:
        """The message's key (the store's message id)."""
        return self._message.key

    @property
    def status(self) -> str:
        """complete, streaming, cancelled, error or interrupted."""
        return self._message.status

    @property
    def message(self) -> LogMessage:
        """The message with its text so far."""
        return replace(self._message, content=self.text)

    @property
    def text(self) -> str:
        """The full Markdown source so far, including text not yet painted."""
        return self._message.content + self._pending

    def code_blocks(self) -> list[str]:
        """Fenced code blocks of this message."""
        return fenced_code_blocks(self.text)

    def compose(self) -> ComposeResult:
        header = self._message.header or self._message.role.capitalize()
        yield Static(header, classes="header")
        if self._message.status == "streaming":
            self._tail = Markdown("")
            yield self._tail
        else:
            yield Markdown(self._message.content)
        yield self._footer

    def append(self, text: str) -> None:
        """Add streamed text; it is painted with the next frame."""
        self._pending += text
        if not self._scheduled:
            self._scheduled = True
            self.set_timer(FRAME_SECONDS, self._apply)

    def _apply(self) -> None:
        self._scheduled = False
        text, self._pending = self._pending, ""
        if not text or self._tail is None:
            return
        self._message = replace(self._message, content=self._message.content + text)
        finished = self._segmenter.feed(text)
        if finished:
            self.mount_all([Markdown(piece.markdown) for piece in finished], before=self._tail)
            self._tail.update(self._segmenter.live)
        else:
            # Markdown.append re-parses only the last block: the cost stays flat as the tail grows.
            self._tail.append(text)

    def finish(self, footer: str = "", status: str = "complete") -> None:
        """Paint what is left, freeze the tail and show the footer and status."""
        self._apply()
        self._message = replace(self._message, status=status, footer=footer)
        label = STATUS_LABELS.get(status)
        self._footer.update(" · ".join(x for x in (footer, label) if x))
        self._footer.display = bool(footer or label)
        if status == "error":
            self._footer.add_class("error")

    def set_error(self, text: str) -> None:
        """Show an error under the text so far."""
        self.mount(Static(text, classes="error"), before=self._footer)


class ChatLog(VerticalScroll, can_focus=True):
    """All messages of a session; keys select a message (↑/↓ or k/j) for copy and edit."""

    INITIAL_MESSAGES = 40
    PAGE_MESSAGES = 20
    BINDINGS = [
        Binding("up,k", "select(-1)", "Previous", show=False),
        Binding("down,j", "select(1)", "Next", show=False),
        Binding("home", "top", "Top", show=False),
        Binding("end", "bottom", "Bottom", show=False),
    ]

    selected: reactive[int] = reactive(-1, init=False)

    class Selected(Message):
        """The selected message changed."""

        def __init__(self, message: LogMessage | None) -> None:
            super().__init__()
            self.message = message

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._entries: list[LogMessage] = []
        self._first = 0  # index of the first mounted message

    @property
    def messages(self) -> list[LogMessage]:
        """Every message, mounted or not, streaming ones with their text so far."""
        views = {v.key: v for v in self.query(MessageView)}
        return [views[m.key].message if m.key in views else m for m in self._entries]

    @property
    def selected_message(self) -> LogMessage | None:
        """The selected message, if any."""
        return self.messages[self.selected] if 0 <= self.selected < len(self._entries) else None

    def load(self, messages: Sequence[LogMessage]) -> None:
        """Show `messages` instead of what was there; mounts only the newest."""
        self._entries = list(messages)
        self._first = max(0, len(self._entries) - self.INITIAL_MESSAGES)
        self.set_reactive(ChatLog.selected, -1)
        self.remove_children()
        if self._entries[self._first :]:
            self.mount_all([MessageView(m) for m in self._entries[self._first :]])
        self.scroll_end(animate=False, immediate=False)
        self.anchor()

    def clear(self) -> None:
        """Remove every message."""
        self.load([])

    def add_message(self, message: LogMessage) -> MessageView:
        """Append a message."""
        view = MessageView(message)
        self._entries.append(message)
        self.mount(view)
        return view

    def start_reply(self, key: int | str, header: str = "") -> MessageView:
        """Append an assistant message that streams through MessageView.append()."""
        return self.add_message(LogMessage(key, "assistant", "", header=header, status="streaming"))

    def reply(self, key: int | str) -> MessageView | None:
        """The mounted view of the message with `key`."""
        return next((v for v in reversed(list(self.query(MessageView))) if v.key == key), None)

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        if new <= 0 and self._first > 0:
            self._mount_earlier()

    def _mount_earlier(self) -> None:
        start = max(0, self._first - self.PAGE_MESSAGES)
        views = [MessageView(m) for m in self._entries[start : self._first]]
        first_view = next(iter(self.query(MessageView)), None)
        self._first = start
        self.mount_all(views, before=first_view) if first_view else self.mount_all(views)

    def action_top(self) -> None:
        while self._first > 0:
            self._mount_earlier()
        self.scroll_home(animate=False)

    def action_bottom(self) -> None:
        self.scroll_end(animate=False)

    def action_select(self, step: int) -> None:
        if not self._entries:
            return
        start = len(self._entries) if self.selected < 0 else self.selected
        self.selected = max(0, min(len(self._entries) - 1, start + step))

    def watch_selected(self, old: int, new: int) -> None:
        while 0 <= new < self._first:
            self._mount_earlier()
        views = list(self.query(MessageView))
        for index, view in enumerate(views, start=self._first):
            view.set_class(index == new, "-selected")
            if index == new:
                self.scroll_to_widget(view, animate=False)
        self.post_message(self.Selected(self.selected_message))
