"""The MCP client against a real MCP server over stdio: list, call, failing and hanging tools, env, restart."""

from __future__ import annotations

import json
import time

import pytest

from engines.mcp.client import McpError, McpHub, tool_for_model
from engines.mcp.types import McpServer
from tests.engines.mcp.conftest import MakeHub, demo_server

pytest.importorskip("mcp", reason="needs the MCP SDK: pip install 'llm-tui[mcp]'")


def test_lists_the_tools_with_their_schemas(demo_hub: McpHub) -> None:
    tools = {t.name: t for t in demo_hub.tools("demo")}
    assert {"add", "boom", "hang"} <= set(tools)
    add = tools["add"]
    assert (add.server, add.qualified, add.description) == ("demo", "demo__add", "Add two integers.")
    schema = json.loads(add.input_schema)
    assert schema["type"] == "object"
    assert schema["required"] == ["a", "b"]
    assert schema["properties"]["a"]["type"] == "integer"


def test_calls_a_tool(demo_hub: McpHub) -> None:
    result = demo_hub.call("demo", "add", {"a": 2, "b": 3})
    assert (result.text, result.is_error) == ("5", False)
    assert result.elapsed_ms > 0


def test_a_tool_that_raises_is_an_error_result_not_an_exception(demo_hub: McpHub) -> None:
    result = demo_hub.call("demo", "boom", {})
    assert result.is_error
    assert "kaboom" in result.text


def test_an_unexpected_exception_is_an_error_result_too(demo_hub: McpHub) -> None:
    result = demo_hub.call("demo", "crash", {})
    assert result.is_error
    assert "crash" in result.text  # mcp 2 keeps the exception's own text on the server


def test_bad_arguments_are_the_tools_error_result(demo_hub: McpHub) -> None:
    result = demo_hub.call("demo", "add", {"a": "two"})
    assert result.is_error
    assert "validation" in result.text


def test_a_hanging_call_times_out_is_cancelled_and_the_server_still_works(demo_hub: McpHub) -> None:
    started = time.monotonic()
    with pytest.raises(McpError, match=r"^tool hang on server demo did not answer within 0\.5 s$"):
        demo_hub.call("demo", "hang", {}, timeout_s=0.5)
    assert time.monotonic() - started < 2.0
    # The server saw the cancel: no hang call is still running there.
    assert demo_hub.call("demo", "hangs_running", {}).text == "0"
    assert demo_hub.call("demo", "add", {"a": 20, "b": 22}).text == "42"


def test_non_text_content_is_described(demo_hub: McpHub) -> None:
    assert demo_hub.call("demo", "picture", {}).text == "[image, 1234 bytes, image/png]"


def test_a_long_result_is_cut_and_says_so(demo_hub: McpHub) -> None:
    text = demo_hub.call("demo", "big", {"size": 100_000}).text
    assert text.startswith("x" * 65_536 + "\n")
    assert text.endswith("[cut: 34464 of 100000 bytes not shown]")


def test_unknown_server_and_tool_are_errors_that_name_what_exists(demo_hub: McpHub) -> None:
    with pytest.raises(McpError, match=r"no MCP server named nope \(servers: demo\)"):
        demo_hub.call("nope", "add", {})
    with pytest.raises(McpError, match=r"MCP server demo has no tool nope \(it offers: add, boom, .*\)"):
        demo_hub.call("demo", "nope", {})


def test_find_takes_the_names_the_model_sees(demo_hub: McpHub) -> None:
    add = demo_hub.find("demo__add")
    assert add is not None and add.name == "add"
    assert demo_hub.find("demo__nope") is None
    assert demo_hub.find("other__add") is None
    model_tool = tool_for_model(add)
    assert model_tool.name == "demo__add"
    assert model_tool.parameters == add.input_schema


def test_find_lists_a_server_not_listed_yet(make_hub: MakeHub) -> None:
    hub = make_hub(demo_server("my.demo"))
    found = hub.find("my_demo__add")  # the safe form of my.demo__add
    assert found is not None and (found.server, found.name) == ("my.demo", "add")


def test_the_server_gets_only_safe_variables_and_its_own(make_hub: MakeHub) -> None:
    env = {"PATH": "/usr/bin:/bin", "API_TOKEN": "s3cret", "OTHER": "x"}
    hub = make_hub(demo_server(TOKEN="${API_TOKEN}", PLAIN="yes"), env=env)
    assert hub.call("demo", "getenv", {"name": "TOKEN"}).text == "s3cret"
    assert hub.call("demo", "getenv", {"name": "PLAIN"}).text == "yes"
    assert hub.call("demo", "getenv", {"name": "API_TOKEN"}).text == "<unset>"
    assert hub.call("demo", "getenv", {"name": "OTHER"}).text == "<unset>"
    assert hub.call("demo", "getenv", {"name": "PATH"}).text == "/usr/bin:/bin"


def test_an_unset_variable_in_env_is_named(make_hub: MakeHub) -> None:
    hub = make_hub(demo_server(TOKEN="${NOT_SET_ANYWHERE}"))
    with pytest.raises(McpError, match=r"MCP server demo: env TOKEN uses \$\{NOT_SET_ANYWHERE\}, which is not set"):
        hub.tools("demo")


def test_a_server_that_dies_mid_session_is_reported_then_restarted(make_hub: MakeHub) -> None:
    hub = make_hub(demo_server())
    hub.tools("demo")
    first = hub.pids()
    with pytest.raises(McpError, match=r"^MCP server demo exited with code 7"):
        hub.call("demo", "die", {"code": 7})
    assert hub.call("demo", "add", {"a": 1, "b": 1}).text == "2"
    assert hub.pids()[-1] not in first


def test_a_closed_hub_refuses_work() -> None:
    hub = McpHub([McpServer("demo", command="unused")], {})
    hub.close()
    with pytest.raises(McpError, match="the MCP client is closed"):
        hub.tools("demo")


def test_server_names_must_be_unique() -> None:
    with pytest.raises(McpError, match="demo appears twice"):
        McpHub([McpServer("demo", command="a"), McpServer("demo", command="b")], {})
