"""A tool as OpenAI's `tools[i]` describes it: the shape servers, chat templates and prompts all read."""

from __future__ import annotations

import json
from typing import Any

from engines.errors import BadRequest
from engines.types import Tool


def parameters_of(tool: Tool) -> dict[str, Any]:
    """The tool's parameters schema, parsed; BadRequest when it is not a JSON object."""
    try:
        parameters = json.loads(tool.parameters)
    except ValueError:
        raise BadRequest(f"tool {tool.name!r}: its parameters are not JSON") from None
    if not isinstance(parameters, dict):
        raise BadRequest(f"tool {tool.name!r}: its parameters must be a JSON schema object")
    return parameters


def openai_tool(tool: Tool) -> dict[str, Any]:
    """`{"type": "function", "function": {name, description, parameters}}` (no description when it has none)."""
    function: dict[str, Any] = {"name": tool.name, "parameters": parameters_of(tool)}
    if tool.description:
        function["description"] = tool.description
    return {"type": "function", "function": function}
