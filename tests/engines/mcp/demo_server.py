"""A real MCP server for the client's tests, written with the SDK's MCPServer (FastMCP before mcp 2).

Run over stdio as `python demo_server.py`; `build()` also serves the streamable-HTTP tests.
"""

from __future__ import annotations

import os

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.utilities.types import Image


def build() -> MCPServer:
    """The demo server and its tools."""
    server = MCPServer("demo", log_level="WARNING")
    hanging = {"running": 0}
    idle = anyio.Event()

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @server.tool()
    def boom() -> str:
        """Always fail, saying why."""
        # mcp 2 keeps a plain exception's text on the server ("Error executing tool boom");
        # ToolError is how a tool tells the caller (and the model) what went wrong.
        raise ToolError("kaboom")

    @server.tool()
    def crash() -> str:
        """Fail with an unexpected exception."""
        raise ValueError("kaboom")

    @server.tool()
    async def hang() -> str:
        """Never answer; counted while running, so a test can see the client's cancel arrive."""
        nonlocal idle
        hanging["running"] += 1
        try:
            await anyio.sleep_forever()
        finally:
            hanging["running"] -= 1
            if not hanging["running"]:
                idle.set()
        return "unreachable"

    @server.tool()
    async def hangs_running() -> int:
        """How many `hang` calls still run, after waiting (at most 5 s) for the last one to end."""
        nonlocal idle
        if hanging["running"]:
            with anyio.move_on_after(5):
                await idle.wait()
            idle = anyio.Event()
        return hanging["running"]

    @server.tool()
    def getenv(name: str) -> str:
        """The server's environment variable `name` ("<unset>" when absent)."""
        return os.environ.get(name, "<unset>")

    @server.tool()
    def big(size: int) -> str:
        """A text of `size` characters."""
        return "x" * size

    @server.tool()
    def picture() -> Image:
        """A 1234-byte PNG (only its header is real)."""
        return Image(data=b"\x89PNG" + bytes(1230), format="png")

    @server.tool()
    def die(code: int) -> str:
        """End the server process at once with exit status `code` (the call never answers)."""
        os._exit(code)

    return server


if __name__ == "__main__":
    build().run("stdio")
