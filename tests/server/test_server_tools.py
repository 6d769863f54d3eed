"""Tool calling and thinking through the API, read by the official `openai` client: `tools` and `tool_choice` reach
the engine, calls come back as `tool_calls` (whole and streamed, in the pieces the client joins), thinking as
`reasoning_content`, tool results and past calls in the history reach the engine as ChatMessages, and a request
the server cannot take is a 400 naming the field."""

from __future__ import annotations

import importlib.util
import json
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import httpx
import jsonschema
import openai
import pytest

from engines.adapters.fake import FakeEngine
from engines.adapters.llama_cpp import LlamaCppEngine
from engines.manager import EngineManager
from engines.structured.limits import MAX_REPEAT
from engines.templates.chat import load_builtin_template
from engines.types import (
    Capability,
    ChatMessage,
    Done,
    LaunchOptions,
    ModelSpec,
    Params,
    Reasoning,
    StreamEvent,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from tests.engines.server_fixture import Served, served

USER = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city now.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
            "required": ["city", "unit"],
        },
    },
}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
CALL_TEXT = '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}</tool_call>'
THINKING = "<think>The user wants the weather, so I call the tool.</think>"


def client(s: Served) -> openai.OpenAI:
    return openai.OpenAI(base_url=s.url, api_key="unused", max_retries=0, timeout=30)


