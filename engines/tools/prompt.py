"""Tools and past calls in a chat template's context.

A template written for tools (Qwen, Llama 3.1+, Mistral, Hermes...) reads `tools` and the messages' `tool_calls`
and `tool` role itself, the way transformers hands them over. A template that knows nothing of tools (Gemma,
a plain Q/A template) gets the tools described in the system message, past calls written as `<tool_call>` text
and results as a user turn: the Hermes convention the parser reads back. Consecutive turns of one role are
then joined, since such templates often insist that roles alternate.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any

import jinja2.meta

from engines.tools.parse import HERMES_CLOSE, HERMES_OPEN
from engines.tools.spec import openai_tool
from engines.types import ChatMessage, Tool

TOOLS_INTRO = (
    "You can call functions to help answer. To call one, reply with only\n"
    f'{HERMES_OPEN}{{"name": "<function name>", "arguments": {{<arguments as JSON>}}}}{HERMES_CLOSE}\n'
    "and wait for its result. The functions:\n"
)


@functools.lru_cache(maxsize=32)
def template_takes_tools(template: str) -> bool:
    """Whether a chat template reads the `tools` variable (False for one that does not parse: rendering says why)."""
    from engines.templates.chat import compile_template

    try:
        compile_template(template)  # the same parse (and the same errors) as rendering
        ast = _parse(template)
    except Exception:
        return False
    return "tools" in jinja2.meta.find_undeclared_variables(ast)


def _parse(template: str) -> Any:
    from engines.templates.chat import template_ast

    return template_ast(template)


def tool_schema(tool: Tool) -> dict[str, Any]:
    """A tool in OpenAI's `tools[i]` shape, its parameters parsed (BadRequest when they are not a JSON object);
    templates read `function.description`, so it is there even when empty."""
    shaped = openai_tool(tool)
    shaped["function"].setdefault("description", "")
    return shaped


def template_context(
    template: str, messages: Sequence[ChatMessage], tools: Sequence[Tool]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """(messages, tools) as the template's context holds them: OpenAI shapes for a template that takes tools,
    else plain turns with the tools described in the system message (tools then None)."""
    if template_takes_tools(template):
        return [_native(m) for m in messages], [tool_schema(t) for t in tools] or None
    return _plain(messages, tools), None


def _native(message: ChatMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": _loads(c.arguments)}}
            for c in message.tool_calls
        ]
    if message.role == "tool":
        out["tool_call_id"] = message.tool_call_id
        out["name"] = message.name
    return out


def _plain(messages: Sequence[ChatMessage], tools: Sequence[Tool]) -> list[dict[str, Any]]:
    turns: list[dict[str, Any]] = []
    for message in messages:
        role, content = message.role, message.content
        if message.tool_calls:
            calls = "\n".join(
                f'{HERMES_OPEN}{{"name": {json.dumps(c.name)}, "arguments": {c.arguments}}}{HERMES_CLOSE}'
                for c in message.tool_calls
            )
            content = f"{content}\n{calls}".strip()
        elif role == "tool":
            role, content = "user", f"<tool_response>\n{message.name or 'tool'}: {content}\n</tool_response>"
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += "\n\n" + content
        else:
            turns.append({"role": role, "content": content})
    if tools:
        intro = TOOLS_INTRO + "\n".join(json.dumps(tool_schema(t)["function"], ensure_ascii=False) for t in tools)
        if turns and turns[0]["role"] == "system":
            turns[0]["content"] += "\n\n" + intro
        else:
            turns.insert(0, {"role": "system", "content": intro})
    return turns


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text
