"""`tool_choice` "required" or a named function on an engine that does not take tools itself: the reply is
constrained by a JSON schema of the call (`{"name": ..., "arguments": {...}}`), so the engine's grammar makes
every sampled token keep it a valid call whose arguments follow the function's own schema. The schema goes
through the same bounded path as any response format (engines.structured.limits)."""

from __future__ import annotations

import json
from dataclasses import replace

from engines.tools.spec import parameters_of
from engines.types import Params, Tool


def forces_call(params: Params) -> bool:
    """Whether the model must call a tool."""
    return params.wants_tools and (params.tool_choice == "required" or params.tool_name is not None)


def call_schema(params: Params) -> str:
    """The JSON schema (as text) of one call to the named function, or to any of the tools."""
    tools = [t for t in params.tools if t.name == params.tool_name] if params.tool_name else list(params.tools)
    shapes = [_call_shape(tool) for tool in tools]
    schema = shapes[0] if len(shapes) == 1 else {"anyOf": shapes}
    return json.dumps(schema, ensure_ascii=False)


def engine_params(params: Params, native_tools: bool) -> Params:
    """What an engine runs for `params`: unchanged, except a forced call on an engine without native tools,
    which becomes the call's JSON schema."""
    if native_tools or not forces_call(params):
        return params
    return replace(params, json_schema=call_schema(params))


def _call_shape(tool: Tool) -> dict[str, object]:
    parameters = parameters_of(tool)
    return {
        "type": "object",
        "properties": {"name": {"enum": [tool.name]}, "arguments": parameters or {"type": "object"}},
        "required": ["name", "arguments"],
    }
