"""A stdio server's stderr, kept off the terminal (the TUI owns it) in a bounded buffer read for error text."""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import TextIO

TAIL_BYTES = 16 * 1024
"""How much of the end of a server's stderr is kept; older output is dropped as new output arrives."""
TAIL_LINES = 5
"""Lines of it quoted in an error message."""
LINE_CHARS = 300


class StderrTail:
    """Reads a server's stderr through a pipe on the event loop, keeping only its last TAIL_BYTES."""

    def __init__(self, limit: int = TAIL_BYTES) -> None:
        self._limit = limit
        self._buffer = bytearray()
        self._ended = asyncio.Event()
        self._transport: asyncio.ReadTransport | None = None
        self._opened = False

    async def open(self) -> TextIO:
        """A pipe's write end to hand to the child as its stderr; the caller closes it once the child has it."""
        read_fd, write_fd = os.pipe()
        self._opened = True
        loop = asyncio.get_running_loop()
        try:
            self._transport, _ = await loop.connect_read_pipe(
                lambda: _TailProtocol(self), os.fdopen(read_fd, "rb", buffering=0)
            )
        except BaseException:
            os.close(write_fd)
            raise
        return os.fdopen(write_fd, "w")

    def feed(self, data: bytes) -> None:
        """Keep `data`, dropping the oldest bytes past the limit."""
        self._buffer += data
        if len(self._buffer) > self._limit:
            del self._buffer[: len(self._buffer) - self._limit]

    def end(self) -> None:
        """The pipe closed: every writer (the server and any child of it) is gone."""
        self._ended.set()

    async def drained(self, timeout: float) -> None:
        """Wait (at most `timeout` s) for the last bytes: a server's parting words may still be in the pipe."""
        if not self._opened:
            return
        # On timeout a grandchild still holds the pipe open; what arrived so far is what we quote.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ended.wait(), timeout)

    def lines(self, count: int = TAIL_LINES) -> list[str]:
        """The last `count` non-blank lines, each cut to LINE_CHARS."""
        text = self._buffer.decode(errors="replace")
        kept = [line.rstrip() for line in text.splitlines() if line.strip()]
        return [line if len(line) <= LINE_CHARS else line[: LINE_CHARS - 1] + "…" for line in kept[-count:]]

    def close(self) -> None:
        """Stop reading (the pipe's read end is closed)."""
        if self._transport is not None:
            self._transport.close()
            self._transport = None


class _TailProtocol(asyncio.Protocol):
    def __init__(self, tail: StderrTail) -> None:
        self._tail = tail

    def data_received(self, data: bytes) -> None:
        self._tail.feed(data)

    def eof_received(self) -> bool | None:
        self._tail.end()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._tail.end()
