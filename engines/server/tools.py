"""Tool calling in OpenAI's request shapes: `tools`, `tool_choice`, assistant `tool_calls` and `tool` messages.

Pydantic checks names, lengths and counts (the schema at GET /openapi.json shows them); the functions here check
what it cannot: each function's parameters go through the same bounded path as a response format's schema
(engines.structured.limits), and `tool_choice` must name a function that is in `tools`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from engines.server.errors import bad_param
from engines.structured.limits import SchemaRefused, check_schema_text
from engines.tools.assemble import ToolCallAssembler
from engines.tools.parse import new_call_id
from engines.types import Tool, ToolCall, ToolCallDelta, ToolChoice

MAX_TOOLS = 128
"""Functions in one request (OpenAI's own limit)."""
MAX_DESCRIPTION = 8_000
"""Characters in a function's description."""
MAX_CALLS = 1_000
"""Calls in one assistant message of the history."""
MAX_CALL_ID = 256
TOOL_NAME = r"^[A-Za-z0-9_-]{1,64}$"
"""What OpenAI allows as a function name."""


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")


ToolName = Annotated[str, Field(pattern=TOOL_NAME)]
CallId = Annotated[str, Field(min_length=1, max_length=MAX_CALL_ID)]


class FunctionDef(_Body):
    name: ToolName
    description: Annotated[str, Field(max_length=MAX_DESCRIPTION)] | None = None
    parameters: dict[str, Any] | None = Field(None, description="a JSON schema object (bounded like response_format)")
    strict: bool | None = None


class ToolDef(_Body):
    type: Literal["function"]
    function: FunctionDef


class FunctionName(_Body):
    name: ToolName


class NamedToolChoice(_Body):
    type: Literal["function"]
    function: FunctionName


class FunctionCall(_Body):
    name: ToolName
    arguments: str | dict[str, Any] = Field("{}", description="the arguments as JSON text (an object is also taken)")


class CallIn(_Body):
    """A call of an assistant message in the history."""

    id: CallId
    type: Literal["function"] = "function"
    function: FunctionCall


Tools = Annotated[list[ToolDef], Field(max_length=MAX_TOOLS)]
Choice = Literal["auto", "none", "required"] | NamedToolChoice
Calls = Annotated[list[CallIn], Field(max_length=MAX_CALLS)]


@dataclass(frozen=True, slots=True)
class ToolRequest:
    """The tool fields of a chat request as Params takes them."""

    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice = "auto"
    tool_name: str | None = None
    parallel_tool_calls: bool = True

    @property
    def wants_tools(self) -> bool:
        """Whether the model is offered tools it may call."""
        return bool(self.tools) and self.tool_choice != "none"


def tool_request(tools: Sequence[ToolDef] | None, choice: Choice | None, parallel: bool | None) -> ToolRequest:
    """The request's tools and choice; 400 naming the field for a schema over a limit or a choice that cannot be."""
    converted = tuple(_tool(i, t) for i, t in enumerate(tools or ()))
    names = [t.name for t in converted]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise bad_param(f"tools[{i}].function.name", f"two tools are named {name!r}: each needs its own name")
    mode: ToolChoice = "auto"
    named: str | None = None
    if isinstance(choice, NamedToolChoice):
        named = choice.function.name
        if named not in names:
            raise bad_param("tool_choice", f"tool_choice names the function {named!r}, which is not in tools")
        mode = "required"
    elif choice is not None:
        mode = choice
    if mode == "required" and not converted:
        raise bad_param("tool_choice", 'tool_choice "required" needs at least one tool in tools')
    return ToolRequest(converted, mode, named, True if parallel is None else parallel)


def _tool(index: int, tool: ToolDef) -> Tool:
    function = tool.function
    parameters = function.parameters if function.parameters is not None else {"type": "object", "properties": {}}
    text = json.dumps(parameters, ensure_ascii=False)
    try:
        check_schema_text(text)
    except SchemaRefused as exc:
        raise bad_param(f"tools[{index}].function.parameters", f"tool {function.name!r}: {exc}") from None
    return Tool(function.name, function.description or "", text)


def calls_of(calls: Sequence[CallIn]) -> tuple[ToolCall, ...]:
    """An assistant message's calls as ToolCalls (arguments sent as an object are written as JSON text)."""
    out = []
    for call in calls:
        arguments = call.function.arguments
        text = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
        out.append(ToolCall(call.id, call.function.name, text))
    return tuple(out)


def call_json(call: ToolCall) -> dict[str, object]:
    """A call in a whole reply's `message.tool_calls`."""
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}


class CallPieces:
    """A reply's ToolCallDelta pieces as `delta.tool_calls` entries, and whole (`calls()`).

    OpenAI's client joins the pieces of a call by `index`, adding up every string it is sent again, so the id,
    the type and the name go in the first piece only; a call whose engine gave no id gets one there."""

    def __init__(self) -> None:
        self._ids: dict[int, str] = {}
        self._whole = ToolCallAssembler()

    def __bool__(self) -> bool:
        return bool(self._ids)

    def piece(self, delta: ToolCallDelta) -> dict[str, object]:
        """The `delta.tool_calls` entry for one piece."""
        first = delta.index not in self._ids
        if first:
            self._ids[delta.index] = delta.id or new_call_id()
        function: dict[str, object] = {}
        if first or delta.name:
            function["name"] = delta.name or ""
        function["arguments"] = delta.arguments
        entry: dict[str, object] = {"index": delta.index}
        if first:
            entry |= {"id": self._ids[delta.index], "type": "function"}
        self._whole.add(
            ToolCallDelta(delta.index, self._ids[delta.index] if first else None, delta.name, delta.arguments)
        )
        return entry | {"function": function}

    def calls(self) -> tuple[ToolCall, ...]:
        """The calls so far, whole, in index order."""
        return self._whole.calls()
