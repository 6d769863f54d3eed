"""What every request leaves behind: its record, and the counts the app's serve panel and /metrics read.

The guard (engines.server.guard) builds one RequestRecord per request when it ends and hands it to
`ServerStats.end`, which counts it and tells the listeners (Prometheus metrics, ...).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("llm_tui.serve")


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One finished request, for the log and the app's serve panel."""

    method: str
    path: str
    status: int
    ms: float
    client: str
    error: str | None = None
    request_id: str = ""
    key: str | None = None
    """The name of the API key it came with (None: the server has no keys, or an open path)."""
    model: str | None = None
    """The model the request named (chat, completions, embeddings, transcriptions)."""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    ttft_ms: float | None = None
    """Time to the first token of a generation."""


RecordListener = Callable[[RequestRecord], None]
"""Told of every finished request (after the counts, outside the lock): the Prometheus metrics, the access log."""


@dataclass
class ServerStats:
    """Counts shared by the event loop and whoever displays them (the app polls `snapshot`)."""

    requests: int = 0
    errors: int = 0
    in_flight: int = 0
    cancelled: int = 0
    """Requests whose client went away before the reply ended (their generation was stopped)."""
    by_status: dict[int, int] = field(default_factory=dict)
    last_error: str | None = None
    recent: deque[RequestRecord] = field(default_factory=lambda: deque(maxlen=50))
    listeners: list[RecordListener] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_listener(self, listener: RecordListener) -> None:
        self.listeners.append(listener)

    def begin(self) -> None:
        with self._lock:
            self.in_flight += 1

    def note_cancelled(self) -> None:
        with self._lock:
            self.cancelled += 1

    def end(self, record: RequestRecord) -> None:
        with self._lock:
            self.in_flight -= 1
            self.requests += 1
            self.by_status[record.status] = self.by_status.get(record.status, 0) + 1
            if record.status >= 400 or record.error:
                self.errors += 1
                self.last_error = f"{record.status} {record.path}: {record.error or 'error'}"
            self.recent.append(record)
        for listener in self.listeners:
            try:
                listener(record)
            except Exception:  # a metrics or log failure must never fail the request
                log.exception("request listener failed")

    def recent_records(self) -> list[RequestRecord]:
        """The last requests, oldest first."""
        with self._lock:
            return list(self.recent)

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            return {
                "requests": self.requests,
                "errors": self.errors,
                "in_flight": self.in_flight,
                "cancelled": self.cancelled,
                "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
                "last_error": self.last_error,
            }
