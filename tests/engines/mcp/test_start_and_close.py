"""Servers that cannot start say why; close() leaves no server process behind."""

from __future__ import annotations

import re
import threading
import time

import psutil
import pytest

from engines.mcp.client import McpError
from engines.mcp.types import McpServer
from tests.engines.mcp.conftest import MakeHub, demo_server, script_server

pytest.importorskip("mcp", reason="needs the MCP SDK: pip install 'llm-tui[mcp]'")

EXIT_3 = (
    "import sys; print('starting', file=sys.stderr);"
    " print('config file missing: /nowhere.toml', file=sys.stderr); sys.exit(3)"
)
SILENT = "import time; time.sleep(60)"


def children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def test_a_missing_command_is_named(make_hub: MakeHub) -> None:
    hub = make_hub(McpServer("x", command="no-such-mcp-server-xyz"))
    with pytest.raises(McpError, match=r"^MCP server x: command not found: no-such-mcp-server-xyz \(install it"):
        hub.tools("x")


def test_a_server_that_exits_at_start_gives_its_code_and_stderr(make_hub: MakeHub) -> None:
    hub = make_hub(script_server("broken", EXIT_3))
    with pytest.raises(McpError) as caught:
        hub.tools("broken")
    message = str(caught.value)
    assert message.startswith("MCP server broken exited with code 3 at start")
    assert message.endswith("starting\nconfig file missing: /nowhere.toml")


def test_a_server_that_never_answers_times_out_and_is_stopped(make_hub: MakeHub) -> None:
    before = children()
    hub = make_hub(script_server("mute", SILENT, timeout_s=0.5))
    started = time.monotonic()
    with pytest.raises(McpError, match=r"^MCP server mute did not start within 0\.5 s$"):
        hub.tools("mute")
    assert time.monotonic() - started < 5.0  # the start timeout, then the SDK's stop (stdin closed, then TERM)
    assert children() - before == set()


def test_one_broken_server_does_not_hide_the_others(make_hub: MakeHub) -> None:
    hub = make_hub(script_server("broken", EXIT_3), demo_server(), script_server("mute", SILENT, timeout_s=0.5))
    tools, errors = hub.all_tools()
    assert {t.qualified for t in tools} >= {"demo__add", "demo__boom", "demo__hang"}
    assert set(errors) == {"broken", "mute"}
    assert "exited with code 3" in errors["broken"]
    assert "did not start within 0.5 s" in errors["mute"]


def test_close_leaves_no_child_process(make_hub: MakeHub) -> None:
    before = children()
    hub = make_hub(demo_server("one"), demo_server("two"))
    hub.call("one", "add", {"a": 1, "b": 2})
    hub.call("two", "add", {"a": 1, "b": 2})
    started = children() - before
    assert set(hub.pids()) <= started and len(hub.pids()) == 2
    with pytest.raises(McpError):
        hub.call("one", "hang", {}, timeout_s=0.2)  # a call in flight at close must not keep a server alive
    hub.close()
    assert children() - before == set()
    assert not any(psutil.pid_exists(pid) for pid in started)


def test_close_answers_a_call_still_waiting_in_another_thread(make_hub: MakeHub) -> None:
    hub = make_hub(demo_server())
    hub.tools("demo")
    outcome: list[BaseException] = []

    def wait_on_hang() -> None:
        try:
            hub.call("demo", "hang", {}, timeout_s=60)
        except BaseException as exc:  # the test reads whatever ended the call
            outcome.append(exc)

    waiter = threading.Thread(target=wait_on_hang)
    waiter.start()
    hub.close()  # whether the call was sent yet or not, it must end now, and as an McpError
    waiter.join(15)
    assert not waiter.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], McpError)
    # Never blamed on the server, which we stopped ourselves.
    assert re.fullmatch(r"MCP server demo was stopped before tool hang .*|the MCP client .*closed.*", str(outcome[0]))


def test_arguments_that_are_not_json_are_an_error(make_hub: MakeHub) -> None:
    hub = make_hub(demo_server())
    with pytest.raises(McpError, match=r"^cannot send tool add on server demo: "):
        hub.call("demo", "add", {"a": object(), "b": 1})
    assert hub.call("demo", "add", {"a": 1, "b": 1}).text == "2"
