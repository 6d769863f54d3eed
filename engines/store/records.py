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

from engines.types import Done, Params, Role, Tool, ToolCall

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
    reasoning_tokens: int = 0
    """Of completion_tokens, those spent thinking (0 for a reply without thinking, and for replies saved before
    thinking was counted)."""
    reply_ttft_ms: float | None = None
    """Time to the first token of the reply itself, when thinking came first."""

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
            reasoning_tokens=done.usage.reasoning_tokens,
            reply_ttft_ms=m.reply_ttft_ms if m else None,
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
    reasoning: str = ""
    """An assistant reply's thinking, kept apart from `content` (shown folded, never sent back to the model)."""
    tool_calls: tuple[ToolCall, ...] = ()
    """The calls an assistant reply made (written when the reply ends)."""
    tool_call_id: str | None = None
    """A tool message: the id of the call whose result `content` is."""
    tool_name: str | None = None
    """A tool message: the name of the function that was called."""


# --- Params <-> JSON ----------------------------------------------------------------------------


def params_to_dict(params: Params) -> dict[str, Any]:
    """Params as a JSON-ready dict (stop as a list, tools as {"name", "description", "parameters"} objects)."""
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
        if f.name == "tools" and isinstance(data.get("tools"), list):
            kwargs["tools"] = _tools_from_list(data["tools"])
        elif f.name in data:
            ok, value = _coerce(hints[f.name], data[f.name])
            if ok:
                kwargs[f.name] = value
    return Params(**kwargs)


def _tools_from_list(items: list[Any]) -> tuple[Tool, ...]:
    """Tools from their JSON objects; an entry without string name, description and parameters is left out."""
    keys = ("name", "description", "parameters")
    return tuple(
        Tool(item["name"], item["description"], item["parameters"])
        for item in items
        if isinstance(item, dict) and all(isinstance(item.get(k), str) for k in keys)
    )


@functools.cache
def _param_hints() -> dict[str, Any]:
    return get_type_hints(Params)


def _jsonable(value: object) -> object:
    if isinstance(value, tuple):
        return [dataclasses.asdict(v) if isinstance(v, Tool) else v for v in value]
    return value


def _coerce(hint: Any, value: Any) -> tuple[bool, Any]:
    args = get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None:
        return type(None) in args, None
    if get_origin(hint) is Literal:
        return value in get_args(hint), value
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
            reasoning_tokens=row["reasoning_tokens"] or 0,
            reply_ttft_ms=row["reply_ttft_ms"],
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
        reasoning=row["reasoning"] or "",
        tool_calls=tool_calls_from_json(row["tool_calls_json"]),
        tool_call_id=row["tool_call_id"],
        tool_name=row["tool_name"],
    )


def tool_calls_to_json(calls: tuple[ToolCall, ...]) -> str | None:
    """Calls as a JSON list of {"id", "name", "arguments"} (arguments kept as the text the model wrote); none: None."""
    if not calls:
        return None
    return json.dumps([{"id": c.id, "name": c.name, "arguments": c.arguments} for c in calls], ensure_ascii=False)


def tool_calls_from_json(text: str | None) -> tuple[ToolCall, ...]:
    """Calls from their stored JSON; entries that are not {"id", "name", "arguments"} strings are left out."""
    if not text:
        return ()
    try:
        data = json.loads(text)
    except ValueError:
        return ()
    if not isinstance(data, list):
        return ()
    keys = ("id", "name", "arguments")
    return tuple(
        ToolCall(item["id"], item["name"], item["arguments"])
        for item in data
        if isinstance(item, dict) and all(isinstance(item.get(k), str) for k in keys)
    )
