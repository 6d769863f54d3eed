"""JSON schema limits (issue 18, item 1): checked in pure Python before any grammar is built, for every engine."""

from __future__ import annotations

import json
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engines.adapters import llama_cpp_grammar
from engines.errors import BadRequest
from engines.structured.limits import (
    MAX_DEPTH,
    MAX_ENUM,
    MAX_REPEAT,
    MAX_SCHEMA_BYTES,
    SchemaRefused,
    check_schema_text,
    pattern_cost,
)
from engines.types import Params

ISSUE_SCHEMA = {"type": "string", "maxLength": 10000}


def test_the_issues_schema_is_refused_naming_the_field_and_the_limit() -> None:
    with pytest.raises(SchemaRefused) as caught:
        Params(json_schema=json.dumps(ISSUE_SCHEMA)).validate()
    assert str(caught.value) == f"json_schema: /maxLength is 10000; the limit is {MAX_REPEAT}"
    assert isinstance(caught.value, BadRequest)


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"type": "string", "maxLength": 1e6}, "/maxLength is 1e+06; the limit is 500"),
        (
            {"type": "object", "properties": {"name": {"type": "string", "minLength": 501}}},
            "/properties/name/minLength is 501; the limit is 500",
        ),
        ({"type": "array", "items": {"type": "integer"}, "maxItems": 100000}, "/maxItems is 100000"),
        ({"type": "array", "minItems": 1000}, "/minItems is 1000"),
        ({"type": "object", "maxProperties": 9999}, "/maxProperties is 9999"),
        ({"enum": list(range(MAX_ENUM + 1))}, f"/enum has {MAX_ENUM + 1} values; the limit is {MAX_ENUM}"),
        ({"type": "string", "pattern": "^[a-z]{1,2000}$"}, "/pattern repeats {1,2000}; the limit is 500"),
        ({"type": "string", "pattern": "^(a{0,500}){0,500}$"}, "/pattern spells out 250000 characters"),
        ({"type": "string", "pattern": "a" * 1001}, "/pattern is 1001 characters; the limit is 1000"),
        (
            {"type": "string", "pattern": "^([a-z]{0,3}){0,30}$"},
            "/pattern repeats a group of varying length up to 30 times; the limit is 10",
        ),
        ({"$ref": "https://example.com/s.json"}, "/$ref is 'https://example.com/s.json'; only references inside"),
        ({"a/b": {"maxLength": 600}}, "/a~1b/maxLength is 600"),
        ({"anyOf": [{"type": "null"}, {"type": "string", "maxLength": 800}]}, "/anyOf/1/maxLength is 800"),
    ],
)
def test_each_limit_names_the_json_pointer_and_the_limit(schema: dict[str, Any], message: str) -> None:
    with pytest.raises(SchemaRefused, match="^json_schema: " + _literal(message)):
        check_schema_text(json.dumps(schema))


def test_size_and_depth_are_bounded_without_recursing() -> None:
    big = json.dumps({"type": "object", "description": "x" * MAX_SCHEMA_BYTES})
    with pytest.raises(SchemaRefused, match=f"bytes; the limit is {MAX_SCHEMA_BYTES}"):
        check_schema_text(big)
    deep: dict[str, Any] = {"type": "string"}
    for _ in range(MAX_DEPTH):
        deep = {"type": "array", "items": deep}
    with pytest.raises(SchemaRefused, match=f"nests deeper than {MAX_DEPTH} levels"):
        check_schema_text(json.dumps(deep))
    # Nested past what json's parser recurses through (within the size limit): refused, not a RecursionError.
    with pytest.raises(SchemaRefused):
        check_schema_text("[" * 30000 + "]" * 30000)
    with pytest.raises(SchemaRefused, match="not valid JSON"):
        check_schema_text('{"maxLength": ' + "9" * 5000 + "}")  # past Python's int-parsing digit limit


