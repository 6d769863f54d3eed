"""Tool calls found in reply text, one test per format models write; text that only looks like a call stays text."""

from __future__ import annotations

import json

import pytest

from engines.tools.parse import new_call_id, parse_calls


def calls_of(text: str) -> list[tuple[str, dict[str, object]]]:
    parsed = parse_calls(text)
    assert parsed is not None, text
    return [(c.name, json.loads(c.arguments)) for c in parsed.calls]


def test_hermes_qwen_calls_one_per_tag_with_text_before() -> None:
    text = (
        "Let me check.\n<tool_call>\n"
        '{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
        '<tool_call>{"name": "get_time", "arguments": {"tz": "CET"}}</tool_call>'
    )
    parsed = parse_calls(text)
    assert parsed is not None and parsed.content == "Let me check."
    assert calls_of(text) == [("get_weather", {"city": "Paris"}), ("get_time", {"tz": "CET"})]


def test_hermes_call_cut_before_its_close_tag_is_still_a_call() -> None:
    assert calls_of('<tool_call>{"name": "f", "arguments": {}}') == [("f", {})]


def test_llama3_python_tag_and_bare_json_with_parameters() -> None:
    assert calls_of(
        '<|python_tag|>{"name": "search", "parameters": {"q": "llm"}}; {"name": "f", "parameters": {}}'
    ) == [
        ("search", {"q": "llm"}),
        ("f", {}),
    ]
    assert calls_of('  {"name": "search", "parameters": {"q": "x"}}') == [("search", {"q": "x"})]


def test_mistral_v3_array_and_v11_name_args() -> None:
    assert calls_of('[TOOL_CALLS] [{"name": "a", "arguments": {"x": 1}}, {"name": "b", "arguments": {}}]') == [
        ("a", {"x": 1}),
        ("b", {}),
    ]
    assert calls_of('[TOOL_CALLS]get_weather[ARGS]{"city": "Oslo"}[TOOL_CALLS]f[ARGS]{}') == [
        ("get_weather", {"city": "Oslo"}),
        ("f", {}),
    ]


def test_openai_shape_and_arguments_as_json_text() -> None:
    text = '{"function": {"name": "f", "arguments": "{\\"a\\": 2}"}}'
    assert calls_of(text) == [("f", {"a": 2})]


@pytest.mark.parametrize(
    "text",
    [
        "Just text.",
        '{"answer": 42}',  # JSON without a name
        "<tool_call>not json</tool_call>",
        '<tool_call>{"name": "f", "arguments": [1]}</tool_call>',  # arguments must be an object
        '[TOOL_CALLS]f[ARGS]{"a": ',
        '{"name": "f", "arguments": {}} and then prose',
    ],
)
def test_text_that_is_not_a_well_formed_call_is_not_one(text: str) -> None:
    assert parse_calls(text) is None


def test_call_ids_are_openai_shaped_and_fresh() -> None:
    ids = {new_call_id() for _ in range(50)}
    assert len(ids) == 50 and all(i.startswith("call_") and len(i) == 29 for i in ids)
