"""The names the model sees for MCP tools: `server__tool`, made safe for every chat API."""

from __future__ import annotations

import hashlib
import re

from engines.mcp.types import McpTool
from engines.types import Tool

MAX_NAME = 64
"""OpenAI's limit on a function name (and `^[A-Za-z0-9_-]+$` its alphabet)."""
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def model_name(qualified: str) -> str:
    """`qualified` made to match `^[A-Za-z0-9_-]{1,64}$`; a name cut short keeps a hash of the whole."""
    name = _UNSAFE.sub("_", qualified) or "tool"
    if len(name) <= MAX_NAME:
        return name
    # Two long names sharing their first 55 characters must still differ.
    digest = hashlib.sha256(qualified.encode()).hexdigest()[:8]
    return f"{name[: MAX_NAME - 9]}_{digest}"


def tool_for_model(tool: McpTool) -> Tool:
    """The function a chat request offers the model for this MCP tool."""
    return Tool(name=model_name(tool.qualified), description=tool.description, parameters=tool.input_schema)
