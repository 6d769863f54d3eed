"""Records of the chat store, and sampling parameters as JSON.

Records are frozen so they can cross from the store to the UI thread safely.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sqlite3
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin, get_type_hints

from engines.types import Done, Params, Role

MessageStatus = Literal["complete", "streaming", "cancelled", "error", "interrupted"]
STATUSES: tuple[MessageStatus, ...] = ("complete", "streaming", "cancelled", "error", "interrupted")


@dataclass(frozen=True, slots=True)
class TurnMetrics:
    """Timing and token counts of one assistant reply."""

    ttft_ms: float | None = None
    tokens_per_s: float | None = None
    total_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    estimated: bool = False
    """The token counts are the engine's estimate (not stored: a reopened chat shows them plain)."""

    @classmethod
    def from_done(cls, done: Done) -> TurnMetrics:
        """The metrics a finished request reported."""
        m = done.metrics
        return cls(
            ttft_ms=m.ttft_ms if m else None,
            tokens_per_s=m.tokens_per_s if m else None,
            total_ms=m.total_ms if m else None,
            prompt_tokens=done.usage.prompt_tokens,
            completion_tokens=done.usage.completion_tokens,
            finish_reason=done.finish_reason,
            estimated=done.usage.estimated,
        )


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """One chat session as stored."""

    id: int
    title: str
    created_at: float
    updated_at: float
    model: str | None = None
    engine: str | None = None
    system_prompt: str | None = None
    params: Params | None = None


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """One message of a session as stored, with its reply metrics when it has them."""

    id: int
    session_id: int
    seq: int
    role: Role
    content: str
    status: MessageStatus
    created_at: float
    updated_at: float
    model: str | None = None
    engine: str | None = None
    params: Params | None = None
    error: str | None = None
    metrics: TurnMetrics | None = None
    images: tuple[str, ...] = ()
    """Paths of the images attached to a user message."""
    audio: str | None = None
    """The audio file a user message was transcribed from (`/audio PATH`), or None for typed text."""


# --- Params <-> JSON ----------------------------------------------------------------------------


def params_to_dict(params: Params) -> dict[str, Any]:
    """Params as a JSON-ready dict (stop as a list)."""
    return {f.name: _jsonable(getattr(params, f.name)) for f in dataclasses.fields(Params)}


def params_to_json(params: Params | None) -> str | None:
    """Params as compact, key-sorted JSON; None stays None."""
    return None if params is None else json.dumps(params_to_dict(params), sort_keys=True, separators=(",", ":"))


def params_from_json(text: str | None) -> Params | None:
    """Params from JSON, ignoring unknown keys and values of the wrong type; None or "" gives None."""
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return Params()
    return params_from_dict(data) if isinstance(data, Mapping) else Params()


def params_from_dict(data: Mapping[str, Any]) -> Params:
    """Params from a mapping, ignoring unknown keys and values of the wrong type."""
    hints = _param_hints()
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(Params):
        if f.name in data:
            ok, value = _coerce(hints[f.name], data[f.name])
            if ok:
                kwargs[f.name] = value
    return Params(**kwargs)


@functools.cache
def _param_hints() -> dict[str, Any]:
    return get_type_hints(Params)


def _jsonable(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


def _coerce(hint: Any, value: Any) -> tuple[bool, Any]:
    args = get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None:
        return type(None) in args, None
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if float in args and is_number:
        return True, float(value)
    if int in args and isinstance(value, int) and not isinstance(value, bool):
        return True, value
    if (str in args and isinstance(value, str)) or (bool in args and isinstance(value, bool)):
        return True, value
    if any(get_origin(a) is tuple for a in args) and isinstance(value, list):
        return all(isinstance(v, str) for v in value), tuple(value)
    return False, None


def session_from_row(row: sqlite3.Row) -> SessionRecord:
    """A sessions row as a record."""
    return SessionRecord(
        id=row["id"],
        title=row["title"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        model=row["model"],
        engine=row["engine"],
        system_prompt=row["system_prompt"],
        params=params_from_json(row["params_json"]),
    )


def message_from_row(row: sqlite3.Row) -> MessageRecord:
    """A messages row (joined with turn_metrics) as a record."""
    metrics = None
    if row["metrics_id"] is not None:
        metrics = TurnMetrics(
            row["ttft_ms"],
            row["tokens_per_s"],
            row["total_ms"],
            row["prompt_tokens"],
            row["completion_tokens"],
            row["finish_reason"],
        )
    return MessageRecord(
        id=row["id"],
        session_id=row["session_id"],
        seq=row["seq"],
        role=row["role"],
        content=row["content"],
        status=row["status"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        model=row["model"],
        engine=row["engine"],
        params=params_from_json(row["params_json"]),
        error=row["error"],
        metrics=metrics,
        images=tuple(json.loads(row["images_json"])) if row["images_json"] else (),
        audio=row["audio"],
    )
