"""What a chat request to an OpenAI-compatible server says: messages (images, past calls, tool results) and the
tools the model may call, in OpenAI's shapes."""

from __future__ import annotations

import base64
from typing import Any

from engines.errors import BadRequest
from engines.images import image_mime
from engines.tools.spec import openai_tool
from engines.types import ChatMessage, Params


def tool_fields(params: Params) -> dict[str, Any]:
    """`tools`, `tool_choice` and `parallel_tool_calls` for `params`; nothing when it offers no tools."""
    if not params.tools:
        return {}
    choice: Any = params.tool_choice
    if params.tool_name is not None and params.tool_choice != "none":
        choice = {"type": "function", "function": {"name": params.tool_name}}
    return {
        "tools": [openai_tool(tool) for tool in params.tools],
        "tool_choice": choice,
        "parallel_tool_calls": params.parallel_tool_calls,
    }


def chat_message(message: ChatMessage) -> dict[str, Any]:
    """An OpenAI chat message: attached images as data-URL parts after the text, an assistant's calls with their
    arguments as JSON text, a tool result with the id of its call."""
    doc: dict[str, Any] = {"role": message.role, "content": _content(message)}
    if message.tool_calls:
        if not message.content:  # OpenAI's own shape of a reply that only calls: servers' templates expect null
            doc["content"] = None
        doc["tool_calls"] = [
            {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
            for call in message.tool_calls
        ]
    if message.role == "tool":
        # No `name`: OpenAI's tool message has none, and strict servers refuse fields they do not know.
        doc["tool_call_id"] = message.tool_call_id or ""
    return doc


def _content(message: ChatMessage) -> str | list[dict[str, Any]]:
    if not message.images:
        return message.content
    parts: list[dict[str, Any]] = [{"type": "text", "text": message.content}] if message.content else []
    for i, image in enumerate(message.images, 1):
        mime = image_mime(image)
        if mime is None:
            raise BadRequest(f"image {i} of a {message.role} message is not a PNG, JPEG, GIF or WebP image")
        url = f"data:{mime};base64,{base64.b64encode(image).decode('ascii')}"
        parts.append({"type": "image_url", "image_url": {"url": url}})
    return parts
