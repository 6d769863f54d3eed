"""An OpenAI-compatible server's streamed reply as events: text, thinking, tool-call pieces, then Done or Error.

A chunk's `choices[0].delta` may carry `content` (text, cut at the stop sequences here since servers differ in
honouring `stop`), `reasoning_content` (llama-server, DeepSeek, SGLang) or `reasoning` (vLLM >= 0.9, Ollama,
OpenRouter) for the model's thinking, and `tool_calls` pieces: the first piece of a call has its id and name, the
arguments' JSON text follows in pieces. The reply is complete only when the server says so (a finish_reason or
`[DONE]`); a stream that stops short ends in Error after everything received, tool-call pieces included.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from engines.adapters.remote_link import error_text, json_or_none, reason
from engines.stop_text import StopText
from engines.types import Delta, Done, Error, FinishReason, Reasoning, StreamEvent, ToolCallDelta, Usage

if TYPE_CHECKING:
    import httpx

    from engines.adapters.remote_link import Link

_FINISH: dict[str, FinishReason] = {"length": "length", "tool_calls": "tool_calls", "function_call": "tool_calls"}
"""Servers' finish reasons we keep apart; any other ("stop", "eos", "content_filter") ends the turn: "stop"."""


class ReplyReader:
    """One reply's choice deltas as events, with what Done needs: the finish reason and the counts."""

    __slots__ = ("_ids", "calls", "cut", "finish", "pieces", "thinking", "usage")

    def __init__(self, stops: Sequence[str]) -> None:
        self.cut = StopText(stops)
        self.pieces = 0
        """Chunks that carried reply text, thinking or call arguments: the completion when the server never counts."""
        self.thinking = 0
        """Chunks that carried thinking: the thinking tokens when the server does not count them."""
        self.calls = False
        self.finish: FinishReason | None = None
        self.usage: dict[str, Any] | None = None
        self._ids: list[str | None] = []  # each call's id by index, for servers that leave `index` out

    def choice(self, choice: dict[str, Any]) -> Iterator[StreamEvent]:
        """The events of one chunk's first choice (a chat `delta`, or a completion's `text`)."""
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            delta = {"content": choice.get("text")}
        thought = delta.get("reasoning_content") or delta.get("reasoning")  # one of them: some servers send both
        if isinstance(thought, str) and thought:
            self.thinking += 1
            self.pieces += 1
            yield Reasoning(thought)
        text = delta.get("content")
        if isinstance(text, str) and text:
            self.pieces += 1
            if emit := self.cut.feed(text):
                yield Delta(emit)
        calls = delta.get("tool_calls")
        if isinstance(calls, list) and calls and not self.cut.stopped:
            if held := self.cut.flush():  # the text ended before the calls: what was held is text, not a stop
                yield Delta(held)
            for raw in calls:
                if isinstance(raw, dict) and (piece := self._piece(raw)) is not None:
                    self.calls = True
                    self.pieces += bool(piece.arguments)
                    yield piece
        if isinstance(reason := choice.get("finish_reason"), str) and reason:
            self.finish = _FINISH.get(reason, "stop")

    def _piece(self, raw: dict[str, Any]) -> ToolCallDelta | None:
        function = raw.get("function")
        if not isinstance(function, dict):
            function = {}
        call_id = _text(raw.get("id"))
        name = _text(function.get("name"))
        arguments = function.get("arguments")
        if isinstance(arguments, dict):  # a few servers send the object itself
            arguments = json.dumps(arguments, ensure_ascii=False)
        if not isinstance(arguments, str):
            arguments = ""
        if call_id is None and name is None and not arguments:
            return None
        index = raw.get("index")
        if not isinstance(index, int) or isinstance(index, bool):
            # Without an index (Gemini's endpoint) a new id starts a new call; a piece without one continues.
            index = len(self._ids) if not self._ids or (call_id and call_id != self._ids[-1]) else len(self._ids) - 1
        while len(self._ids) <= index:
            self._ids.append(None)
        self._ids[index] = call_id or self._ids[index]
        return ToolCallDelta(index, call_id, name, arguments)

    def counted(self, prompt_guess: int) -> Usage:
        """The server's counts (the usage chunk) or, without them (a stopped reply never gets it), estimates: the
        prompt guessed from its size and one token per chunk (so on vLLM, SGLang and llama-server)."""
        if self.usage is None:
            return Usage(prompt_guess, self.pieces, estimated=True, reasoning_tokens=self.thinking)
        completion = _int(self.usage.get("completion_tokens"))
        details = self.usage.get("completion_tokens_details")
        told = _int(details.get("reasoning_tokens")) if isinstance(details, dict) else 0
        # Some servers always say 0 (or say nothing) while streaming thinking: then count the thinking chunks.
        thinking = min(told or self.thinking, completion)
        return Usage(_int(self.usage.get("prompt_tokens")), completion, reasoning_tokens=thinking)

    def finished(self) -> FinishReason:
        """How the reply ended: a reply that called tools ends "tool_calls" even where the server says "stop"."""
        finish = self.finish or "stop"
        return "tool_calls" if self.calls and finish == "stop" else finish


def read_events(
    link: Link, resp: httpx.Response, stops: Sequence[str], cancel: threading.Event, prompt_guess: int
) -> Iterator[StreamEvent]:
    """Turn the server-sent events of `resp` into Delta, Reasoning and ToolCallDelta, then Done or Error."""
    import httpx

    reader, complete = ReplyReader(stops), False
    try:
        for event, data in sse(resp.iter_lines()):
            if cancel.is_set():
                break
            if data == "[DONE]":
                complete = True
                break
            doc = json_or_none(data.encode())
            if event == "error" or not isinstance(doc, dict) or doc.get("error") or doc.get("object") == "error":
                if held := reader.cut.flush():
                    yield Delta(held)
                yield Error(link.clean(f"{link.shown} failed mid-reply: {error_text(doc) or data}"), "remote")
                return
            if isinstance(usage := doc.get("usage"), dict):
                reader.usage = usage
            for choice in doc.get("choices") or []:
                if isinstance(choice, dict) and choice.get("index", 0) == 0:
                    yield from reader.choice(choice)
                    if reader.cut.stopped:  # cut at a stop sequence: the reply ends here; hang up on the rest
                        yield Done(reader.counted(prompt_guess), "stop")
                        return
    except httpx.ReadTimeout:
        if not cancel.is_set():
            yield Error(f"{link.shown} sent nothing for {link.read_s:g} s; gave up on the reply", "remote")
            return
    except httpx.HTTPError as exc:  # dropped, reset, or hung up by the cancel watcher
        if not cancel.is_set():
            yield Error(link.clean(f"connection to {link.shown} lost mid-reply: {reason(exc)}"), "remote")
            return
    if cancel.is_set():
        yield Done(reader.counted(prompt_guess), "cancelled")
    elif reader.finish is None and not complete:
        yield Error(f"{link.shown} ended the stream before the reply was complete", "remote")
    else:
        if held := reader.cut.flush():
            yield Delta(held)
        yield Done(reader.counted(prompt_guess), reader.finished())


def sse(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    """Server-sent events as (event name, data): data lines joined, each event ended by a blank line;
    comment lines (`: keep-alive`) and other fields are skipped."""
    event = ""
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "", []
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
