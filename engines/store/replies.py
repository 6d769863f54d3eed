"""ReplyWriter: fills one assistant message in the store while its reply streams.

Text and thinking are written together, at most once per flush interval, so a
crash keeps both up to the last write. Tool calls arrive in pieces whose
arguments are unfinished JSON until the reply ends: they are written only when
it does (finish or fail).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import replace

from engines.store.records import MessageRecord, MessageStatus, TurnMetrics, tool_calls_to_json
from engines.store.schema import StoreError
from engines.tools.assemble import ToolCallAssembler
from engines.types import Delta, Done, Error, Reasoning, StreamEvent, ToolCall, ToolCallDelta

DEFAULT_FLUSH_INTERVAL_S = 1.0

SaveReply = Callable[[MessageRecord], MessageRecord]
"""Writes a reply's content, reasoning, tool calls, status, error and metrics; returns the record as written."""


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
        self._thinking: list[str] = []
        self._calls = ToolCallAssembler()
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
    def reasoning(self) -> str:
        """The thinking so far."""
        with self._lock:
            return "".join(self._thinking)

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        """The calls so far (the last one's arguments may still be arriving)."""
        with self._lock:
            return self._calls.calls()

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
        self._add(self._parts, text)

    def append_reasoning(self, text: str) -> None:
        """Add streamed thinking; written with the text, on the same schedule."""
        self._add(self._thinking, text)

    def add_tool_call(self, delta: ToolCallDelta) -> None:
        """Add a piece of a tool call; the calls are written when the reply ends."""
        with self._lock:
            self._check_open()
            self._calls.add(delta)

    def flush(self) -> None:
        """Write the reply so far now (e.g. before the app quits mid-reply)."""
        with self._lock:
            if self._final is None and self._dirty:
                self._flush()

    def finish(self, done: Done) -> MessageRecord:
        """Write the whole reply as 'complete' (or 'cancelled') with its tool calls and metrics."""
        status: MessageStatus = "cancelled" if done.finish_reason == "cancelled" else "complete"
        with self._lock:
            self._check_open()
            self._final = self._save(self._snapshot(status, None, TurnMetrics.from_done(done), self._calls.calls()))
            return self._final

    def fail(self, message: str) -> MessageRecord:
        """Mark the reply 'error' with `message`, keeping the text, thinking and calls generated so far."""
        with self._lock:
            self._check_open()
            self._final = self._save(self._snapshot("error", message, None, self._calls.calls()))
            return self._final

    @property
    def save_error(self) -> StoreError | None:
        """The last database error feed() kept instead of raising (the text is still in `text`)."""
        return self._save_error

    def feed(self, event: StreamEvent) -> None:
        """Route a stream event: Delta, Reasoning and ToolCallDelta accumulate, Done finishes, Error fails.

        Usable as the manager's EventSink: it runs on the engine's worker thread,
        so a database error is kept in `save_error` rather than raised there.
        """
        try:
            if isinstance(event, Delta):
                self.append(event.text)
            elif isinstance(event, Reasoning):
                self.append_reasoning(event.text)
            elif isinstance(event, ToolCallDelta):
                self.add_tool_call(event)
            elif isinstance(event, Done):
                self.finish(event)
            elif isinstance(event, Error):
                self.fail(event.message)
        except StoreError as exc:
            self._save_error = exc

    def _add(self, parts: list[str], text: str) -> None:
        if not text:
            return
        with self._lock:
            self._check_open()
            parts.append(text)
            self._dirty = True
            if self._clock() - self._last_flush >= self._interval:
                self._flush()

    def _snapshot(
        self, status: MessageStatus, error: str | None, metrics: TurnMetrics | None, calls: tuple[ToolCall, ...]
    ) -> MessageRecord:
        # Join the pieces once, so later flushes do not join the whole reply again.
        self._parts = ["".join(self._parts)]
        self._thinking = ["".join(self._thinking)]
        return replace(
            self._record,
            content=self._parts[0],
            reasoning=self._thinking[0],
            tool_calls=calls,
            status=status,
            error=error,
            metrics=metrics,
        )

    def _flush(self) -> None:
        self._save(self._snapshot("streaming", None, None, ()))
        self._dirty = False
        self._last_flush = self._clock()
        self._flushes += 1

    def _check_open(self) -> None:
        if self._final is not None:
            raise StoreError(f"reply {self.message_id} has already ended ({self._final.status})")


def write_reply(conn: sqlite3.Connection, record: MessageRecord, now: float) -> None:
    """Write a reply's text, thinking, calls, status and metrics in `conn`'s transaction; nothing when its row is
    gone (the session was deleted meanwhile)."""
    metrics = record.metrics
    # While streaming, also undo an 'interrupted' mark that another process's open may have set.
    guard = " AND status IN ('streaming', 'interrupted')" if record.status == "streaming" else ""
    cur = conn.execute(
        "UPDATE messages SET content = ?, reasoning = ?, tool_calls_json = ?, status = ?, error = ?,"
        " updated_at = ? WHERE id = ?" + guard,
        (
            record.content,
            record.reasoning or None,
            tool_calls_to_json(record.tool_calls),
            record.status,
            record.error,
            now,
            record.id,
        ),
    )
    if not cur.rowcount:
        return
    conn.execute("UPDATE sessions SET updated_at = ? WHERE id = ?", (now, record.session_id))
    if metrics is not None:
        conn.execute(
            "INSERT OR REPLACE INTO turn_metrics (message_id, ttft_ms, tokens_per_s, total_ms,"
            " prompt_tokens, completion_tokens, finish_reason, reasoning_tokens, reply_ttft_ms)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.id,
                metrics.ttft_ms,
                metrics.tokens_per_s,
                metrics.total_ms,
                metrics.prompt_tokens,
                metrics.completion_tokens,
                metrics.finish_reason,
                metrics.reasoning_tokens,
                metrics.reply_ttft_ms,
            ),  # `estimated` is not stored
        )
