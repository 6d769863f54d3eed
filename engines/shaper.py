"""What an engine's raw events become before anyone sees them: thinking apart from the reply, tool calls apart
from the text.

Every engine's stream goes through a ReplyShaper (engines.relay). A `<think>` block at the start of the text
becomes Reasoning events; for an engine that does not take tools itself (no Capability.TOOLS) and a request that
offers tools, calls written in the text become ToolCallDelta events and the reply ends with finish_reason
"tool_calls". Engines that stream Reasoning or ToolCallDelta themselves (a server's `reasoning_content`, Ollama's
`thinking`) pass through. Thinking tokens are counted as the raw pieces that carried thinking (one token each
for local engines) unless the engine counted them itself.
"""

from __future__ import annotations

from dataclasses import replace

from engines.reasoning import Kind, ThinkSplitter
from engines.tools.assemble import as_deltas
from engines.tools.catch import CallCatcher
from engines.types import Delta, Done, Params, Reasoning, StreamEvent, TokenLogprob, ToolCallDelta


class ReplyShaper:
    """Turns one request's raw events into the events its receiver gets (see the module docstring)."""

    __slots__ = ("_calls", "_catcher", "_one_call", "_splitter", "reasoning_pieces")

    def __init__(self, params: Params, *, native_tools: bool) -> None:
        self._splitter = ThinkSplitter()
        self._one_call = not params.parallel_tool_calls  # parallel_tool_calls false: the first call only
        self._catcher = CallCatcher() if params.wants_tools and not native_tools else None
        self._calls = False  # a ToolCallDelta went out
        self.reasoning_pieces = 0
        """Raw pieces that carried thinking: the thinking-token count when the engine gives none."""

    def feed(self, event: StreamEvent) -> list[StreamEvent]:
        """The events `event` turns into (none while text is held back; the held text before a final event)."""
        if isinstance(event, Delta):
            return self._text(event.text, event.logprobs)
        if isinstance(event, Reasoning):
            if not event.text:  # the prompt opened the thinking block: the reply starts inside it
                self._splitter.open()
                return []
            self.reasoning_pieces += 1
            return [event]
        if isinstance(event, ToolCallDelta):
            self._calls = True
            return [event]
        out = self.flush()
        if isinstance(event, Done):
            event = self._finished(event)
        out.append(event)
        return out

    def flush(self) -> list[StreamEvent]:
        """Everything held back, as final thinking, text and calls (the stream is ending)."""
        out = [e for kind, text in self._splitter.finish() if (e := self._route(kind, text)) is not None]
        if self._catcher is not None:
            text, calls = self._catcher.finish()
            if text:
                out.append(Delta(text))
            if calls:
                self._calls = True
                out.extend(as_deltas(calls[:1] if self._one_call else calls))
        return out

    def _text(self, text: str, logprobs: tuple[TokenLogprob, ...]) -> list[StreamEvent]:
        was_thinking = self._splitter.thinking
        out = [e for kind, piece in self._splitter.feed(text) if (e := self._route(kind, piece)) is not None]
        if was_thinking or self._splitter.thinking or any(isinstance(e, Reasoning) for e in out):
            self.reasoning_pieces += 1
        if logprobs:  # the scores go with the reply text this piece became, if any
            for i, event in enumerate(out):
                if isinstance(event, Delta):
                    out[i] = Delta(event.text, logprobs)
                    break
        return out

    def _route(self, kind: Kind, text: str) -> StreamEvent | None:
        """A piece of thinking or reply text as its event (reply text through the call catcher, when there is one)."""
        if kind == "reasoning":
            return Reasoning(text)
        if self._catcher is not None:
            text = self._catcher.feed(text)
        return Delta(text) if text else None

    def _finished(self, done: Done) -> Done:
        usage = done.usage
        if not usage.reasoning_tokens and self.reasoning_pieces:
            usage = replace(usage, reasoning_tokens=min(self.reasoning_pieces, usage.completion_tokens))
        finish = "tool_calls" if self._calls and done.finish_reason == "stop" else done.finish_reason
        return replace(done, usage=usage, finish_reason=finish)
