"""Through the manager: a fake model's written call arrives as a call, its thinking apart, its result answered."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from engines.adapters.fake import FakeEngine
from engines.errors import CapabilityNotSupported
from engines.manager import EngineManager
from engines.types import ChatMessage, Delta, LaunchOptions, ModelSpec, Params, Reasoning, Tool

SPEC = ModelSpec(id="fake-model", format="fake")
WEATHER = Tool("get_weather", parameters=json.dumps({"type": "object", "properties": {"city": {"type": "string"}}}))
CALL = '<think>The user wants weather.</think><tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}'


@pytest.fixture
def manager() -> Iterator[EngineManager]:
    with EngineManager() as mgr:
        yield mgr


@pytest.mark.parametrize("parallel", [1, 2])
def test_call_thinking_and_the_answer_to_its_result(manager: EngineManager, parallel: int) -> None:
    engine = FakeEngine(reply=CALL)
    run_id = manager.start(SPEC, LaunchOptions(parallel=parallel), engine)
    ask = [ChatMessage("user", "Weather in Paris?")]
    first = manager.submit(run_id, ask, Params(tools=(WEATHER,))).result()
    assert first.error is None and first.done is not None
    assert first.text == "" and first.reasoning == "The user wants weather."
    [call] = first.tool_calls
    assert (call.name, json.loads(call.arguments)) == ("get_weather", {"city": "Paris"})
    assert first.done.finish_reason == "tool_calls"
    assert first.done.usage.reasoning_tokens > 0
    assert first.done.metrics is not None and first.done.metrics.reply_ttft_ms is None  # no reply text came
    assert engine.params[-1].tools == (WEATHER,)

    history = [
        *ask,
        ChatMessage("assistant", "", tool_calls=first.tool_calls),
        ChatMessage("tool", "18 C", tool_call_id=call.id, name=call.name),
    ]
    second = manager.submit(run_id, history, Params(tools=(WEATHER,))).result()
    assert second.text == "The tool said: 18 C" and second.done is not None and second.done.finish_reason == "stop"
    assert engine.calls[-1][-1].tool_call_id == call.id


def test_thinking_then_reply_times_the_reply_apart(manager: EngineManager) -> None:
    run_id = manager.start(SPEC, LaunchOptions(), FakeEngine(reply="<think> a b c </think> Hi there"))
    handle = manager.submit(run_id, [ChatMessage("user", "x")])
    events = list(handle)
    assert isinstance(events[0], Reasoning)  # the first token goes out at once, thinking or not
    assert "".join(e.text for e in events if isinstance(e, Delta)) == "Hi there"
    done = events[-1]
    assert done.metrics is not None and done.metrics.reply_ttft_ms is not None  # type: ignore[union-attr]
    assert done.metrics.reply_ttft_ms >= done.metrics.ttft_ms  # type: ignore[union-attr]


def test_a_forced_call_needs_an_engine_with_a_schema_grammar(manager: EngineManager) -> None:
    run_id = manager.start(SPEC, LaunchOptions(), FakeEngine())
    with pytest.raises(CapabilityNotSupported, match="forced tool calls"):
        manager.submit(run_id, [ChatMessage("user", "x")], Params(tools=(WEATHER,), tool_choice="required"))
