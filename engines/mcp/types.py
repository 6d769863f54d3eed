"""What crosses the MCP client's boundary: a configured server, its tools, a call's result."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal


def _no_env() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class McpServer:
    """One `[[mcp_servers]]` entry: a command run over stdio, or a streamable-HTTP URL."""

    name: str
    command: str | None = None
    """The program to start (stdio transport); exactly one of command and url is set."""
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=_no_env, repr=False)
    """Variables added to the server's environment (on top of a minimal safe one)."""
    url: str | None = None
    """A streamable-HTTP endpoint (`http://127.0.0.1:8000/mcp`)."""
    trusted: tuple[str, ...] = ()
    """Tools that run without asking (`"*"`: all of this server's)."""
    timeout_s: float = 30.0
    """How long one tool call (and the server's start) may take."""

    @property
    def transport(self) -> Literal["stdio", "http"]:
        return "http" if self.url else "stdio"

    def trusts(self, tool: str) -> bool:
        """Whether `tool` runs without asking the user first."""
        return "*" in self.trusted or tool in self.trusted


@dataclass(frozen=True, slots=True)
class McpTool:
    """A tool a server offers; `qualified` is the name the model sees (`server__tool`)."""

    server: str
    name: str
    description: str = ""
    input_schema: str = '{"type": "object", "properties": {}}'
    """JSON Schema of its arguments, as JSON text."""

    @property
    def qualified(self) -> str:
        return f"{self.server}__{self.name}"


@dataclass(frozen=True, slots=True)
class McpResult:
    """What a tool call returned: its text content (joined, bounded) and whether the tool said it failed."""

    text: str
    is_error: bool = False
    elapsed_ms: float = 0.0
