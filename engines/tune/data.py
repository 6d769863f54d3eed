"""Training data: JSONL rows in the chat, instruction or text shape, read and checked before any model loads.

A file is read streamed and bounded (MAX_FILE_BYTES, MAX_LINE_BYTES, MAX_ROWS) while its SHA-256 is taken from the
same bytes. Every refused row becomes a RowProblem naming its 1-based line and what is wrong with it; blank lines are
skipped. The validation split is either a file of its own or a seeded random fraction of the rows.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from engines.errors import BadRequest
from engines.tune.types import DataReport, DataShape, RowProblem
from engines.types import ChatMessage, Role

MAX_FILE_BYTES = 1 << 30
"""A data file larger than this (1 GiB) is refused before reading."""
MAX_LINE_BYTES = 1 << 20
"""A line longer than this (1 MiB) is a refused row."""
MAX_ROWS = 1_000_000
"""A file with more non-blank lines than this is refused."""
MAX_PROBLEMS = 1000
"""Refused rows listed one by one; past this, one last entry counts the rest."""

CHAT_ROLES: tuple[Role, ...] = ("system", "user", "assistant")
_CHUNK = 1 << 16


@dataclass(frozen=True, slots=True)
class TrainRow:
    """One usable row: chat and instruction rows as messages, text rows as text."""

    line: int
    """1-based line in its file."""
    shape: DataShape
    messages: tuple[ChatMessage, ...] = ()
    text: str | None = None


@dataclass(frozen=True, slots=True)
class _Scan:
    rows: list[TrainRow]
    problems: list[RowProblem]
    sha256: str


def read_rows(path: Path) -> tuple[list[TrainRow], list[RowProblem]]:
    """The usable rows of a JSONL file and the refused ones; BadRequest when the file is missing or too large."""
    scan = _scan(path)
    return scan.rows, scan.problems


def validate_data(path: Path, *, val_file: Path | None = None, val_fraction: float = 0.1, seed: int = 0) -> DataReport:
    """Check a data file (and a validation file) row by row and count the split; token lengths are left None."""
    scan = _scan(path)
    problems = list(scan.problems)
    notes: list[str] = []
    val_rows: list[TrainRow] | None = None
    if val_file is not None:
        val_scan = _scan(val_file)
        val_rows = val_scan.rows
        problems += [RowProblem(p.line, f"validation file {val_file.name}: {p.message}") for p in val_scan.problems]
        if not val_rows:
            notes.append(f"validation file {val_file.name} has no usable row")
    train, val = split_rows(scan.rows, val_rows=val_rows, val_fraction=val_fraction, seed=seed)
    if val_file is None and val_fraction > 0 and len(scan.rows) == 1:
        notes.append("only one usable row: it is trained on and there is no validation split")
    if not scan.rows:
        notes.append(f"{path.name} has no usable row")
    shapes: dict[str, int] = {}
    for row in scan.rows:
        shapes[row.shape.value] = shapes.get(row.shape.value, 0) + 1
    return DataReport(
        path=path,
        rows=len(scan.rows),
        shapes=shapes,
        problems=tuple(problems),
        sha256=scan.sha256,
        train_rows=len(train),
        val_rows=len(val),
        notes=tuple(notes),
    )


def split_rows(
    rows: Sequence[TrainRow], *, val_rows: Sequence[TrainRow] | None = None, val_fraction: float, seed: int
) -> tuple[list[TrainRow], list[TrainRow]]:
    """(train, validation): every row and `val_rows` when given, else a seeded random `val_fraction` of the rows
    (at least one on each side from two rows up; a single row is all training). Both keep the file's order."""
    if val_rows is not None:
        return list(rows), list(val_rows)
    if not 0.0 <= val_fraction < 1.0:
        raise BadRequest(f"validation fraction must be at least 0 and below 1, not {val_fraction}")
    n = len(rows)
    if val_fraction == 0.0 or n < 2:
        return list(rows), []
    k = min(max(round(n * val_fraction), 1), n - 1)
    chosen = set(random.Random(seed).sample(range(n), k))
    train = [row for i, row in enumerate(rows) if i not in chosen]
    val = [row for i, row in enumerate(rows) if i in chosen]
    return train, val


