"""Limits on what an MCP server hands us: its tool listing and the text of a call's result."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engines.mcp.types import McpTool

if TYPE_CHECKING:
    from mcp_types import ContentBlock, Tool

MAX_TOOLS = 256
"""Tools taken from one server; the rest are skipped (each one costs prompt tokens on every turn)."""
MAX_PAGES = 32
"""`tools/list` pages read from one server: a server whose cursor never ends cannot keep us listing."""
MAX_NAME = 128
"""A tool name's length (the MCP spec's own recommendation)."""
MAX_DESCRIPTION = 2_000
"""Characters of a tool's description."""
MAX_SCHEMA_BYTES = 64 * 1024
"""Bytes of a tool's input schema as compact JSON."""
MAX_RESULT_BYTES = 64 * 1024
"""Bytes of a result's text handed to the model; the rest is cut and the cut is said."""


@dataclass(frozen=True, slots=True)
class Listing:
    """A server's tools within the limits, and why each tool left out was left out."""

    tools: tuple[McpTool, ...]
    skipped: tuple[str, ...] = ()


def accept_tools(server: str, raw: Sequence[Tool]) -> Listing:
    """The tools of `raw` that fit the limits, as McpTool; the others named with the reason."""
    tools: list[McpTool] = []
    skipped: list[str] = []
    seen: set[str] = set()
    for index, tool in enumerate(raw):
        if len(tools) == MAX_TOOLS:
            skipped.append(f"{len(raw) - index} tools after the first {MAX_TOOLS} (too many tools on one server)")
            break
        reason = _refusal(tool, seen)
        if reason:
            skipped.append(f"{tool.name[:MAX_NAME]!r}: {reason}")
            continue
        seen.add(tool.name)
        schema = json.dumps(tool.input_schema, ensure_ascii=False, separators=(",", ":"))
        tools.append(McpTool(server, tool.name, tool.description or "", schema))
    return Listing(tuple(tools), tuple(skipped))


def _refusal(tool: Tool, seen: set[str]) -> str:
    """Why `tool` is left out, or "" when it fits."""
    if not tool.name or len(tool.name) > MAX_NAME:
        return f"name must be 1 to {MAX_NAME} characters"
    if tool.name in seen:
        return "listed twice"
    if len(tool.description or "") > MAX_DESCRIPTION:
        return f"description is {len(tool.description or '')} characters (at most {MAX_DESCRIPTION})"
    size = len(json.dumps(tool.input_schema, ensure_ascii=False, separators=(",", ":")).encode())
    if size > MAX_SCHEMA_BYTES:
        return f"input schema is {size} bytes (at most {MAX_SCHEMA_BYTES})"
    return ""


def result_text(content: Sequence[ContentBlock], structured: object = None) -> str:
    """A result's content as text for the model: text parts joined, other parts described, cut to the limit."""
    parts = [describe(block) for block in content]
    if not parts and structured is not None:
        # A tool may answer with structured content only; the model still needs to read it.
        parts.append(json.dumps(structured, ensure_ascii=False))
    return cut("\n".join(parts))


def describe(block: ContentBlock) -> str:
    """One content part as text: a text part itself, anything else in brackets with its size."""
    from mcp_types import AudioContent, EmbeddedResource, ImageContent, ResourceLink, TextContent, TextResourceContents

    if isinstance(block, TextContent):
        return block.text
    if isinstance(block, ImageContent | AudioContent):
        return f"[{block.type}, {_b64_size(block.data)} bytes, {block.mime_type}]"
    if isinstance(block, ResourceLink):
        return f"[resource link: {block.uri}]"
    if isinstance(block, EmbeddedResource):
        resource = block.resource
        if isinstance(resource, TextResourceContents):
            return f"[resource {resource.uri}]\n{resource.text}"
        return f"[resource {resource.uri}, {_b64_size(resource.blob)} bytes]"
    return f"[{getattr(block, 'type', 'unknown')} content]"


def cut(text: str, limit: int = MAX_RESULT_BYTES) -> str:
    """`text` within `limit` UTF-8 bytes, with a note saying how much was cut."""
    raw = text.encode()
    if len(raw) <= limit:
        return text
    kept = raw[:limit].decode(errors="ignore")  # "ignore" drops a character split by the cut
    return f"{kept}\n[cut: {len(raw) - len(kept.encode())} of {len(raw)} bytes not shown]"


def _b64_size(data: str) -> int:
    """Bytes that base64 `data` decodes to, without decoding it."""
    padding = len(data) - len(data.rstrip("="))
    return max(0, len(data) * 3 // 4 - min(padding, 2))
