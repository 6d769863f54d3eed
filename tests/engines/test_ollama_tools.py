"""The Ollama engine's tools and thinking with the real `ollama` client against a fake daemon on 127.0.0.1: what
it sends (tools, past calls, results, a forced call's `format`) and what it streams back."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from engines.adapters.ollama_engine import OllamaEngine
from engines.tools.forced import call_schema
from engines.types import (
    Capability,
    ChatMessage,
    Delta,
    Done,
    Error,
    LaunchOptions,
    ModelSpec,
    Params,
    Reasoning,
    StreamEvent,
    Tool,
    ToolCall,
    ToolCallDelta,
)
from tests.engines.fake_ollama import ChatReply, FakeOllama

MODEL = "qwen3:0.6b"
WEATHER = Tool(
    "get_weather",
    "The weather in a city.",
    '{"type": "object", "properties": {"city": {"type": "string", "description": "Its name"}}, "required": ["city"]}',
)
TIME = Tool("get_time", "The time in a zone.", '{"type": "object", "properties": {"tz": {"type": "string"}}}')
ASK = [ChatMessage("user", "Weather in Paris?")]
CALL_ID = re.compile(r"^call_[0-9a-f]{24}$")


@pytest.fixture(autouse=True)
def _plain_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy or API key from the environment may reach the client."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy", "OLLAMA_API_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with FakeOllama() as server:
        yield server


def loaded(fake: FakeOllama, *replies: ChatReply) -> OllamaEngine:
    fake.serve(MODEL, *replies)
    engine = OllamaEngine(warm=False)
    spec = ModelSpec(id=f"ollama:{MODEL}", format="ollama", engines=("ollama",), endpoint=fake.host, served_name=MODEL)
    engine.load(spec, LaunchOptions())
    return engine


def run(engine: OllamaEngine, params: Params, messages: list[ChatMessage] = ASK) -> list[StreamEvent]:
    return list(engine.chat(messages, params, threading.Event()))


def chat_body(fake: FakeOllama) -> dict[str, Any]:
    bodies = [r.body for r in fake.requests if r.method == "POST" and r.path == "/api/chat"]
    assert len(bodies) == 1
    body: dict[str, Any] = bodies[0]
    return body


def test_declares_native_tools() -> None:
    assert OllamaEngine().supports(Capability.TOOLS)


def test_thinking_streams_as_reasoning_before_the_reply_and_is_counted(fake: FakeOllama) -> None:
    engine = loaded(fake, ChatReply(thinking=("The user", " greets."), pieces=("Hi", "!")))
    events = run(engine, Params())
    assert events[:4] == [Reasoning("The user"), Reasoning(" greets."), Delta("Hi"), Delta("!")]
    done = events[-1]
    assert isinstance(done, Done) and done.finish_reason == "stop" and not done.usage.estimated
    assert (done.usage.completion_tokens, done.usage.reasoning_tokens, done.usage.reply_tokens) == (4, 2, 2)
    assert "think" not in chat_body(fake)  # the daemon's default: a thinking model thinks


def test_whole_calls_become_one_piece_each_with_fresh_ids(fake: FakeOllama) -> None:
    calls = (
        {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
        {"function": {"name": "get_time", "arguments": {"tz": "Europe/Paris"}}},
    )
    engine = loaded(fake, ChatReply(thinking=("Two tools.",), pieces=(), tool_calls=calls))
    events = run(engine, Params(tools=(WEATHER, TIME)))
    assert events[0] == Reasoning("Two tools.")
    pieces = [e for e in events if isinstance(e, ToolCallDelta)]
    assert [(p.index, p.name, json.loads(p.arguments)) for p in pieces] == [
        (0, "get_weather", {"city": "Paris"}),
        (1, "get_time", {"tz": "Europe/Paris"}),
    ]
    assert all(p.id is not None and CALL_ID.match(p.id) for p in pieces) and pieces[0].id != pieces[1].id
    done = events[-1]
    assert isinstance(done, Done) and done.finish_reason == "tool_calls"


def test_the_request_carries_tools_and_the_history_in_ollamas_shapes(fake: FakeOllama) -> None:
    history = [
        *ASK,
        ChatMessage("assistant", "", tool_calls=(ToolCall("call_a", "get_weather", '{"city": "Paris"}'),)),
        ChatMessage("tool", "18 C, sunny", tool_call_id="call_a", name="get_weather"),
    ]
    run(loaded(fake), Params(tools=(WEATHER, TIME)), history)
    body = chat_body(fake)
    tools = body["tools"]
    assert [t["type"] for t in tools] == ["function", "function"]
    assert tools[0]["function"]["name"] == "get_weather" and tools[0]["function"]["description"] == WEATHER.description
    weather = tools[0]["function"]["parameters"]
    assert weather["type"] == "object" and weather["required"] == ["city"]
    assert (
        weather["properties"]["city"]["type"] == "string" and weather["properties"]["city"]["description"] == "Its name"
    )
    assert tools[1]["function"]["name"] == "get_time"
    assistant, tool = body["messages"][1:]
    assert assistant["role"] == "assistant"
    assert assistant["tool_calls"] == [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]
    assert tool == {"role": "tool", "content": "18 C, sunny", "tool_name": "get_weather"}
    assert body.get("format") in (None, "")  # no call forced


def test_tool_choice_none_sends_no_tools(fake: FakeOllama) -> None:
    events = run(loaded(fake), Params(tools=(WEATHER,), tool_choice="none"))
    assert isinstance(events[-1], Done) and events[-1].finish_reason == "stop"
    assert not chat_body(fake).get("tools")


def test_a_required_call_is_forced_through_format_and_its_json_becomes_the_call(fake: FakeOllama) -> None:
    reply = ChatReply(pieces=('{"name": "get_', 'weather", "arguments": ', '{"city": "Paris"}}'))
    events = run(loaded(fake, reply), Params(tools=(WEATHER, TIME), tool_choice="required"))
    body = chat_body(fake)
    assert body["format"] == json.loads(call_schema(Params(tools=(WEATHER, TIME), tool_choice="required")))
    assert len(body["tools"]) == 2  # still described to the model
    assert not any(isinstance(e, Delta) for e in events)  # the JSON is the call, not text
    (piece,) = [e for e in events if isinstance(e, ToolCallDelta)]
    assert piece.index == 0 and piece.name == "get_weather" and json.loads(piece.arguments) == {"city": "Paris"}
    assert piece.id is not None and CALL_ID.match(piece.id)
    assert isinstance(events[-1], Done) and events[-1].finish_reason == "tool_calls"


def test_a_named_function_is_forced_by_its_own_schema(fake: FakeOllama) -> None:
    reply = ChatReply(pieces=('{"name": "get_time", "arguments": {"tz": "UTC"}}',))
    params = Params(tools=(WEATHER, TIME), tool_name="get_time")
    events = run(loaded(fake, reply), params)
    schema = chat_body(fake)["format"]
    assert schema["properties"]["name"] == {"enum": ["get_time"]}
    assert [(e.name, e.arguments) for e in events if isinstance(e, ToolCallDelta)] == [("get_time", '{"tz": "UTC"}')]


def test_a_forced_call_cut_short_is_kept_as_text(fake: FakeOllama) -> None:
    reply = ChatReply(pieces=('{"name": "get_weather", ', '"arguments": {"ci', 'ty": "Paris"}}'))
    events = run(loaded(fake, reply), Params(tools=(WEATHER,), tool_choice="required", max_tokens=2))
    assert not any(isinstance(e, ToolCallDelta) for e in events)
    assert "".join(e.text for e in events if isinstance(e, Delta)) == '{"name": "get_weather", "arguments": {"ci'
    assert isinstance(events[-1], Done) and events[-1].finish_reason == "length"


def test_a_daemon_that_parses_the_forced_call_itself_gives_one_call(fake: FakeOllama) -> None:
    calls = ({"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}},)
    events = run(loaded(fake, ChatReply(pieces=(), tool_calls=calls)), Params(tools=(WEATHER,), tool_choice="required"))
    assert [(e.index, e.name) for e in events if isinstance(e, ToolCallDelta)] == [(0, "get_weather")]
    assert not any(isinstance(e, Delta) for e in events)


def test_a_reply_dropped_after_its_calls_keeps_them_and_says_it_was_cut(fake: FakeOllama) -> None:
    calls = ({"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},)
    engine = loaded(fake, ChatReply(pieces=("Let me see.",), tool_calls=calls, drop_after=2))
    events = run(engine, Params(tools=(WEATHER,)))
    assert isinstance(events[0], Delta) and isinstance(events[1], ToolCallDelta)
    assert isinstance(events[-1], Error) and not any(isinstance(e, Done) for e in events)
