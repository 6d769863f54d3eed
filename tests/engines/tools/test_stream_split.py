"""Thinking and tool calls split out of a streamed reply however its pieces are cut."""

from __future__ import annotations

import json

import pytest

from engines.reasoning import ThinkSplitter
from engines.shaper import ReplyShaper
from engines.tools.assemble import ToolCallAssembler
from engines.tools.catch import CallCatcher
from engines.types import Delta, Done, Params, Reasoning, StreamEvent, Tool, ToolCallDelta, Usage

TOOLS = Params(tools=(Tool("get_weather"),))


def pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def split(text: str, size: int) -> tuple[str, str]:
    splitter = ThinkSplitter()
    out = [p for piece in pieces(text, size) for p in splitter.feed(piece)] + splitter.finish()
    return "".join(t for k, t in out if k == "reasoning"), "".join(t for k, t in out if k == "reply")


@pytest.mark.parametrize("size", [1, 2, 3, 7, 100])
def test_think_block_is_split_from_the_reply_wherever_the_tags_are_cut(size: int) -> None:
    assert split("\n<think>\nThe user greets.\n</think>\n\nHello <b>there</b>!", size) == (
        "\nThe user greets.\n",
        "Hello <b>there</b>!",
    )


@pytest.mark.parametrize("size", [1, 3, 100])
def test_a_reply_without_thinking_is_all_reply_even_when_it_starts_like_a_tag(size: int) -> None:
    assert split("<thin ice> is a <think> tag", size) == ("", "<thin ice> is a <think> tag")
    assert split("  plain", size) == ("", "  plain")


def test_unclosed_thinking_stays_thinking() -> None:
    assert split("<think>still going </thi", 4) == ("still going </thi", "")


@pytest.mark.parametrize("size", [1, 4, 100])
def test_catcher_shows_text_until_a_marker_then_parses_the_calls(size: int) -> None:
    catcher = CallCatcher()
    text = 'Sure, checking. <tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'
    shown = "".join(catcher.feed(p) for p in pieces(text, size))
    rest, calls = catcher.finish()
    assert (shown + rest).strip() == "Sure, checking."
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("get_weather", {"city": "Paris"})]


def test_catcher_hands_back_held_text_that_is_not_a_call() -> None:
    catcher = CallCatcher()
    shown = "".join(catcher.feed(p) for p in pieces('{"answer": 42} is JSON, and <tool_call> is a tag', 5))
    rest, calls = catcher.finish()
    assert shown + rest == '{"answer": 42} is JSON, and <tool_call> is a tag' and calls == ()


def shaped(params: Params, texts: list[str], done: Done, *, native: bool = False) -> list[StreamEvent]:
    shaper = ReplyShaper(params, native_tools=native)
    out = [e for t in texts for e in shaper.feed(Delta(t))]
    return out + shaper.feed(done)


def test_shaper_turns_a_written_call_into_call_events_and_finish_tool_calls() -> None:
    text = '<think>need weather</think><tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'
    events = shaped(TOOLS, pieces(text, 3), Done(Usage(10, 30)))
    assert "".join(e.text for e in events if isinstance(e, Reasoning)) == "need weather"
    assert not [e for e in events if isinstance(e, Delta)]
    calls = ToolCallAssembler()
    for e in events:
        if isinstance(e, ToolCallDelta):
            calls.add(e)
    [call] = calls.calls()
    assert (call.name, json.loads(call.arguments)) == ("get_weather", {"city": "Paris"})
    done = events[-1]
    assert isinstance(done, Done) and done.finish_reason == "tool_calls"
    # the pieces from the one that completed "<think>" to the one that closed it: '>ne' ... 'nk>'
    assert done.usage.reasoning_tokens == 7
    assert done.usage.reply_tokens == 30 - done.usage.reasoning_tokens


def test_shaper_leaves_calls_alone_without_tools_or_on_an_engine_that_streams_its_own() -> None:
    text = '<tool_call>{"name": "f", "arguments": {}}</tool_call>'
    for params, native in ((Params(), False), (TOOLS, True), (Params(tools=TOOLS.tools, tool_choice="none"), False)):
        events = shaped(params, [text], Done(Usage(1, 5)), native=native)
        assert "".join(e.text for e in events if isinstance(e, Delta)) == text
        assert isinstance(events[-1], Done) and events[-1].finish_reason == "stop"


def test_engine_counted_thinking_tokens_are_kept() -> None:
    shaper = ReplyShaper(Params(), native_tools=True)
    shaper.feed(Reasoning("hm"))
    [done] = shaper.feed(Done(Usage(1, 9, reasoning_tokens=4)))
    assert isinstance(done, Done) and done.usage.reasoning_tokens == 4


def test_thinking_in_one_piece_counts_and_parallel_calls_off_keeps_the_first() -> None:
    two = '<tool_call>{"name": "a", "arguments": {}}</tool_call><tool_call>{"name": "b", "arguments": {}}</tool_call>'
    params = Params(tools=(Tool("a"), Tool("b")), parallel_tool_calls=False)
    events = shaped(params, ["<think>hm</think>", two], Done(Usage(1, 9)))
    assert [e.name for e in events if isinstance(e, ToolCallDelta)] == ["a"]
    done = events[-1]
    assert isinstance(done, Done) and done.usage.reasoning_tokens == 1


def test_a_prompt_that_opened_the_thinking_block_makes_the_reply_start_in_it() -> None:
    shaper = ReplyShaper(Params(), native_tools=False)
    assert shaper.feed(Reasoning("")) == []  # the engine's signal, never delivered
    events = [e for t in ("Let me ", "see.</th", "ink>\n\nIt is 4.") for e in shaper.feed(Delta(t))]
    events += shaper.feed(Done(Usage(3, 8)))
    assert "".join(e.text for e in events if isinstance(e, Reasoning)) == "Let me see."
    assert "".join(e.text for e in events if isinstance(e, Delta)) == "It is 4."