def test_real_schemas_pass() -> None:
    real = {
        "type": "object",
        "properties": {
            "id": {"type": "string", "pattern": "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"},
            "name": {"type": "string", "minLength": 1, "maxLength": 500},
            "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "maxItems": 50},
            "when": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$"},
            "next": {"$ref": "#/$defs/node"},
        },
        "$defs": {"node": {"type": "object", "properties": {"v": {"type": "integer", "minimum": 0}}}},
        "required": ["id", "name"],
    }
    assert check_schema_text(json.dumps(real)) == real
    Params(json_schema=json.dumps(real)).validate()


@pytest.mark.parametrize(
    ("pattern", "cost"),
    [("^(a{0,40}){0,40}$", 1600), (r"^\d{3}-\d{4}$", 8), ("[({]{3}", 3), ("((((", 0), ("[", 1), ("a{2}{3}", 6)],
)
def test_pattern_cost_multiplies_nested_counts_only(pattern: str, cost: int) -> None:
    assert pattern_cost(pattern) == cost


_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
_keys = st.sampled_from(
    ["type", "maxLength", "minLength", "maxItems", "minItems", "enum", "pattern", "$ref", "items", "properties", "x"]
)
_json = st.recursive(
    _leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys | st.text(max_size=5), inner, max_size=4),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(_json)
def test_the_checker_accepts_or_refuses_never_anything_else(schema: object) -> None:
    text = json.dumps(schema)
    try:
        parsed = check_schema_text(text)
    except BadRequest as exc:
        assert str(exc)
    else:
        assert parsed == json.loads(text)


_count = st.integers(min_value=0, max_value=2 * MAX_REPEAT)
_schema_leaf = st.one_of(
    st.fixed_dictionaries({"type": st.just("string")}, optional={"maxLength": _count, "minLength": _count}),
    st.fixed_dictionaries({"type": st.just("string"), "pattern": st.from_regex(r"\^?[a-z(){},0-9|+*?]{0,12}")}),
    st.fixed_dictionaries({"enum": st.lists(st.integers(), max_size=MAX_ENUM + 2)}),
    st.just({"type": "integer", "minimum": 0}),
)
_schemas = st.recursive(
    _schema_leaf,
    lambda inner: st.one_of(
        st.fixed_dictionaries({"type": st.just("array"), "items": inner}, optional={"maxItems": _count}),
        st.fixed_dictionaries(
            {"type": st.just("object"), "properties": st.dictionaries(st.text("ab/~", max_size=3), inner, max_size=3)}
        ),
        st.fixed_dictionaries({"anyOf": st.lists(inner, min_size=1, max_size=3)}),
    ),
    max_leaves=80,
)


@settings(max_examples=200, deadline=None)
@given(_schemas)
def test_nested_schemas_are_accepted_only_within_the_limits(schema: dict[str, Any]) -> None:
    try:
        check_schema_text(json.dumps(schema))
    except BadRequest as exc:
        assert str(exc).startswith("json_schema: /") or "json_schema: the schema" in str(exc), exc
        return
    stack: list[object] = [schema]
    while stack:  # accepted: every count is within its limit
        node = stack.pop()
        if isinstance(node, dict):
            assert all(node.get(k, 0) <= MAX_REPEAT for k in ("maxLength", "minLength", "maxItems"))
            assert len(node.get("enum", [])) <= MAX_ENUM
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=60))
def test_pattern_cost_never_raises(pattern: str) -> None:
    assert pattern_cost(pattern) >= 0


def test_a_test_run_that_crashes_or_hangs_refuses_the_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    """The isolation itself, without llama.cpp: a child killed by a signal, or one past its time, is a 400."""
    crash = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"]
    monkeypatch.setattr(llama_cpp_grammar, "_child_command", lambda model: crash)
    with pytest.raises(SchemaRefused, match=r"crashed the grammar engine in a test run \(SIGSEGV\)"):
        llama_cpp_grammar.vetted_grammar('{"type": "string", "x-case": "crash"}', Path("/m.gguf"))
    # Refusals are kept: the same schema is not run again.
    monkeypatch.setattr(llama_cpp_grammar, "_child_command", lambda model: pytest.fail("ran twice"))
    with pytest.raises(SchemaRefused, match="crashed"):
        llama_cpp_grammar.vetted_grammar('{"type": "string", "x-case": "crash"}', Path("/m.gguf"))
    hang = [sys.executable, "-c", "import time; time.sleep(30)"]
    monkeypatch.setattr(llama_cpp_grammar, "_child_command", lambda model: hang)
    monkeypatch.setattr(llama_cpp_grammar, "TEST_RUN_TIMEOUT_S", 0.5)
    with pytest.raises(SchemaRefused, match=r"took more than 0.5 s in a test run"):
        llama_cpp_grammar.vetted_grammar('{"type": "string", "x-case": "hang"}', Path("/m.gguf"))


