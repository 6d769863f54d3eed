"""Find tool calls in a model's reply text, in the formats models are trained to write them.

- Hermes / Qwen 2.5 / Qwen 3: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, once per call.
- Llama 3.1+: `<|python_tag|>{"name": ..., "parameters": {...}}` (calls joined by `;`), or the whole reply being
  such an object.
- Mistral: `[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]` (v3), or `[TOOL_CALLS]name[ARGS]{...}` (v11+).
- A bare JSON object or array of calls: what a grammar-forced call (engines.tools.forced) writes.

A text that only looks like a call (bad JSON, no name) is not one: it stays reply text, so nothing is lost.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass

from engines.types import ToolCall

HERMES_OPEN, HERMES_CLOSE = "<tool_call>", "</tool_call>"
PYTHON_TAG = "<|python_tag|>"
MISTRAL_CALLS, MISTRAL_ARGS = "[TOOL_CALLS]", "[ARGS]"
MARKERS: tuple[str, ...] = (HERMES_OPEN, MISTRAL_CALLS, PYTHON_TAG)
"""Texts that start the calls of a reply wherever they appear in it."""
JSON_STARTS = ("{", "[")
"""How a reply that is nothing but a call (Llama 3's plain JSON, a forced call) begins."""

_MISTRAL_NAME = re.compile(r"\s*([A-Za-z0-9_.:-]{1,128})\s*$")
_DECODER = json.JSONDecoder()


@dataclass(frozen=True, slots=True)
class Parsed:
    """A reply split into its text (before the calls) and its calls."""

    content: str
    calls: tuple[ToolCall, ...]


def new_call_id() -> str:
    """A fresh call id in OpenAI's shape (`call_` and 24 hex digits)."""
    return "call_" + secrets.token_hex(12)


def parse_calls(text: str) -> Parsed | None:
    """The calls in `text` and the text before them, or None when it holds no well-formed call."""
    for marker, parser in ((HERMES_OPEN, _hermes), (MISTRAL_CALLS, _mistral), (PYTHON_TAG, _python_tag)):
        at = text.find(marker)
        if at >= 0:
            calls = parser(text[at:])
            return Parsed(text[:at].strip(), calls) if calls else None
    stripped = text.strip()
    if stripped.startswith(JSON_STARTS):
        calls = _json_calls(stripped, separators=";,")
        return Parsed("", calls) if calls else None
    return None


def _hermes(text: str) -> tuple[ToolCall, ...]:
    calls: list[ToolCall] = []
    for chunk in text.split(HERMES_OPEN)[1:]:
        body = chunk.split(HERMES_CLOSE, 1)[0]  # a missing close tag at the very end is forgiven
        found = _json_calls(body.strip())
        if not found:
            return ()
        calls.extend(found)
    return tuple(calls)


def _python_tag(text: str) -> tuple[ToolCall, ...]:
    return _json_calls(text[len(PYTHON_TAG) :].strip(), separators=";")


def _mistral(text: str) -> tuple[ToolCall, ...]:
    calls: list[ToolCall] = []
    for chunk in text.split(MISTRAL_CALLS)[1:]:
        chunk = chunk.strip()
        if MISTRAL_ARGS in chunk and not chunk.startswith(JSON_STARTS):  # v11: name[ARGS]{...}
            name, _, args = chunk.partition(MISTRAL_ARGS)
            match = _MISTRAL_NAME.match(name)
            value = _one_value(args.strip())
            if match is None or not isinstance(value, dict):
                return ()
            calls.append(ToolCall(new_call_id(), match.group(1), _dump(value)))
        else:
            found = _json_calls(chunk)
            if not found:
                return ()
            calls.extend(found)
    return tuple(calls)


def _json_calls(text: str, separators: str = "") -> tuple[ToolCall, ...]:
    """Calls from JSON values (objects, or arrays of objects) that fill `text`, apart from `separators`."""
    calls: list[ToolCall] = []
    at = 0
    while at < len(text):
        try:
            value, end = _DECODER.raw_decode(text, at)
        except json.JSONDecodeError:
            return ()
        items = value if isinstance(value, list) else [value]
        for item in items:
            call = _call_of(item)
            if call is None:
                return ()
            calls.append(call)
        at = end
        while at < len(text) and (text[at].isspace() or text[at] in separators):
            at += 1
    return tuple(calls)


def _one_value(text: str) -> object:
    try:
        value, end = _DECODER.raw_decode(text)
    except json.JSONDecodeError:
        return None
    return value if not text[end:].strip() else None


def _call_of(item: object) -> ToolCall | None:
    """A call from `{"name": ..., "arguments" | "parameters": {...}}` (arguments may also be JSON text)."""
    if not isinstance(item, dict):
        return None
    body: dict[str, object] = item
    function = body.get("function")
    if isinstance(function, dict):  # OpenAI's own shape, written out by some fine-tunes
        body = function
    name = body.get("name")
    args = body.get("arguments", body.get("parameters", {}))
    if isinstance(args, str):
        args = _one_value(args)
    if not isinstance(name, str) or not name or not isinstance(args, dict):
        return None
    return ToolCall(new_call_id(), name, _dump(args))


def _dump(args: dict[str, object]) -> str:
    return json.dumps(args, ensure_ascii=False)