def raw_chunks(s: Served, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The JSON chunks of a streamed reply, as sent (the [DONE] line checked and left out)."""
    with httpx.stream("POST", f"{s.url}/chat/completions", json={**body, "stream": True}) as raw:
        lines = [line for line in raw.iter_lines() if line]
    assert raw.status_code == 200 and lines[-1] == "data: [DONE]", lines
    return [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]


class ScriptedEngine(FakeEngine):
    """An engine that takes tools itself (like a remote server) and streams the given events as they are; it
    records each request's Params."""

    capabilities: ClassVar[Capability] = FakeEngine.capabilities | Capability.TOOLS

    def __init__(self, events: Sequence[StreamEvent] = ()) -> None:
        super().__init__()
        self.events = list(events) or [Done(Usage(1, 1))]
        self.params: list[Params] = []

    def chat(
        self, messages: Sequence[ChatMessage], params: Params, cancel: threading.Event, session: str | None = None
    ) -> Iterator[StreamEvent]:
        self.calls.append(list(messages))
        self.params.append(params)
        yield from self.events


# --- replies ---------------------------------------------------------------------------------------------------


def test_a_call_in_the_text_is_a_whole_reply_of_tool_calls_with_the_thinking_apart() -> None:
    with served({"tiny": FakeEngine(reply=THINKING + " " + CALL_TEXT)}) as s:
        reply = client(s).chat.completions.create(model="tiny", messages=USER, tools=[WEATHER])  # type: ignore[arg-type,list-item]
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None  # only calls: null, as OpenAI sends it
    calls = choice.message.tool_calls or []
    assert len(calls) == 1 and calls[0].type == "function" and calls[0].id.startswith("call_")
    assert calls[0].function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(calls[0].function.arguments) == {"city": "Paris", "unit": "c"}  # type: ignore[union-attr]
    extra = choice.message.model_extra or {}
    assert extra["reasoning_content"] == "The user wants the weather, so I call the tool."
    assert reply.usage is not None and reply.usage.completion_tokens_details is not None
    assert 1 <= (reply.usage.completion_tokens_details.reasoning_tokens or 0) < reply.usage.completion_tokens


def test_a_streamed_call_is_joined_by_the_client_with_finish_reason_tool_calls() -> None:
    with served({"tiny": FakeEngine(reply=THINKING + " " + CALL_TEXT)}) as s:
        with client(s).chat.completions.stream(model="tiny", messages=USER, tools=[WEATHER]) as stream:  # type: ignore[arg-type,list-item]
            final = stream.get_final_completion()
        chunks = raw_chunks(
            s, {"model": "tiny", "messages": USER, "tools": [WEATHER], "stream_options": {"include_usage": True}}
        )
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_weather"]  # type: ignore[union-attr]
    assert json.loads(calls[0].function.arguments) == {"city": "Paris", "unit": "c"}  # type: ignore[union-attr]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    thinking = "".join(d.get("reasoning_content", "") for d in deltas)
    assert thinking == "The user wants the weather, so I call the tool."
    assert "".join(d.get("content") or "" for d in deltas).strip() == ""  # the call is not also sent as text
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "tool_calls"
    usage = chunks[-1]["usage"]
    assert usage["completion_tokens_details"]["reasoning_tokens"] >= 1


def test_call_pieces_are_streamed_as_the_openai_client_joins_them() -> None:
    events: list[StreamEvent] = [
        Reasoning("Two calls. "),
        ToolCallDelta(0, "call_a", "get_weather", ""),
        ToolCallDelta(0, arguments='{"city": '),
        ToolCallDelta(0, arguments='"Paris", "unit": "c"}'),
        ToolCallDelta(1, "call_b", "get_time", "{}"),
        Done(Usage(10, 12, reasoning_tokens=3), "tool_calls"),
    ]
    body = {"model": "tiny", "messages": USER, "tools": [WEATHER, TIME]}
    with served({"tiny": ScriptedEngine(events)}) as s:
        chunks = raw_chunks(s, body)
        with client(s).chat.completions.stream(model="tiny", messages=USER, tools=[WEATHER, TIME]) as stream:  # type: ignore[arg-type,list-item]
            final = stream.get_final_completion()
        whole = httpx.post(f"{s.url}/chat/completions", json=body).json()
    pieces = [p for c in chunks if c["choices"] for p in c["choices"][0]["delta"].get("tool_calls", ())]
    assert pieces == [
        {"index": 0, "id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": ""}},
        {"index": 0, "function": {"arguments": '{"city": '}},
        {"index": 0, "function": {"arguments": '"Paris", "unit": "c"}'}},
        {"index": 1, "id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
    ]
    joined = [(c.id, c.function.name, c.function.arguments) for c in final.choices[0].message.tool_calls or []]  # type: ignore[union-attr]
    expected = [("call_a", "get_weather", '{"city": "Paris", "unit": "c"}'), ("call_b", "get_time", "{}")]
    assert joined == expected
    message = whole["choices"][0]["message"]
    assert [(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in message["tool_calls"]] == expected
    assert message["content"] is None and message["reasoning_content"] == "Two calls. "
    assert whole["choices"][0]["finish_reason"] == "tool_calls"
    assert whole["usage"]["completion_tokens_details"] == {"reasoning_tokens": 3}


def test_a_call_without_an_id_gets_one_in_its_first_piece_only() -> None:
    events: list[StreamEvent] = [
        ToolCallDelta(0, None, "get_time", ""),
        ToolCallDelta(0, arguments="{}"),
        Done(Usage(1, 2), "tool_calls"),
    ]
    with served({"tiny": ScriptedEngine(events)}) as s:
        chunks = raw_chunks(s, {"model": "tiny", "messages": USER, "tools": [TIME]})
        whole = httpx.post(f"{s.url}/chat/completions", json={"model": "tiny", "messages": USER, "tools": [TIME]})
    pieces = [p for c in chunks if c["choices"] for p in c["choices"][0]["delta"].get("tool_calls", ())]
    assert pieces[0]["id"].startswith("call_") and "id" not in pieces[1]
    assert whole.json()["choices"][0]["message"]["tool_calls"][0]["id"].startswith("call_")


def test_text_before_a_call_stays_content() -> None:
    with served({"tiny": FakeEngine(reply="Let me look. " + CALL_TEXT)}) as s:
        reply = client(s).chat.completions.create(model="tiny", messages=USER, tools=[WEATHER])  # type: ignore[arg-type,list-item]
    assert (reply.choices[0].message.content or "").strip() == "Let me look."
    assert reply.choices[0].finish_reason == "tool_calls" and len(reply.choices[0].message.tool_calls or []) == 1


def test_tool_choice_none_leaves_a_call_shaped_text_as_text() -> None:
    with served({"tiny": FakeEngine(reply=CALL_TEXT)}) as s:
        reply = client(s).chat.completions.create(
            model="tiny",
            messages=USER,  # type: ignore[arg-type]
            tools=[WEATHER],  # type: ignore[list-item]
            tool_choice="none",
        )
    assert reply.choices[0].message.tool_calls is None and reply.choices[0].finish_reason == "stop"
    assert reply.choices[0].message.content == CALL_TEXT


# --- what reaches the engine -----------------------------------------------------------------------------------


def test_tools_and_tool_choice_reach_the_engine_as_params() -> None:
    engine = ScriptedEngine()
    with served({"tiny": engine}) as s:
        client(s).chat.completions.create(
            model="tiny",
            messages=USER,  # type: ignore[arg-type]
            tools=[WEATHER, TIME],  # type: ignore[list-item]
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            parallel_tool_calls=False,
        )
        client(s).chat.completions.create(model="tiny", messages=USER, tools=[TIME], tool_choice="required")  # type: ignore[arg-type,list-item]
        client(s).chat.completions.create(model="tiny", messages=USER)  # type: ignore[arg-type]
    named, required, plain = engine.params
    assert [t.name for t in named.tools] == ["get_weather", "get_time"]
    assert named.tools[0].description == "The weather in a city now."
    assert json.loads(named.tools[0].parameters) == WEATHER["function"]["parameters"]  # type: ignore[index]
    assert json.loads(named.tools[1].parameters) == {"type": "object", "properties": {}}
    assert (named.tool_choice, named.tool_name, named.parallel_tool_calls) == ("required", "get_weather", False)
    assert (required.tool_choice, required.tool_name, required.parallel_tool_calls) == ("required", None, True)
    assert plain.tools == () and plain.tool_choice == "auto"


def test_past_calls_and_tool_results_reach_the_engine_as_chat_messages() -> None:
    history = [
        *USER,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": {}}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18 C, sunny"},
        {"role": "tool", "tool_call_id": "call_2", "name": "clock", "content": [{"type": "text", "text": "noon"}]},
    ]
    engine = ScriptedEngine()
    with served({"tiny": engine}) as s:
        client(s).chat.completions.create(model="tiny", messages=history, tools=[WEATHER, TIME])  # type: ignore[arg-type,list-item]
    assert engine.calls[0][1:] == [
        ChatMessage(
            "assistant",
            "",
            tool_calls=(ToolCall("call_1", "get_weather", '{"city": "Paris"}'), ToolCall("call_2", "get_time", "{}")),
        ),
        ChatMessage("tool", "18 C, sunny", tool_call_id="call_1", name="get_weather"),  # the name from the call
        ChatMessage("tool", "noon", tool_call_id="call_2", name="clock"),  # the message's own name
    ]


# --- refusals --------------------------------------------------------------------------------------------------


def function(name: str = "f", **more: object) -> dict[str, object]:
    return {"type": "function", "function": {"name": name, **more}}


@pytest.mark.parametrize(
    ("body", "param", "says"),
    [
        ({"tools": [function("has space")]}, "tools[0].function.name", "pattern"),
        ({"tools": [function("x" * 65)]}, "tools[0].function.name", "pattern"),
        ({"tools": [function(description="d" * 8001)]}, "tools[0].function.description", "8000"),
        ({"tools": [function(f"f{i}") for i in range(129)]}, "tools", "128"),
        ({"tools": [{"type": "retrieval", "function": {"name": "f"}}]}, "tools[0].type", "function"),
        ({"tools": [function(), function()]}, "tools[1].function.name", "two tools"),
        (
            {"tools": [function(), function("big", parameters={"type": "string", "maxLength": MAX_REPEAT + 1})]},
            "tools[1].function.parameters",
            "'big'",
        ),
        ({"tools": [function()], "tool_choice": "sometimes"}, "tool_choice", "auto"),
        ({"tools": [function()], "tool_choice": {"type": "function", "function": {"name": "g"}}}, "tool_choice", "'g'"),
        ({"tool_choice": "required"}, "tool_choice", "at least one tool"),
        (
            {"tools": [function()], "response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},
            "response_format",
            "tools",
        ),
        ({"messages": [{"role": "tool", "content": "18 C"}]}, "messages[0].tool_call_id", "tool_call_id"),
        (
            {"messages": [{"role": "user", "content": "x", "tool_calls": [{"id": "c", "function": {"name": "f"}}]}]},
            "messages[0].tool_calls",
            "assistant",
        ),
    ],
)
def test_a_tool_request_the_server_cannot_take_is_a_400_naming_the_field(
    body: dict[str, object], param: str, says: str
) -> None:
    engine = ScriptedEngine()
    with served({"tiny": engine}) as s:
        answer = httpx.post(f"{s.url}/chat/completions", json={"model": "tiny", "messages": USER, **body})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == param and says in error["message"], error
    assert engine.calls == []


def test_tool_choice_none_with_a_response_format_is_taken() -> None:
    """The model is offered no call, so a schema can hold the reply (the fake has no grammar: it refuses by name)."""
    body = {"tools": [WEATHER], "tool_choice": "none", "response_format": {"type": "json_object"}}
    with served() as s:
        answer = httpx.post(f"{s.url}/chat/completions", json={"model": "tiny", "messages": USER, **body})
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "capability_not_supported"


def test_the_schema_documents_tools_as_supported() -> None:
    with served() as s:
        doc = httpx.get(s.url.removesuffix("/v1") + "/openapi.json").json()
    text = json.dumps(doc["components"]["schemas"]["ChatRequest"]["properties"]["tools"])
    assert "not supported" not in text and '"maxItems": 128' in text
    assert "tool" in doc["components"]["schemas"]["Message"]["properties"]["role"]["enum"]
    finish = doc["components"]["schemas"]["ChatChoice"]["properties"]["finish_reason"]["enum"]
    assert "tool_calls" in finish


# --- a real model ----------------------------------------------------------------------------------------------


@pytest.mark.real_model
@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python missing")
def test_gemma_calls_the_named_function_with_arguments_that_follow_its_schema(gemma_path: Path) -> None:
    """tool_choice naming a function forces the call through the engine's grammar, whole and streamed."""
    manager = EngineManager()
    spec = ModelSpec("gemma", path=gemma_path, chat_template=load_builtin_template("gemma3"))
    manager.start(spec, LaunchOptions(n_ctx=1024, n_threads=2), LlamaCppEngine(selftest=False))
    forced = {"type": "function", "function": {"name": "get_weather"}}
    schema = WEATHER["function"]["parameters"]  # type: ignore[index]
    with served(models={}, manager=manager) as s:
        ask = {"model": "gemma", "messages": USER, "tools": [WEATHER, TIME], "tool_choice": forced, "max_tokens": 96}
        whole = client(s).chat.completions.create(**ask, seed=1, temperature=0)
        with client(s).chat.completions.stream(**ask, seed=2, temperature=0) as stream:
            streamed = stream.get_final_completion()
    for reply in (whole, streamed):
        choice = reply.choices[0]
        assert choice.finish_reason == "tool_calls", choice
        calls = choice.message.tool_calls or []
        assert len(calls) == 1 and calls[0].function.name == "get_weather", calls  # type: ignore[union-attr]
        jsonschema.validate(json.loads(calls[0].function.arguments), schema)  # type: ignore[union-attr]
