"""The remote (OpenAI-compatible) engine's tools and thinking against a fake server on 127.0.0.1: what it sends
(tools, tool_choice, past calls and results) and what it streams back (tool-call pieces, reasoning, counts)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from engines.adapters.remote import RemoteEngine
from engines.adapters.remote_stream import ReplyReader
from engines.errors import BadRequest
from engines.secret import Secret
from engines.tools.assemble import ToolCallAssembler
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
from tests.engines.fake_openai import FakeOpenAI, Reply

WEATHER = Tool(
    "get_weather",
    "The weather in a city.",
    '{"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}',
)
TIME = Tool("get_time", parameters='{"type": "object", "properties": {"tz": {"type": "string"}}}')
ASK = [ChatMessage("user", "Weather in Paris and the time in Tokyo?")]


def call_piece(index: int, arguments: str, call_id: str | None = None, name: str | None = None) -> dict[str, Any]:
    """One `delta.tool_calls` piece as OpenAI streams it: id, type and name only in a call's first piece."""
    piece: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if call_id is not None:
        piece |= {"id": call_id, "type": "function"}
        piece["function"]["name"] = name
    return piece


TWO_CALLS = (
    {"role": "assistant", "content": None, "tool_calls": [call_piece(0, "", "call_a", "get_weather")]},
    {"tool_calls": [call_piece(0, '{"ci')]},
    {"tool_calls": [call_piece(0, 'ty": "Pa')]},
    {"tool_calls": [call_piece(0, 'ris"}')]},
    {"tool_calls": [call_piece(1, "", "call_b", "get_time")]},
    {"tool_calls": [call_piece(1, '{"tz": ')]},
    {"tool_calls": [call_piece(1, '"Asia/Tokyo"}')]},
)


@pytest.fixture(autouse=True)
def _plain_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy from the environment may come between the client and the fake server."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def loaded(fake: FakeOpenAI) -> RemoteEngine:
    engine = RemoteEngine(retry_backoff_s=0.01)
    spec = ModelSpec(
        id="remote:test/fake-model",
        format="remote",
        engines=("remote",),
        endpoint=fake.endpoint,
        served_name="fake-model",
        api_key=Secret("sk-test"),
    )
    engine.load(spec, LaunchOptions())
    return engine


def run(engine: RemoteEngine, params: Params, messages: list[ChatMessage] = ASK) -> list[StreamEvent]:
    return list(engine.chat(messages, params, threading.Event()))


def assembled(events: list[StreamEvent]) -> tuple[ToolCall, ...]:
    calls = ToolCallAssembler()
    for event in events:
        if isinstance(event, ToolCallDelta):
            calls.add(event)
    return calls.calls()


def test_declares_native_tools() -> None:
    assert RemoteEngine().supports(Capability.TOOLS)


def test_two_streamed_calls_arrive_as_pieces_in_order_and_end_in_tool_calls(fake: FakeOpenAI) -> None:
    fake.replies.append(Reply(deltas=({"content": "Checking."}, *TWO_CALLS), finish_reason="tool_calls"))
    events = run(loaded(fake), Params(tools=(WEATHER, TIME)))
    assert isinstance(events[0], Delta) and events[0].text == "Checking."
    pieces = [e for e in events if isinstance(e, ToolCallDelta)]
    assert pieces == [
        ToolCallDelta(0, "call_a", "get_weather", ""),
        ToolCallDelta(0, None, None, '{"ci'),
        ToolCallDelta(0, None, None, 'ty": "Pa'),
        ToolCallDelta(0, None, None, 'ris"}'),
        ToolCallDelta(1, "call_b", "get_time", ""),
        ToolCallDelta(1, None, None, '{"tz": '),
        ToolCallDelta(1, None, None, '"Asia/Tokyo"}'),
    ]
    assert assembled(events) == (
        ToolCall("call_a", "get_weather", '{"city": "Paris"}'),
        ToolCall("call_b", "get_time", '{"tz": "Asia/Tokyo"}'),
    )
    done = events[-1]
    assert isinstance(done, Done) and done.finish_reason == "tool_calls" and not done.usage.estimated


def test_a_server_that_says_stop_after_calls_still_ends_in_tool_calls(fake: FakeOpenAI) -> None:
    fake.replies.append(Reply(deltas=TWO_CALLS[:4], finish_reason="stop"))
    events = run(loaded(fake), Params(tools=(WEATHER,)))
    assert assembled(events) == (ToolCall("call_a", "get_weather", '{"city": "Paris"}'),)
    assert isinstance(events[-1], Done) and events[-1].finish_reason == "tool_calls"


def test_a_stream_cut_after_a_call_piece_is_truncated_and_keeps_the_pieces(fake: FakeOpenAI) -> None:
    fake.replies.append(Reply(deltas=TWO_CALLS, drop_after=6, finish_reason="tool_calls"))
    events = run(loaded(fake), Params(tools=(WEATHER, TIME)))
    error = events[-1]
    assert isinstance(error, Error) and error.kind == "remote"
    assert not any(isinstance(e, Done) for e in events)
    assert assembled(events) == (
        ToolCall("call_a", "get_weather", '{"city": "Paris"}'),
        ToolCall("call_b", "get_time", '{"tz": '),  # as far as it came: the caller sees it is cut
    )


