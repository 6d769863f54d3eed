"""What a server hands the client is bounded: the tool listing, the result text, the names the model sees."""

from __future__ import annotations

import re

import pytest

from engines.mcp.bounds import MAX_RESULT_BYTES, MAX_TOOLS, accept_tools, cut, result_text
from engines.mcp.naming import model_name, tool_for_model
from engines.mcp.types import McpTool

types = pytest.importorskip("mcp_types", reason="needs the MCP SDK: pip install 'llm-tui[mcp]'")
SAFE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def tool(name: str, description: str = "", schema: dict[str, object] | None = None) -> types.Tool:
    return types.Tool(name=name, description=description, input_schema=schema or {"type": "object"})


def test_tools_past_the_limit_are_skipped_with_a_reason() -> None:
    listing = accept_tools("s", [tool(f"t{i}") for i in range(MAX_TOOLS + 10)])
    assert len(listing.tools) == MAX_TOOLS
    assert listing.skipped == (f"10 tools after the first {MAX_TOOLS} (too many tools on one server)",)


def test_a_tool_over_a_limit_is_skipped_and_the_rest_kept() -> None:
    huge = {"type": "object", "properties": {f"p{i}": {"type": "string", "description": "d" * 100} for i in range(700)}}
    listing = accept_tools(
        "s", [tool("long", "d" * 2001), tool("fat", schema=huge), tool("ok", "d" * 2000), tool("ok"), tool("x" * 129)]
    )
    assert [t.name for t in listing.tools] == ["ok"]
    assert listing.skipped[0] == "'long': description is 2001 characters (at most 2000)"
    assert re.fullmatch(r"'fat': input schema is \d+ bytes \(at most 65536\)", listing.skipped[1])
    assert listing.skipped[2] == "'ok': listed twice"
    assert listing.skipped[3].endswith(": name must be 1 to 128 characters")


def test_the_schema_is_kept_as_compact_json() -> None:
    schema: dict[str, object] = {"type": "object", "properties": {"a": {"type": "integer"}}}
    (kept,) = accept_tools("s", [tool("t", "does t", schema)]).tools
    assert kept == McpTool("s", "t", "does t", '{"type":"object","properties":{"a":{"type":"integer"}}}')


def test_non_text_parts_are_described_with_their_size() -> None:
    content: list[types.ContentBlock] = [
        types.TextContent(text="hello"),
        types.ImageContent(data="AAAA" * 10 + "AA==", mime_type="image/png"),
        types.AudioContent(data="AAA=", mime_type="audio/wav"),
        types.ResourceLink(name="doc", uri="file:///doc.txt"),
        types.EmbeddedResource(resource=types.TextResourceContents(uri="file:///a.txt", text="inside")),
        types.EmbeddedResource(resource=types.BlobResourceContents(uri="file:///b.bin", blob="AAAA")),
    ]
    assert result_text(content).split("\n") == [
        "hello",
        "[image, 31 bytes, image/png]",
        "[audio, 2 bytes, audio/wav]",
        "[resource link: file:///doc.txt]",
        "[resource file:///a.txt]",
        "inside",
        "[resource file:///b.bin, 3 bytes]",
    ]


def test_structured_content_alone_is_shown_as_json() -> None:
    assert result_text([], {"result": 5}) == '{"result": 5}'
    assert result_text([types.TextContent(text="5")], {"result": 5}) == "5"


def test_a_long_text_is_cut_on_a_character_boundary_with_a_note() -> None:
    text = "é" * MAX_RESULT_BYTES  # two bytes each: the cut falls between characters, never inside one
    out = cut(text)
    kept, note = out.rsplit("\n", 1)
    assert kept == "é" * (MAX_RESULT_BYTES // 2)
    assert note == f"[cut: {MAX_RESULT_BYTES} of {2 * MAX_RESULT_BYTES} bytes not shown]"
    assert cut("short") == "short"


def test_names_for_the_model_are_safe_and_distinct() -> None:
    assert model_name("demo__add") == "demo__add"
    assert model_name("my.server__read file") == "my_server__read_file"
    long_a, long_b = model_name("s__" + "a" * 80 + "1"), model_name("s__" + "a" * 80 + "2")
    assert SAFE.match(long_a) and SAFE.match(long_b) and long_a != long_b
    assert SAFE.match(model_name(""))
    made = tool_for_model(McpTool("srv", "do it", "Does it.", '{"type":"object"}'))
    assert (made.name, made.description, made.parameters) == ("srv__do_it", "Does it.", '{"type":"object"}')
