"""A request whose `"model"` names a preset ([presets.NAME] in config.toml): the preset's model, system prompt and
parameters, under what the request itself sets (its own system message and every field it gives win)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields, replace
from typing import Any

from engines.presets import Preset
from engines.server.errors import bad_param
from engines.types import ChatMessage, Params

REQUEST_FIELDS: dict[str, tuple[str, ...]] = {
    "temperature": ("temperature",),
    "top_p": ("top_p",),
    "top_k": ("top_k",),
    "repetition_penalty": ("repetition_penalty",),
    "max_tokens": ("max_tokens", "max_completion_tokens"),
    "stop": ("stop",),
    "seed": ("seed",),
    "json_schema": ("response_format",),
    "logprobs": ("logprobs", "top_logprobs"),
    "tools": ("tools",),
    "tool_choice": ("tool_choice",),
    "tool_name": ("tool_choice",),
    "parallel_tool_calls": ("parallel_tool_calls",),
}
"""Each Params field → the request fields that set it."""


def preset_model(preset: Preset) -> str:
    """The model a preset runs on; 400 when it names none."""
    if not preset.model:
        raise bad_param("model", f"preset {preset.name!r} names no model: set model in [presets.{preset.name}]")
    return preset.model


def explicit_params(given: Mapping[str, object]) -> set[str]:
    """The Params fields a request sets itself, from its fields that are present and not null."""
    present = {name for name, value in given.items() if value is not None}
    return {param for param, names in REQUEST_FIELDS.items() if present.intersection(names)}


def under_preset(preset: Preset, params: Params, explicit: set[str], max_tokens_limit: int) -> Params:
    """`params` with the preset's values where the request set none (the preset's max_tokens within the server's
    limit; its tools are never added to a request)."""
    skip = set(explicit) | {"tools"}
    if not params.tools:  # a choice among tools the request does not offer means nothing
        skip |= {"tool_choice", "tool_name", "parallel_tool_calls"}
    if params.wants_tools:  # a reply cannot both follow a schema and be a call: the request's tools win
        skip.add("json_schema")
    changes: dict[str, Any] = {}
    for f in fields(Params):
        value = getattr(preset.params, f.name)
        if f.name in skip or value is None or value == f.default:
            continue
        changes[f.name] = min(value, max_tokens_limit) if f.name == "max_tokens" else value
    if changes.get("tool_name") is not None and all(t.name != changes["tool_name"] for t in params.tools):
        del changes["tool_name"]  # a function the request does not offer: the request's own choice stands
    return replace(params, **changes)


def preset_system(preset: Preset, messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    """`messages` with the preset's system prompt first, unless the request brings its own ("" adds none)."""
    if not preset.system or any(m.role == "system" for m in messages):
        return list(messages)
    return [ChatMessage("system", preset.system), *messages]
