"""The one error the MCP client raises, and the check that the optional SDK is installed."""

from __future__ import annotations

import importlib.util

from engines.errors import LlmTuiError

INSTALL_HINT = "pip install 'llm-tui[mcp]'"


class McpError(LlmTuiError):
    """An MCP server could not be started, reached or understood, or a call to it failed or timed out."""


def require_sdk() -> None:
    """Raise McpError naming the extra to install when the `mcp` SDK is missing."""
    try:
        found = importlib.util.find_spec("mcp") is not None
    except ValueError:  # a module set to None in sys.modules (how tests hide it) reads as missing
        found = False
    if not found:
        raise McpError(f"MCP support is not installed: {INSTALL_HINT}")