def test_a_slow_or_timed_out_test_run_is_refused_but_tried_again_next_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Load can make a test run slow as well as the schema: that refusal is not kept, unlike a crash."""
    runs: list[str] = []

    def slow(model: Path) -> list[str]:
        runs.append("run")
        return [sys.executable, "-c", 'import sys; sys.stdin.read(); print(\'{"slow": "7.5"}\')']

    monkeypatch.setattr(llama_cpp_grammar, "_child_command", slow)
    for _ in range(2):
        with pytest.raises(SchemaRefused, match=r"took 7.5 s for one token in a test run; the limit is 5 s"):
            llama_cpp_grammar.vetted_grammar('{"type": "string", "x-case": "slow"}', Path("/m.gguf"))
    assert len(runs) == 2


@pytest.mark.real_model
def test_schemas_at_the_limits_pass_the_real_test_run(gemma_path: Path) -> None:
    """The limits sit well inside what llama.cpp parses and samples at a usable speed (gemma's 262k vocabulary)."""
    at_limits = [
        {"type": "string", "minLength": 1, "maxLength": MAX_REPEAT},
        {"enum": [f"value number {i}" for i in range(MAX_ENUM)]},
        {"type": "string", "pattern": "^([a-z]+ ?){0,10}$"},
    ]
    for schema in at_limits:
        text = json.dumps(schema)
        check_schema_text(text)
        assert "root ::=" in llama_cpp_grammar.vetted_grammar(text, gemma_path)


def _literal(text: str) -> str:
    import re

    return re.escape(text)


def test_checking_a_reply_nested_past_the_stack_is_a_reply_error() -> None:
    """A remote engine follows no grammar: its reply can be anything, and the CLI checks it against the schema."""
    from engines.structured.check import ReplyNotValid, check_reply

    with pytest.raises(ReplyNotValid, match="nested too deep"):
        check_reply("[" * 100_000 + "]" * 100_000, {"type": "array"})
    with pytest.raises(ReplyNotValid, match="too long"):
        check_reply("9" * 5000, {"type": "integer"})
    nested = "[" * 900 + "]" * 900  # parses, but validating `items` recursively goes past the stack
    with pytest.raises(ReplyNotValid, match="nests too deep"):
        check_reply(nested, {"$ref": "#/$defs/a", "$defs": {"a": {"type": "array", "items": {"$ref": "#/$defs/a"}}}})


def test_the_server_names_response_format_for_any_engine() -> None:
    """The limits hold before any engine sees the schema (here the fake engine, which follows none)."""
    import httpx

    from tests.engines.server_fixture import served

    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "string", "maxLength": 10000}}}
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "response_format": fmt}
    with served() as server:
        reply = httpx.post(f"{server.url}/chat/completions", json=body, timeout=30)
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["param"] == "response_format"
    assert error["message"] == f"json_schema: /maxLength is 10000; the limit is {MAX_REPEAT}"


def test_the_outcome_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Distinct schemas, one after another, cannot grow the server's memory without end."""
    monkeypatch.setattr(llama_cpp_grammar, "_cache", OrderedDict())
    monkeypatch.setattr(llama_cpp_grammar, "CACHE_ENTRIES", 3)
    monkeypatch.setattr(llama_cpp_grammar, "_test_run", lambda text, model: ("root ::= [a]", True))
    for i in range(10):
        llama_cpp_grammar.vetted_grammar(json.dumps({"const": i}), Path("/m.gguf"))
    assert len(llama_cpp_grammar._cache) == 3
