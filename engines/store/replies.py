"""ReplyWriter: fills one assistant message in the store while its reply streams."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from engines.store.records import MessageRecord, MessageStatus, TurnMetrics
from engines.store.schema import StoreError
from engines.types import Delta, Done, Error, StreamEvent

DEFAULT_FLUSH_INTERVAL_S = 1.0

SaveReply = Callable[[MessageRecord, str, MessageStatus, str | None, TurnMetrics | None], MessageRecord]
"""Writes a reply's text, status, error and metrics; returns the record as written."""


class ReplyWriter:
    """Fills one assistant message as its reply streams; safe to feed from an engine worker thread."""

    def __init__(
        self,
        record: MessageRecord,
        save: SaveReply,
        *,
        flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.message_id = record.id
        self.session_id = record.session_id
        self._save = save
        self._record = record
        self._interval = flush_interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._parts: list[str] = []
        self._dirty = False
        self._last_flush = clock()
        self._flushes = 0
        self._final: MessageRecord | None = None
        self._save_error: StoreError | None = None

    @property
    def text(self) -> str:
        """The reply so far."""
        with self._lock:
            return "".join(self._parts)

    @property
    def flushes(self) -> int:
        """How many times the partial reply has been written to the database."""
        return self._flushes

    @property
    def finished(self) -> bool:
        """True once finish() or fail() has run."""
        return self._final is not None

    @property
    def final(self) -> MessageRecord | None:
        """The message as finally written, once finish() or fail() has run."""
        return self._final

    def append(self, text: str) -> None:
        """Add streamed text; write the reply so far if `flush_interval_s` has passed since the last write."""
        if not text:
            return
        with self._lock:
            self._check_open()
            self._parts.append(text)
            self._dirty = True
            if self._clock() - self._last_flush >= self._interval:
                self._flush()

    def flush(self) -> None:
        """Write the reply so far now (e.g. before the app quits mid-reply)."""
        with self._lock:
            if self._final is None and self._dirty:
                self._flush()

    def finish(self, done: Done) -> MessageRecord:
        """Write the whole reply as 'complete' (or 'cancelled') with its metrics."""
        status: MessageStatus = "cancelled" if done.finish_reason == "cancelled" else "complete"
        with self._lock:
            self._check_open()
            text = "".join(self._parts)
            self._final = self._save(self._record, text, status, None, TurnMetrics.from_done(done))
            return self._final

    def fail(self, message: str) -> MessageRecord:
        """Mark the reply 'error' with `message`, keeping the text generated so far."""
        with self._lock:
            self._check_open()
            self._final = self._save(self._record, "".join(self._parts), "error", message, None)
            return self._final

    @property
    def save_error(self) -> StoreError | None:
        """The last database error feed() kept instead of raising (the text is still in `text`)."""
        return self._save_error

    def feed(self, event: StreamEvent) -> None:
        """Route a stream event: Delta appends, Done finishes, Error fails.

        Usable as the manager's EventSink: it runs on the engine's worker thread,
        so a database error is kept in `save_error` rather than raised there.
        """
        try:
            if isinstance(event, Delta):
                self.append(event.text)
            elif isinstance(event, Done):
                self.finish(event)
            elif isinstance(event, Error):
                self.fail(event.message)
        except StoreError as exc:
            self._save_error = exc

    def _flush(self) -> None:
        text = "".join(self._parts)
        self._parts = [text]
        self._save(self._record, text, "streaming", None, None)
        self._dirty = False
        self._last_flush = self._clock()
        self._flushes += 1

    def _check_open(self) -> None:
        if self._final is not None:
            raise StoreError(f"reply {self.message_id} has already ended ({self._final.status})")
