"""One request's events on their way from the engine to its handle: coalesced, timed, finished.

The first delta is handed on at once (time to first token is what a user feels); later ones are joined for
~30 ms or ~512 characters so a fast engine does not flood the UI with one message per token. The final Done
gets the request's timings. Used the same way whether the instance runs one request at a time or many in slots.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from engines.requests import RequestHandle
from engines.types import Delta, Done, Error, Metrics, StreamEvent, TokenLogprob, Usage


@dataclass(frozen=True, slots=True)
class Coalescing:
    """How the worker batches deltas before handing them on."""

    interval_s: float = 0.030
    max_chars: int = 512


class Relay:
    """Delivers `handle`'s deltas and returns its final event with metrics; `started` is when it began running."""

    __slots__ = (
        "_chars",
        "_clock",
        "_coalescing",
        "_last_flush",
        "_scored",
        "_text",
        "first_at",
        "handle",
        "queue_ms",
        "started",
    )

    def __init__(self, handle: RequestHandle, coalescing: Coalescing, clock: Callable[[], float]):
        self.handle, self._coalescing, self._clock = handle, coalescing, clock
        self.started = clock()
        self.queue_ms = (self.started - handle.submitted_at) * 1000.0
        self.first_at: float | None = None
        self._text: list[str] = []
        self._scored: list[TokenLogprob] = []  # the pending text's token log-probabilities, when the request asked
        self._chars = 0
        self._last_flush = self.started

    def cancelled_before_start(self) -> Done:
        """The final event of a request whose client left while it waited."""
        return Done(Usage(), "cancelled", Metrics(0.0, 0.0, 0.0, self.queue_ms))

    def event(self, event: StreamEvent) -> StreamEvent | None:
        """Hand a delta on (now or joined with the next ones); for Done or Error, the final event to deliver."""
        if isinstance(event, Delta):
            now = self._clock()
            if self.first_at is None:
                self.first_at = self._last_flush = now
                self.handle.deliver(event)
                return None
            self._text.append(event.text)
            self._scored.extend(event.logprobs)
            self._chars += len(event.text)
            if now - self._last_flush >= self._coalescing.interval_s or self._chars >= self._coalescing.max_chars:
                self.flush()
                self._last_flush = now
            return None
        self.flush()
        return self._finish(event) if isinstance(event, Done) else event

    def flush(self) -> None:
        """Deliver the text held back."""
        if self._text:
            self.handle.deliver(Delta("".join(self._text), tuple(self._scored)))
            self._text.clear()
            self._scored.clear()
            self._chars = 0

    def failed(self, message: str, kind: str) -> Error:
        """The final event of a request the engine failed on (the text so far is delivered first)."""
        self.flush()
        return Error(message, kind=kind)

    def _finish(self, done: Done) -> Done:
        end = self._clock()
        ttft = ((self.first_at or end) - self.started) * 1000.0
        decode_tokens = done.usage.completion_tokens - 1
        span = end - self.first_at if self.first_at is not None else 0.0
        tps = decode_tokens / span if decode_tokens > 0 and span > 0 else 0.0
        return replace(done, metrics=Metrics(ttft, tps, (end - self.started) * 1000.0, self.queue_ms))