def test_the_request_carries_tools_and_the_history_of_calls_in_openais_shapes(fake: FakeOpenAI) -> None:
    history = [
        *ASK,
        ChatMessage("assistant", "", tool_calls=(ToolCall("call_a", "get_weather", '{"city": "Paris"}'),)),
        ChatMessage("tool", "18 C, sunny", tool_call_id="call_a", name="get_weather"),
        ChatMessage("assistant", "Let me look.", tool_calls=(ToolCall("call_b", "get_time", "{}"),)),
        ChatMessage("tool", "09:00", tool_call_id="call_b", name="get_time"),
    ]
    run(loaded(fake), Params(tools=(WEATHER, TIME), parallel_tool_calls=False), history)
    body = fake.chat_bodies()[0]
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": json.loads(WEATHER.parameters),
                "description": WEATHER.description,
            },
        },
        {"type": "function", "function": {"name": "get_time", "parameters": json.loads(TIME.parameters)}},
    ]
    assert body["tool_choice"] == "auto" and body["parallel_tool_calls"] is False
    assert body["messages"][1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "content": "18 C, sunny", "tool_call_id": "call_a"},
        {
            "role": "assistant",
            "content": "Let me look.",
            "tool_calls": [{"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}],
        },
        {"role": "tool", "content": "09:00", "tool_call_id": "call_b"},
    ]


@pytest.mark.parametrize(
    ("params", "choice"),
    [
        (Params(tools=(WEATHER, TIME), tool_choice="required"), "required"),
        (Params(tools=(WEATHER, TIME), tool_choice="none"), "none"),
        (Params(tools=(WEATHER, TIME), tool_name="get_time"), {"type": "function", "function": {"name": "get_time"}}),
    ],
)
def test_tool_choice_is_sent_as_openai_spells_it(fake: FakeOpenAI, params: Params, choice: Any) -> None:
    run(loaded(fake), params)
    body = fake.chat_bodies()[0]
    assert body["tool_choice"] == choice and body["parallel_tool_calls"] is True and len(body["tools"]) == 2


def test_no_tools_means_no_tool_fields(fake: FakeOpenAI) -> None:
    run(loaded(fake), Params())
    body = fake.chat_bodies()[0]
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & body.keys()


def test_a_tool_whose_parameters_are_not_a_schema_is_refused_before_sending(fake: FakeOpenAI) -> None:
    engine = loaded(fake)
    with pytest.raises(BadRequest, match="get_weather"):
        run(engine, Params(tools=(Tool("get_weather", parameters="[1, 2]"),)))
    assert fake.chat_bodies() == []


def test_reasoning_content_streams_as_reasoning_and_the_server_counts_it(fake: FakeOpenAI) -> None:
    deltas = ({"reasoning_content": "Let me"}, {"reasoning_content": " think."}, {"content": "Hi"}, {"content": "!"})
    fake.replies.append(Reply(deltas=deltas, usage_details={"reasoning_tokens": 3}))
    events = run(loaded(fake), Params())
    assert events[:4] == [Reasoning("Let me"), Reasoning(" think."), Delta("Hi"), Delta("!")]
    done = events[-1]
    assert isinstance(done, Done) and done.finish_reason == "stop"
    assert done.usage.completion_tokens == 4 and done.usage.reasoning_tokens == 3 and done.usage.reply_tokens == 1


def test_vllm_reasoning_field_is_counted_by_its_chunks_when_the_server_does_not(fake: FakeOpenAI) -> None:
    deltas = ({"reasoning": "a"}, {"reasoning": "b"}, {"reasoning": "c"}, {"content": "Done."})
    fake.replies.append(Reply(deltas=deltas))
    events = run(loaded(fake), Params())
    assert [type(e) for e in events] == [Reasoning, Reasoning, Reasoning, Delta, Done]
    done = events[-1]
    assert isinstance(done, Done) and done.usage.reasoning_tokens == 3 and not done.usage.estimated


def test_both_reasoning_fields_in_one_delta_are_one_piece_of_thinking() -> None:
    reader = ReplyReader(())
    events = list(reader.choice({"delta": {"reasoning_content": "x", "reasoning": "x"}}))
    assert events == [Reasoning("x")]


def test_counted_thinking_never_exceeds_the_completion() -> None:
    reader = ReplyReader(())
    for _ in range(5):
        list(reader.choice({"delta": {"reasoning_content": "."}}))
    reader.usage = {"prompt_tokens": 7, "completion_tokens": 2, "completion_tokens_details": {"reasoning_tokens": 0}}
    usage = reader.counted(0)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.reasoning_tokens) == (7, 2, 2)
    reader.usage = None
    estimate = reader.counted(9)
    assert estimate.estimated and (estimate.completion_tokens, estimate.reasoning_tokens) == (5, 5)


def test_calls_without_an_index_are_told_apart_by_their_ids() -> None:
    reader = ReplyReader(())
    chunks = [
        [{"id": "c1", "function": {"name": "f", "arguments": '{"a": 1}'}}],
        [{"id": "c2", "function": {"name": "g", "arguments": {"b": 2}}}],  # an object, not text
        [{"function": {"arguments": ""}}, {"id": "c3", "function": {"name": "h"}}],
    ]
    events = [e for calls in chunks for e in reader.choice({"delta": {"tool_calls": calls}})]
    assert events == [
        ToolCallDelta(0, "c1", "f", '{"a": 1}'),
        ToolCallDelta(1, "c2", "g", '{"b": 2}'),
        ToolCallDelta(2, "c3", "h", ""),
    ]


def test_text_held_for_a_possible_stop_is_let_out_before_the_calls(fake: FakeOpenAI) -> None:
    deltas = ({"content": "Sure <"}, *TWO_CALLS[:4])
    fake.replies.append(Reply(deltas=deltas, finish_reason="tool_calls"))
    events = run(loaded(fake), Params(tools=(WEATHER,), stop=("<end>",)))
    assert events[:2] == [Delta("Sure "), Delta("<")]
    assert isinstance(events[2], ToolCallDelta) and isinstance(events[-1], Done)
