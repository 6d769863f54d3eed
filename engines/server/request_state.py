"""What a route leaves in the request's ASGI state (`scope["state"]`) for the record the guard builds when the
request ends: the model it named, its token counts and its time to first token.

Routes write with `note_model` / `note_usage`; the guard reads with `record_fields(scope.get("state", {}))` and
passes the result into `RequestRecord(**...)`. A streamed reply notes its usage before its last body message, so
the values are there when the guard (outside the app) builds the record.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any, TypedDict

from engines.types import Done

MODEL = "model"
PROMPT_TOKENS = "prompt_tokens"
COMPLETION_TOKENS = "completion_tokens"
TTFT_MS = "ttft_ms"


class RecordFields(TypedDict, total=False):
    """The RequestRecord fields a route can fill in (each missing when the route did not say)."""

    model: str
    prompt_tokens: int
    completion_tokens: int
    ttft_ms: float


def _state(scope: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    state: MutableMapping[str, Any] = scope.setdefault("state", {})
    return state


def note_model(scope: MutableMapping[str, Any], name: str) -> None:
    """The model the request named (as the client spelled it)."""
    _state(scope)[MODEL] = name


def note_usage(
    scope: MutableMapping[str, Any], prompt_tokens: int, completion_tokens: int = 0, ttft_ms: float | None = None
) -> None:
    """The request's token counts and, for a generation, its time to the first token."""
    state = _state(scope)
    state[PROMPT_TOKENS] = prompt_tokens
    state[COMPLETION_TOKENS] = completion_tokens
    if ttft_ms is not None:
        state[TTFT_MS] = ttft_ms


def note_done(scope: MutableMapping[str, Any], done: Done) -> None:
    """Usage and time to first token of a finished generation. The time counts the wait in the instance's queue
    too: it is what the client waited for its first token."""
    metrics = done.metrics
    ttft = None if metrics is None else metrics.queue_ms + metrics.ttft_ms
    note_usage(scope, done.usage.prompt_tokens, done.usage.completion_tokens, ttft)


def record_fields(state: Mapping[str, Any]) -> RecordFields:
    """The fields for RequestRecord from a request's state; values of the wrong type are left out."""
    out: RecordFields = {}
    model = state.get(MODEL)
    if isinstance(model, str):
        out["model"] = model
    prompt = state.get(PROMPT_TOKENS)
    if isinstance(prompt, int) and not isinstance(prompt, bool):
        out["prompt_tokens"] = prompt
    completion = state.get(COMPLETION_TOKENS)
    if isinstance(completion, int) and not isinstance(completion, bool):
        out["completion_tokens"] = completion
    ttft = state.get(TTFT_MS)
    if isinstance(ttft, int | float) and not isinstance(ttft, bool):
        out["ttft_ms"] = float(ttft)
    return out
