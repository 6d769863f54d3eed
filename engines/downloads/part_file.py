"""The `.part` file of one download: locked, hashed as it grows, written on its own thread, synced before use."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import hashlib
import os
import queue
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from engines.errors import DownloadError

try:  # advisory lock so two processes never write the same .part; absent on Windows
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

_WRITEBACK_EVERY = 8 << 20  # start disk write-back as we go, so the fsync before the rename has little left


class DiskFull(DownloadError):
    """Not enough free disk space. Found before starting, the `.part` is kept for resume; hit while writing
    (`while_writing`), the transfer deletes it, so a full disk does not stay full because of us."""

    def __init__(self, message: str, *, while_writing: bool = False) -> None:
        super().__init__(message)
        self.while_writing = while_writing


class PartInUse(DownloadError):
    """Another process is already writing this download's `.part` file."""


def _writeback_starter() -> Callable[[int, int, int], object] | None:
    """Linux `sync_file_range(fd, off, n, SYNC_FILE_RANGE_WRITE)`: starts write-back without waiting for it."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        func = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    func.restype = ctypes.c_int
    return lambda fd, offset, count: func(fd, offset, count, 2)


_start_writeback = _writeback_starter()


def write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is written (a short write leaves a valid prefix on disk)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class PartFile:
    """An open, locked `.part`: `size` and `digest` always describe its bytes once `settle()` returned.

    Chunks given to `put` are written and hashed on a thread of their own, so sha256 and disk I/O overlap
    the network (both release the GIL); `on_written(n)` is called from that thread.
    """

    def __init__(self, path: Path, on_written: Callable[[int], None]) -> None:
        self.path = path
        self.on_written = on_written
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        self.error: DownloadError | None = None
        self.chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=64)
        self.thread: threading.Thread | None = None
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise PartInUse(f"{path.name} is already being written by another download") from None
            self.size = os.fstat(self.fd).st_size
            self.digest = self._hash_existing()
        except BaseException:
            os.close(self.fd)
            raise
        self.started_writeback = self.size

    def _hash_existing(self) -> hashlib._Hash:
        digest = hashlib.sha256()
        os.lseek(self.fd, 0, os.SEEK_SET)
        while block := os.read(self.fd, 1 << 20):
            digest.update(block)
        return digest

    def truncate(self) -> None:
        """Discard the bytes held so far (call only while settled)."""
        os.ftruncate(self.fd, 0)
        os.lseek(self.fd, 0, os.SEEK_SET)
        self.size = self.started_writeback = 0
        self.digest = hashlib.sha256()

    def put(self, chunk: bytes) -> None:
        """Queue a chunk for writing; raises the error of an earlier write."""
        if self.error is not None:
            raise self.error
        if self.thread is None:
            self.thread = threading.Thread(target=self._loop, name="download-writer", daemon=True)
            self.thread.start()
        self.chunks.put(chunk)

    def settle(self) -> None:
        """Wait until every queued chunk is on disk; raise what went wrong while writing."""
        self.chunks.join()
        if self.error is not None:
            raise self.error

    def sync(self) -> None:
        os.fsync(self.fd)

    def close(self) -> None:
        if self.thread is not None:
            self.chunks.put(None)
            self.thread.join()
        os.close(self.fd)

    def _loop(self) -> None:
        while (chunk := self.chunks.get()) is not None:
            try:
                if self.error is None:
                    self._write(chunk)
            except BaseException as exc:  # handed to the receiving thread, which raises it
                failure = exc if isinstance(exc, DownloadError) else DownloadError(f"cannot write {self.path}: {exc}")
                self.error = failure
            finally:
                self.chunks.task_done()

    def _write(self, chunk: bytes) -> None:
        try:
            write_all(self.fd, chunk)
        except OSError as exc:
            with contextlib.suppress(OSError):  # drop a short write's stray prefix: size and digest stay in step
                os.ftruncate(self.fd, self.size)
                os.lseek(self.fd, 0, os.SEEK_END)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFull(f"disk full while writing {self.path}", while_writing=True) from None
            raise DownloadError(f"cannot write {self.path}: {exc.strerror}") from None
        self.digest.update(chunk)
        self.size += len(chunk)
        if _start_writeback is not None and self.size - self.started_writeback >= _WRITEBACK_EVERY:
            _start_writeback(self.fd, self.started_writeback, self.size - self.started_writeback)
            self.started_writeback = self.size
        self.on_written(len(chunk))
