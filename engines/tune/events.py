"""The training child's events as JSON lines: {"event": "<kind>", ...the fields}, paths as strings.

The parent reads them from the child's stdout and from the run's events.jsonl, so reading is bounded and tolerant:
an unknown kind, a missing or mistyped field, or an overlong line gives None rather than an error, and the torn
last line of a file whose writer was killed mid-write is left out.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any

from engines.tune.types import EVENT_TYPES, TuneEvent

MAX_LINE_CHARS = 64 * 1024
"""A line longer than this is refused (an event is a few hundred characters)."""
MAX_FILE_BYTES = 64 << 20
"""read_events reads at most the last 64 MiB of a file."""
MAX_EVENTS = 200_000
"""read_events keeps at most the last this many events."""

_KINDS: dict[type[Any], str] = {cls: kind for kind, cls in EVENT_TYPES.items()}


def to_line(event: TuneEvent) -> str:
    """One event as one line of JSON (no newline)."""
    data: dict[str, Any] = {"event": _KINDS[type(event)]}
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        data[f.name] = str(value) if isinstance(value, Path) else value
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def from_line(line: str) -> TuneEvent | None:
    """The event a line holds; None for a line over MAX_LINE_CHARS, not JSON, of an unknown kind or a bad field."""
    if len(line) > MAX_LINE_CHARS:
        return None
    try:
        data = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    kind = data.get("event")
    cls = EVENT_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        return None
    values: dict[str, Any] = {}
    for name, (allowed, required) in _FIELDS[cls].items():
        if name not in data:
            if required:
                return None
            continue
        value = _coerce(data[name], allowed)
        if value is _BAD:
            return None
        values[name] = value
    event: TuneEvent = cls(**values)
    return event


def read_events(path: Path) -> list[TuneEvent]:
    """The events of a run's events.jsonl in order: at most the last MAX_EVENTS of its last MAX_FILE_BYTES; bad lines
    and a last line without its newline (the writer died mid-write) are left out; [] when the file is missing."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, 2)
            start = max(0, size - MAX_FILE_BYTES)
            handle.seek(start)
            data = handle.read(MAX_FILE_BYTES)
    except FileNotFoundError:
        return []
    lines = data.split(b"\n")
    lines.pop()  # the text after the last newline: empty, or a torn line
    if start > 0 and lines:
        lines.pop(0)  # begins mid-line
    events: collections.deque[TuneEvent] = collections.deque(maxlen=MAX_EVENTS)
    for raw in lines:
        if len(raw) > 4 * MAX_LINE_CHARS:
            continue
        event = from_line(raw.decode("utf-8", errors="replace"))
        if event is not None:
            events.append(event)
    return list(events)


class _Bad:
    pass


_BAD = _Bad()


def _field_types(cls: type[Any]) -> dict[str, tuple[tuple[type[Any], ...], bool]]:
    """Each field's allowed runtime types and whether it has no default."""
    hints = typing.get_type_hints(cls)
    out: dict[str, tuple[tuple[type[Any], ...], bool]] = {}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        out[f.name] = (tuple(allowed), required)
    return out


def _coerce(value: Any, allowed: tuple[type[Any], ...]) -> Any:
    if value is None:
        return None if type(None) in allowed else _BAD
    if isinstance(value, bool):
        return value if bool in allowed else _BAD
    if isinstance(value, str):
        if str in allowed:
            return value
        if Path in allowed and value:
            return Path(value)
        return _BAD
    if isinstance(value, int) and int in allowed:
        return value
    if isinstance(value, int | float) and float in allowed:
        return float(value)
    return _BAD


_FIELDS = {cls: _field_types(cls) for cls in EVENT_TYPES.values()}
