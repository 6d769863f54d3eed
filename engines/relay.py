"""One request's events on their way from the engine to its handle: coalesced, timed, finished.

The engine's events are shaped first (engines.shaper: thinking and tool calls apart from the reply). The first
piece is handed on at once (time to first token is what a user feels), and so is the first piece of the reply
after thinking; later ones are joined for ~30 ms or ~512 characters so a fast engine does not flood the UI with
one message per token. Tool-call pieces go out at once. The final Done gets the request's timings. Used the
same way whether the instance runs one request at a time or many in slots.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from engines.requests import RequestHandle
from engines.shaper import ReplyShaper
from engines.types import Delta, Done, Error, Metrics, Reasoning, StreamEvent, TokenLogprob, ToolCallDelta, Usage


@dataclass(frozen=True, slots=True)
class Coalescing:
    """How the worker batches deltas before handing them on."""

    interval_s: float = 0.030
    max_chars: int = 512


class Relay:
    """Delivers `handle`'s events (shaped: thinking and tool calls apart) and returns its final event with metrics;
    `started` is when it began running. `native_tools`: the engine streams tool calls itself."""

    __slots__ = (
        "_chars",
        "_clock",
        "_coalescing",
        "_kind",
        "_last_flush",
        "_scored",
        "_sent",
        "_shaper",
        "_text",
        "_thought",
        "first_at",
        "handle",
        "queue_ms",
        "reply_at",
        "started",
    )

    def __init__(
        self, handle: RequestHandle, coalescing: Coalescing, clock: Callable[[], float], *, native_tools: bool = False
    ):
        self.handle, self._coalescing, self._clock = handle, coalescing, clock
        self._shaper = ReplyShaper(handle.params, native_tools=native_tools)
        self.started = clock()
        self.queue_ms = (self.started - handle.submitted_at) * 1000.0
        self.first_at: float | None = None
        self._sent = False  # a piece of text or thinking went out
        self._thought = False  # thinking came before the reply
        self.reply_at: float | None = None
        """When the first piece of the reply itself (not thinking) arrived."""
        self._text: list[str] = []
        self._kind: type[Delta] | type[Reasoning] = Delta  # what the held text is
        self._scored: list[TokenLogprob] = []  # the pending text's token log-probabilities, when the request asked
        self._chars = 0
        self._last_flush = self.started

    def cancelled_before_start(self) -> Done:
        """The final event of a request whose client left while it waited."""
        return Done(Usage(), "cancelled", Metrics(0.0, 0.0, 0.0, self.queue_ms))

    def event(self, event: StreamEvent) -> StreamEvent | None:
        """Hand an event on (now or joined with the next ones); for Done or Error, the final event to deliver."""
        final: StreamEvent | None = None
        now = 0.0
        if not isinstance(event, Done | Error):
            now = self._clock()  # one reading per token: the metrics of a scripted clock stay reproducible
            if self.first_at is None:
                self.first_at = now  # the first token, even when it is held back (a call being written)
        for shaped in self._shaper.feed(event):
            if isinstance(shaped, Delta | Reasoning):
                self._piece(shaped, now)
            elif isinstance(shaped, ToolCallDelta):
                self.flush()
                self.handle.deliver(shaped)
            else:
                self.flush()
                final = self._finish(shaped) if isinstance(shaped, Done) else shaped
        return final

    def _piece(self, event: Delta | Reasoning, now: float) -> None:
        kind = type(event)
        first_reply = kind is Delta and self.reply_at is None
        self._thought = self._thought or (kind is Reasoning and self.reply_at is None)
        if first_reply:
            self.reply_at = now
        if not self._sent or first_reply:  # the first piece, and the first of the reply, go out at once
            self.flush()
            self._sent = True
            self._last_flush = now
            self.handle.deliver(event)
            return
        if kind is not self._kind:
            self.flush()
            self._kind = kind
        self._text.append(event.text)
        if isinstance(event, Delta):
            self._scored.extend(event.logprobs)
        self._chars += len(event.text)
        if now - self._last_flush >= self._coalescing.interval_s or self._chars >= self._coalescing.max_chars:
            self.flush()
            self._last_flush = now

    def flush(self) -> None:
        """Deliver the text held back."""
        if self._text:
            text = "".join(self._text)
            self.handle.deliver(Delta(text, tuple(self._scored)) if self._kind is Delta else Reasoning(text))
            self._text.clear()
            self._scored.clear()
            self._chars = 0

    def failed(self, message: str, kind: str) -> Error:
        """The final event of a request the engine failed on (the text so far is delivered first)."""
        for shaped in self._shaper.flush():
            if isinstance(shaped, Delta | Reasoning):
                self._piece(shaped, self._clock())
            else:
                self.flush()
                self.handle.deliver(shaped)
        self.flush()
        return Error(message, kind=kind)

    def _finish(self, done: Done) -> Done:
        end = self._clock()
        ttft = ((self.first_at or end) - self.started) * 1000.0
        thought_first = self._thought and self.reply_at is not None
        reply_ttft = (self.reply_at - self.started) * 1000.0 if thought_first and self.reply_at else None
        decode_tokens = done.usage.completion_tokens - 1
        span = end - self.first_at if self.first_at is not None else 0.0
        tps = decode_tokens / span if decode_tokens > 0 and span > 0 else 0.0
        metrics = Metrics(ttft, tps, (end - self.started) * 1000.0, self.queue_ms, reply_ttft)
        return replace(done, metrics=metrics)
