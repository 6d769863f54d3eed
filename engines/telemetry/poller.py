"""Sample telemetry in a background thread at a fixed interval, keeping a bounded history for sparklines."""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Mapping

from engines.telemetry.snapshot import Snapshot
from engines.telemetry.sources import GpuSource, PsutilSource

log = logging.getLogger(__name__)

HISTORY = 300
"""Samples kept: five minutes at the default 1 s."""


def take_snapshot(gpu: GpuSource, host: PsutilSource, pids: Mapping[int, str] | None = None) -> Snapshot:
    """One sample of both sources; a source that fails gives N/A fields and a status, never an exception."""
    try:
        gpus, status = gpu.sample(pids or {})
    except Exception as exc:  # a source must not raise, but a monitor must not die if one does
        log.exception("GPU source failed")
        gpus, status = (), f"GPU telemetry failed: {exc}"
    return Snapshot(taken_at=time.time(), gpus=gpus, host=host.sample(), gpu_status=status)


class TelemetryPoller:
    """Calls `on_snapshot` from its own thread every `interval_s`; `latest` and `history` are readable anywhere.

    `pids` is called before each sample for the process ids of our instances (pid -> run id).
    """

    def __init__(
        self,
        gpu: GpuSource,
        host: PsutilSource,
        *,
        interval_s: float = 1.0,
        on_snapshot: Callable[[Snapshot], None] | None = None,
        pids: Callable[[], Mapping[int, str]] | None = None,
        history: int = HISTORY,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"telemetry interval must be positive, got {interval_s}")
        self.gpu = gpu
        self.host = host
        self.interval_s = interval_s
        self.on_snapshot = on_snapshot
        self._pids = pids
        self._history: collections.deque[Snapshot] = collections.deque(maxlen=history)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def latest(self) -> Snapshot | None:
        with self._lock:
            return self._history[-1] if self._history else None

    def history(self) -> list[Snapshot]:
        """Oldest first."""
        with self._lock:
            return list(self._history)

    def sample_now(self) -> Snapshot:
        """Take one sample on the calling thread, record it and hand it on."""
        snapshot = take_snapshot(self.gpu, self.host, self._pids() if self._pids else None)
        with self._lock:
            self._history.append(snapshot)
        if self.on_snapshot is not None:
            self.on_snapshot(snapshot)
        return snapshot

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="telemetry", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                self.sample_now()
            except Exception:
                log.exception("telemetry sample failed")
            next_at += self.interval_s
            # Fixed rate without drift; after a stall (suspend), skip the missed ticks instead of bursting.
            next_at = max(next_at, time.monotonic())
            self._stop.wait(next_at - time.monotonic())

    def stop(self, timeout: float | None = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.gpu.close()
