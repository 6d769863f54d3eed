"""Each instance's own log: the lines logged on its worker thread (the engine's, llama.cpp's C log included).

The engine manager runs every instance on a thread named "instance-<run id>";
this handler files records by that name and keeps the last lines of each, so
the instances screen can show why a model is slow to load or failed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

PREFIX = "instance-"
MAX_LINES = 500
LOGGERS = ("engines", "llama_cpp.c")
"""Loggers whose records are kept: ours, and llama.cpp's C log as forwarded by the llama.cpp adapter."""


class InstanceLog(logging.Handler):
    """Keeps the last MAX_LINES formatted records logged on each instance's thread."""

    def __init__(self, max_lines: int = MAX_LINES) -> None:
        super().__init__(level=logging.DEBUG)
        self.max_lines = max_lines
        self._lines: dict[str, deque[str]] = {}
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        thread = record.threadName or ""
        if not thread.startswith(PREFIX):
            return
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        line = f"{stamp} {record.levelname.lower():7} {record.getMessage()}"
        with self._guard:
            self._lines.setdefault(thread.removeprefix(PREFIX), deque(maxlen=self.max_lines)).append(line)

    def lines(self, run_id: str) -> list[str]:
        """The kept lines of one instance, oldest first."""
        with self._guard:
            return list(self._lines.get(run_id, ()))


_installed: InstanceLog | None = None


def install() -> InstanceLog:
    """Attach the one InstanceLog to our loggers (idempotent) and return it."""
    global _installed
    if _installed is None:
        _installed = InstanceLog()
        for name in LOGGERS:
            logger = logging.getLogger(name)
            logger.addHandler(_installed)
            if logger.level == logging.NOTSET or logger.level > logging.DEBUG:
                logger.setLevel(logging.DEBUG)
    return _installed
