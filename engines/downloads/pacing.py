"""Pacing of one transfer: progress reports (smoothed speed, ETA, at most ~10 a second), bandwidth cap, backoff."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

PROGRESS_INTERVAL_S = 0.1


@dataclass(frozen=True, slots=True)
class TransferProgress:
    """A moment of one transfer: bytes on disk so far, total if known, smoothed speed and ETA."""

    bytes_done: int
    total: int | None
    speed_bps: float
    eta_s: float | None


def default_backoff(attempt: int) -> float:
    """Seconds to wait before retry number `attempt` (1-based): 1, 2, 4 ... capped at 30."""
    return float(min(30.0, 2.0 ** (attempt - 1)))


class TokenBucket:
    """Bandwidth cap: lets `rate` bytes per second through, with a burst of a quarter second.

    One bucket may be shared by several transfers (the queue's cap is over all of them): the
    accounting is under a lock, the waiting is not.
    """

    def __init__(self, rate: int) -> None:
        self.rate = float(rate)
        self.capacity = max(self.rate / 4, 1.0)
        self.tokens = self.capacity
        self.stamp = time.monotonic()
        self._lock = threading.Lock()

    def take(self, n: int, cancel: threading.Event) -> None:
        """Account for `n` bytes, sleeping (or until cancelled) while in debt."""
        with self._lock:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            self.tokens -= n
            debt = -self.tokens
        if debt > 0:
            cancel.wait(debt / self.rate)


class Meter:
    """Counts bytes, smooths speed (exponential moving average) and rate-limits the progress callback."""

    def __init__(self, callback: Callable[[TransferProgress], None] | None, done: int, total: int | None) -> None:
        self.callback = callback
        self.done = done
        self.total = total
        self.speed = 0.0
        self.last_emit = 0.0
        self.sample_at = time.monotonic()
        self.sample_done = done

    def add(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last_emit >= PROGRESS_INTERVAL_S:
            self.emit(now)

    def reset(self, done: int) -> None:
        self.done = self.sample_done = done

    def emit(self, now: float | None = None) -> None:
        """Report now, whatever the time since the last report (used at the end)."""
        now = time.monotonic() if now is None else now
        dt = now - self.sample_at
        if dt > 0:
            instant = (self.done - self.sample_done) / dt
            self.speed = instant if self.speed == 0 else 0.7 * self.speed + 0.3 * instant
        self.sample_at, self.sample_done, self.last_emit = now, self.done, now
        if self.callback is None:
            return
        eta = None
        if self.total is not None and self.speed > 0:
            eta = max(0.0, (self.total - self.done) / self.speed)
        self.callback(TransferProgress(self.done, self.total, self.speed, eta))
