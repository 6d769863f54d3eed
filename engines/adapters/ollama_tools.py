"""Tools and thinking through Ollama's `/api/chat`: the request's shapes and the streamed reply's events.

Ollama takes `tools` in OpenAI's shape, but a past call's arguments as an object and a tool result with
`tool_name`. It has no `tool_choice`: "none" sends no tools, and "required" or a named function constrains the
reply with `format` (the JSON schema of one call, engines.tools.forced) and turns the JSON it writes into the
call. It streams a reply's calls whole (`message.tool_calls`, arguments as an object, no id) and the model's
thinking apart, in `message.thinking`. `think` is left to the daemon's default; thinking a daemon leaves in the
text as a `<think>` block is split out above the engine (engines.relay).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engines.errors import BadRequest
from engines.images import image_mime
from engines.stop_text import StopText
from engines.tools.forced import call_schema, forces_call
from engines.tools.parse import new_call_id, parse_calls
from engines.tools.spec import openai_tool
from engines.types import ChatMessage, Delta, Params, Reasoning, StreamEvent, ToolCallDelta, Usage, schema_of

if TYPE_CHECKING:
    import ollama


@dataclass(frozen=True, slots=True)
class ToolRequest:
    """What `/api/chat` gets for a request's tools and response format."""

    tools: list[dict[str, Any]] | None
    format: dict[str, Any] | None
    forced: bool
    """The reply is one call written as JSON (`format`), to be turned into a ToolCallDelta."""


def tool_request(params: Params) -> ToolRequest:
    """The tools to send and the `format` that a response schema or a forced call asks for."""
    if not params.wants_tools:
        return ToolRequest(None, schema_of(params), forced=False)
    tools = [openai_tool(tool) for tool in params.tools]
    if not forces_call(params):
        return ToolRequest(tools, None, forced=False)
    from engines.structured.limits import check_schema_text  # the same bounds as any response format

    # The tools still go along: the template then describes them, so the model knows what the arguments mean.
    return ToolRequest(tools, check_schema_text(call_schema(params)), forced=True)


def ollama_message(message: ChatMessage) -> dict[str, Any]:
    """An Ollama chat message: images as bytes (the client base64-encodes them), past calls with their arguments
    as objects, a tool result with the function's name."""
    for i, image in enumerate(message.images, 1):
        if image_mime(image) is None:
            raise BadRequest(f"image {i} of a {message.role} message is not a PNG, JPEG, GIF or WebP image")
    doc: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.images:
        doc["images"] = list(message.images)
    if message.tool_calls:
        doc["tool_calls"] = [
            {"function": {"name": call.name, "arguments": _arguments(call.name, call.arguments)}}
            for call in message.tool_calls
        ]
    if message.role == "tool" and message.name:
        doc["tool_name"] = message.name
    return doc


def _arguments(name: str, text: str) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        raise BadRequest(f"the call to {name!r} in the history has arguments that are not JSON") from None
    if not isinstance(value, dict):
        raise BadRequest(f"the call to {name!r} in the history has arguments that are not a JSON object")
    return value


class ReplyParts:
    """One streamed reply's messages as events: thinking, text cut at the stop sequences, calls; and its counts."""

    __slots__ = ("_forced", "calls", "cut", "pieces", "thinking")

    def __init__(self, stops: Sequence[str], *, forced: bool) -> None:
        self.cut = StopText(() if forced else stops)
        self._forced: list[str] | None = [] if forced else None  # a forced call's JSON, held until the end
        self.pieces = 0
        """Lines that carried text or thinking: the completion's size when the daemon never counts it."""
        self.thinking = 0
        self.calls = 0

    def feed(self, message: ollama.Message) -> Iterator[StreamEvent]:
        """The events of one streamed line's message."""
        if thought := message.thinking or "":
            self.thinking += 1
            self.pieces += 1
            yield Reasoning(thought)
        if text := message.content or "":
            self.pieces += 1
            if self._forced is not None:
                self._forced.append(text)
            elif emit := self.cut.feed(text):
                yield Delta(emit)
        for call in message.tool_calls or ():
            yield from self._call(call.function.name, call.function.arguments)

    def flush(self) -> Iterator[StreamEvent]:
        """What is held at the end: text held for a possible stop, or the forced call (its text when it is none)."""
        if held := self.cut.flush():
            yield Delta(held)
        if self._forced:
            text, self._forced = "".join(self._forced), []
            parsed = parse_calls(text)
            if parsed is None or len(parsed.calls) != 1 or self.calls:
                yield Delta(text)  # cut short or not a call: kept as text, so nothing is lost
            else:
                call = parsed.calls[0]
                yield ToolCallDelta(self.calls, call.id, call.name, call.arguments)
                self.calls += 1

    def usage(self, prompt: int | None, completion: int | None) -> Usage:
        """The daemon's counts; it does not split out the thinking, so that is its lines (at most the whole)."""
        completion = completion or self.pieces
        return Usage(prompt or 0, completion, reasoning_tokens=min(self.thinking, completion))

    def estimate(self, prompt_guess: int) -> Usage:
        """Counts for a reply that never got the daemon's (cut at a stop, or stopped)."""
        return Usage(prompt_guess, self.pieces, estimated=True, reasoning_tokens=self.thinking)

    def _call(self, name: str, arguments: Mapping[str, Any]) -> Iterator[StreamEvent]:
        if held := self.cut.flush():  # text before a call is text, not the start of a stop sequence
            yield Delta(held)
        yield ToolCallDelta(self.calls, new_call_id(), name, json.dumps(dict(arguments), ensure_ascii=False))
        self.calls += 1
