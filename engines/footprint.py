"""What a model costs this process: RSS measured around a load, and heap handed back after an unload.

Measured with llama-cpp-python 0.3.36 on CPU, Gemma 3 270M Q4_K_M at n_ctx 2048: a load grows RSS by
~350 MB, of which ~250 MB is the mmap'd model file (file-backed pages, which the kernel counts as
available memory) and ~100 MB heap (KV cache, compute buffers). On close the mapping goes at once,
but glibc keeps ~60-100 MB of the freed heap until malloc_trim(0) returns it; with the trim, RSS
falls back to its level before the load on every run.
"""

from __future__ import annotations

import ctypes
import itertools
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ProcessMemory:
    """This process's resident memory at one moment; `mapped_bytes` is the file-backed part (None off Linux)."""

    rss_bytes: int
    mapped_bytes: int | None = None


def process_memory() -> ProcessMemory:
    """Resident set size of this process, and its file-backed part where the OS says."""
    import psutil

    info = psutil.Process().memory_info()
    shared = getattr(info, "shared", None)  # Linux: RssFile + RssShmem
    return ProcessMemory(int(info.rss), None if shared is None else int(shared))


class MemoryChanges:
    """Tracks loads and unloads in flight, so a measurement knows whether another one overlapped it.

    RSS is process-wide: while two models load at once, each load's RSS delta holds part of the other.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._active: dict[int, bool] = {}

    def begin(self) -> int:
        """Mark a change as started; returns its token."""
        with self._lock:
            token = next(self._ids)
            overlapped = bool(self._active)
            for other in self._active:
                self._active[other] = True
            self._active[token] = overlapped
            return token

    def end(self, token: int) -> bool:
        """Mark a change as finished; True when another change overlapped it."""
        with self._lock:
            return self._active.pop(token, True)


CHANGES = MemoryChanges()
"""Process-wide: every manager's loads and unloads share one RSS."""


@dataclass(frozen=True, slots=True)
class Growth:
    """How much RSS (and its file-backed part) grew across a change; None when it cannot be told."""

    rss_bytes: int | None
    mapped_bytes: int | None


def measure(change: Callable[[], None], *, read: Callable[[], ProcessMemory] = process_memory) -> Growth:
    """Run `change` (a load) and return the RSS growth it caused; None parts when others overlapped it."""
    token = CHANGES.begin()
    before = read()
    try:
        change()
    finally:
        after = read()
        overlapped = CHANGES.end(token)
    if overlapped:
        return Growth(None, None)
    mapped: int | None = None
    if before.mapped_bytes is not None and after.mapped_bytes is not None:
        mapped = max(0, after.mapped_bytes - before.mapped_bytes)
    return Growth(max(0, after.rss_bytes - before.rss_bytes), mapped)


def release(unload: Callable[[], None]) -> None:
    """Run `unload`, then hand the heap it freed back to the OS, marked as a change for overlapping loads."""
    token = CHANGES.begin()
    try:
        unload()
    finally:
        trim_heap()
        CHANGES.end(token)


_malloc_trim: Callable[[int], int] | None = None
_trim_lock = threading.Lock()


def trim_heap() -> None:
    """Return freed heap pages to the OS (glibc keeps them, so neither RSS nor free RAM would recover)."""
    global _malloc_trim
    if not sys.platform.startswith("linux"):
        return
    with _trim_lock:
        if _malloc_trim is None:
            try:
                _malloc_trim = ctypes.CDLL(None).malloc_trim
            except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
                _malloc_trim = _no_trim
        _malloc_trim(0)


def _no_trim(pad: int) -> int:
    return 0
