"""The access log: one line per finished request on the `llm_tui.serve` logger, and optionally one JSON line per
request in a file of its own (`[serve] access_log`), rotated past `access_log_max_bytes`.

The line (fields split by one space; the error, when there is one, comes last):

    REQUEST_ID CALLER CLIENT METHOD PATH STATUS MS ms model=MODEL tokens=IN/OUT [ttft=T ms] [(ERROR)]

CALLER is the name of the key the request came with, or the client's address when it came without one; CLIENT is
the address and port; MODEL, IN, OUT are "-" when the request named none. The JSON line has the same facts under
`time`, `request_id`, `key`, `client`, `method`, `path`, `status`, `ms`, `model`, `prompt_tokens`,
`completion_tokens`, `ttft_ms` and `error` (null when unknown). Neither ever holds a key: requests are named by
the key's name. Text a client chose (path, model) is JSON-quoted when it holds spaces, quotes or control
characters, and the error (last, in parentheses) has its quotes and control characters escaped, so a request
cannot write a line of its own. The file is created with mode 0600 (it names clients and models) and so is each
file it rotates into.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import weakref
from io import TextIOWrapper
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import TYPE_CHECKING

from engines.config.serve import ServeConfig
from engines.errors import ConfigError

if TYPE_CHECKING:
    from engines.server.records import RequestRecord

log = logging.getLogger("llm_tui.serve")


class PrivateRotatingFileHandler(RotatingFileHandler):
    """A RotatingFileHandler whose files are created (or narrowed to) mode 0600."""

    def _open(self) -> TextIOWrapper:
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(self.baseFilename, flags, 0o600)
        if hasattr(os, "fchmod"):  # a file an older setting left readable to others is narrowed too
            with contextlib.suppress(OSError):
                os.fchmod(fd, 0o600)
        return open(fd, "a", encoding=self.encoding, errors=self.errors)


def field(text: str | None) -> str:
    """A value for the line: "-" for none, as is when plain, else JSON-quoted (spaces, quotes, control chars)."""
    if text is None or text == "":
        return "-"
    if all(c.isprintable() and not c.isspace() and c not in "\"'\\" for c in text):
        return text
    return json.dumps(text)


def caller(record: RequestRecord) -> str:
    """The key's name, or the client's address (without the port) for a request without a key."""
    if record.key:
        return record.key
    host, sep, port = record.client.rpartition(":")
    return host if sep and port.isdigit() else record.client


def line(record: RequestRecord) -> str:
    """The request's line for the `llm_tui.serve` logger (the format is in the module docstring)."""
    number = "-" if record.prompt_tokens is None else str(record.prompt_tokens)
    out = "-" if record.completion_tokens is None else str(record.completion_tokens)
    text = (
        f"{field(record.request_id)} {field(caller(record))} {field(record.client)} {field(record.method)} "
        f"{field(record.path)} {record.status} {record.ms:.0f} ms model={field(record.model)} tokens={number}/{out}"
    )
    if record.ttft_ms is not None:
        text += f" ttft={record.ttft_ms:.0f} ms"
    if record.error:
        text += f" ({json.dumps(record.error, ensure_ascii=False)[1:-1]})"
    return text


def json_line(record: RequestRecord, now: float | None = None) -> str:
    """The request as one JSON object (keys in the module docstring)."""
    at = time.time() if now is None else now
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at % 1 * 1000):03d}Z"
    return json.dumps(
        {
            "time": stamp,
            "request_id": record.request_id,
            "key": record.key,
            "client": record.client,
            "method": record.method,
            "path": record.path,
            "status": record.status,
            "ms": round(record.ms, 1),
            "model": record.model,
            "prompt_tokens": record.prompt_tokens,
            "completion_tokens": record.completion_tokens,
            "ttft_ms": None if record.ttft_ms is None else round(record.ttft_ms, 1),
            "error": record.error,
        },
        ensure_ascii=False,
    )


class AccessLog:
    """Writes each finished request's line to the logger, and its JSON line to the file when one is set."""

    def __init__(self, path: Path | None = None, max_bytes: int = 10 * 1024 * 1024, backups: int = 5) -> None:
        self.path = path
        self._file: PrivateRotatingFileHandler | None = None
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                handler = PrivateRotatingFileHandler(path, maxBytes=max_bytes, backupCount=max(1, backups))
            except OSError as exc:
                raise ConfigError(f"[serve] access_log: cannot write {path}: {exc.strerror or exc}") from None
            handler.setFormatter(logging.Formatter("%(message)s"))
            self._file = handler
            # A server run without the ASGI lifespan may never call close(): the file closes with this object.
            weakref.finalize(self, handler.close)

    @classmethod
    def of(cls, serve: ServeConfig) -> AccessLog:
        """The access log `[serve]` asks for (the logger only, without access_log). ConfigError: cannot write it."""
        return cls(serve.access_log, serve.access_log_max_bytes, serve.access_log_backups)

    def write(self, record: RequestRecord) -> None:
        log.info("%s", line(record))
        handler = self._file
        if handler is not None:
            handler.handle(logging.makeLogRecord({"name": log.name, "levelno": logging.INFO, "msg": json_line(record)}))

    def close(self) -> None:
        """Close the file (later requests go to the logger only)."""
        handler, self._file = self._file, None
        if handler is not None:
            handler.close()