def _scan(path: Path) -> _Scan:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise BadRequest(f"data file not found: {path}") from None
    except OSError as exc:
        raise BadRequest(f"cannot read data file {path}: {exc.strerror or exc}") from None
    if not path.is_file():
        raise BadRequest(f"data file {path} is not a file")
    if size > MAX_FILE_BYTES:
        raise BadRequest(f"data file {path} is {size / (1 << 30):.1f} GiB; at most 1 GiB is read: split it")
    digest = hashlib.sha256()
    rows: list[TrainRow] = []
    problems: list[RowProblem] = []
    refused = 0
    counted = 0
    try:
        with path.open("rb") as handle:
            for number, raw in enumerate(_lines(handle, digest), start=1):
                if raw is not None and not raw.strip():
                    continue
                counted += 1
                if counted > MAX_ROWS:
                    raise BadRequest(f"data file {path} has more than {MAX_ROWS:,} rows: split it")
                row, message = (None, f"line is longer than {MAX_LINE_BYTES >> 20} MiB") if raw is None else _parse(raw)
                if row is not None:
                    rows.append(TrainRow(number, *row))
                    continue
                refused += 1
                if refused <= MAX_PROBLEMS:
                    problems.append(RowProblem(number, message))
    except OSError as exc:
        raise BadRequest(f"cannot read data file {path}: {exc.strerror or exc}") from None
    if refused > MAX_PROBLEMS:
        problems.append(RowProblem(0, f"and {refused - MAX_PROBLEMS:,} more refused rows (first {MAX_PROBLEMS} shown)"))
    return _Scan(rows, problems, digest.hexdigest())


def _lines(handle: Any, digest: Any) -> Iterator[bytes | None]:
    """Each line's bytes (None for one over MAX_LINE_BYTES), hashing every byte read; never holds a long line."""
    buffer = b""
    overlong = False
    while chunk := handle.read(_CHUNK):
        digest.update(chunk)
        buffer += chunk
        start = 0
        while (end := buffer.find(b"\n", start)) >= 0:
            yield None if overlong or end - start > MAX_LINE_BYTES else buffer[start:end]
            overlong, start = False, end + 1
        buffer = buffer[start:]
        if len(buffer) > MAX_LINE_BYTES:
            overlong, buffer = True, b""
    if overlong:
        yield None
    elif buffer:
        yield buffer


def _parse(raw: bytes) -> tuple[tuple[DataShape, tuple[ChatMessage, ...], str | None] | None, str]:
    """(shape, messages, text) of a line, or None and why it is refused."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8 text (byte {exc.start + 1})"
    try:
        data = json.loads(text.removeprefix("\ufeff"))
    except ValueError as exc:
        return None, f"not JSON: {exc}"
    except RecursionError:
        return None, "not JSON: nested too deeply"
    if not isinstance(data, dict):
        return None, f"not a JSON object but {_kind(data)}"
    if "messages" in data:
        return _chat(data["messages"])
    if "instruction" in data or "output" in data:
        return _instruction(data)
    if "text" in data:
        value = data["text"]
        if not isinstance(value, str):
            return None, f"text is {_kind(value)}, not a string"
        if not value.strip():
            return None, "text is empty"
        return (DataShape.TEXT, (), value), ""
    keys = ", ".join(repr(k) for k in list(data)[:8]) + (", ..." if len(data) > 8 else "")
    return None, (
        f"unknown shape: found keys {keys or 'none'}; expected 'messages' (chat), 'instruction' and 'output', or 'text'"
    )


def _chat(messages: Any) -> tuple[tuple[DataShape, tuple[ChatMessage, ...], str | None] | None, str]:
    if not isinstance(messages, list):
        return None, f"messages is {_kind(messages)}, not a list"
    if not messages:
        return None, "messages is empty"
    out: list[ChatMessage] = []
    for index, item in enumerate(messages, start=1):
        if not isinstance(item, dict):
            return None, f"message {index} is {_kind(item)}, not an object"
        role = item.get("role")
        if role not in CHAT_ROLES:
            return None, f"message {index} has bad role {role!r}: expected system, user or assistant"
        content = item.get("content")
        if not isinstance(content, str):
            return None, f"message {index} ({role}): content is {_kind(content)}, not a string"
        if not content.strip():
            return None, f"message {index} ({role}): empty content"
        out.append(ChatMessage(cast(Role, role), content))
    if not any(m.role == "assistant" for m in out):
        return None, "no assistant message: nothing to learn"
    return (DataShape.CHAT, tuple(out), None), ""


def _instruction(data: dict[str, Any]) -> tuple[tuple[DataShape, tuple[ChatMessage, ...], str | None] | None, str]:
    fields: dict[str, str] = {}
    for name in ("instruction", "input", "output"):
        value = data.get(name, "")
        if value is None and name == "input":
            value = ""
        if not isinstance(value, str):
            return None, f"{name} is {_kind(value)}, not a string"
        fields[name] = value
    for name in ("instruction", "output"):
        if name not in data:
            return None, f"instruction row without {name!r}"
        if not fields[name].strip():
            return None, f"{name} is empty"
    prompt = fields["instruction"] + (f"\n\n{fields['input']}" if fields["input"].strip() else "")
    messages = (ChatMessage("user", prompt), ChatMessage("assistant", fields["output"]))
    return (DataShape.INSTRUCTION, messages, None), ""


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object" if isinstance(value, dict) else type(value).__name__
