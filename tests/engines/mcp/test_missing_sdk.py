"""Without the optional SDK the client says which extra to install (this test needs no SDK itself)."""

from __future__ import annotations

import sys

import pytest

from engines.mcp.client import McpError
from tests.engines.mcp.conftest import MakeHub, demo_server


def test_the_sdk_missing_names_the_extra(make_hub: MakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mcp", None)
    hub = make_hub(demo_server())
    with pytest.raises(McpError, match=r"MCP support is not installed: pip install 'llm-tui\[mcp\]'"):
        hub.tools("demo")
