"""One assistant reply in flight: stored as it streams, shown in the log it was given.

The screen starts a turn; the turn's sink runs on the instance's worker thread,
feeds the store and posts each event to the log (`ChatLog.post_text` /
`post_end`, which never block the worker). The log draws them and, at the end,
sends `ChatLog.ReplyEnded` up to the screen. Nothing calls back into the screen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from engines.requests import RequestHandle
from engines.store.sessions import ReplyWriter, SessionRecord, TurnMetrics
from engines.tools.assemble import ToolCallAssembler
from engines.types import Delta, Done, Params, Reasoning, StreamEvent, ToolCall, ToolCallDelta, schema_of

if TYPE_CHECKING:
    from tui.runtime import ActiveModel, Runtime
    from tui.widgets.chat_log import ChatLog


@dataclass(eq=False)
class ChatTurn:
    """The request, the store row it writes, and the key of the log entry it fills."""

    key: int
    session_id: int
    handle: RequestHandle
    writer: ReplyWriter
    calls: ToolCallAssembler = field(default_factory=ToolCallAssembler)
    """The tool calls the reply makes (filled on the worker thread before its Done is posted)."""

    @classmethod
    def start(cls, runtime: Runtime, session: SessionRecord, active: ActiveModel, log: ChatLog) -> ChatTurn:
        """Begin a reply to the session's conversation on the active instance, streaming into `log`; the model
        may call the tools the session's parameters offer (F9).

        The sink runs on the instance's worker thread: it feeds the store
        (which writes at most about once a second) and posts the event to
        `log` without blocking the worker. Raises what `EngineManager.submit`
        raises (the reply's row is then marked failed).
        """
        store = runtime.store
        params = session.params or Params()
        messages = store.chat_messages(session.id)
        writer = store.begin_reply(session.id, model=active.model_id, engine=active.engine, params=params)
        key = writer.message_id
        calls = ToolCallAssembler()

        def sink(event: StreamEvent) -> None:
            writer.feed(event)  # never raises; a failed save is kept in writer.save_error
            if isinstance(event, Delta):
                log.post_text(key, event.text)
            elif isinstance(event, Reasoning):
                log.post_reasoning(key, event.text)
            elif isinstance(event, ToolCallDelta):
                calls.add(event)
            elif isinstance(event, Done):
                if calls:
                    log.post_text(key, calls_markdown(calls))
                status = "cancelled" if event.finish_reason == "cancelled" else "complete"
                footer = metrics_line(TurnMetrics.from_done(event))
                if status == "complete":
                    footer += schema_note(params, writer.text)
                log.post_end(key, status, footer)
            else:
                log.post_end(key, "error", error=event.message)

        try:
            handle = runtime.manager.submit(active.run_id, messages, params, session=f"chat-{session.id}", sink=sink)
        except Exception as exc:
            writer.fail(str(exc))
            raise
        log.start_reply(key, header=f"{active.model_id} · {active.engine}")
        return cls(key, session.id, handle, writer, calls)


def calls_markdown(calls: ToolCallAssembler) -> str:
    """How a reply's tool calls read under its text."""
    return calls_text(calls.calls())


def calls_text(calls: Sequence[ToolCall]) -> str:
    """Tool calls as Markdown lines (`🔧 name({...})`), each after a blank line."""
    return "".join(f"\n\n🔧 `{c.name}({c.arguments})`" for c in calls)


def metrics_line(metrics: TurnMetrics) -> str:
    """The per-turn line under a reply: TTFT, decode speed, tokens in → out."""
    parts = []
    if metrics.ttft_ms is not None:
        parts.append(f"TTFT {metrics.ttft_ms:.0f} ms")
    if metrics.reply_ttft_ms is not None:
        parts.append(f"reply after {metrics.reply_ttft_ms / 1000:.1f} s")
    if metrics.tokens_per_s:
        parts.append(f"{metrics.tokens_per_s:.1f} tok/s")
    about = "≈" if metrics.estimated else ""  # the server never sent its counts (a stopped remote reply)
    tokens = f"{about}{metrics.prompt_tokens or 0}→{metrics.completion_tokens or 0} tokens"
    if metrics.reasoning_tokens:
        reply = (metrics.completion_tokens or 0) - metrics.reasoning_tokens
        tokens += f" ({metrics.reasoning_tokens} thinking, {reply} reply)"
    parts.append(tokens)
    if metrics.finish_reason == "tool_calls":
        parts.append("called tools")
    if metrics.finish_reason == "length":
        parts.append("hit max tokens")
    elif metrics.finish_reason == "context":
        parts.append(context_full(metrics.prompt_tokens or 0, metrics.completion_tokens or 0))
    elif metrics.finish_reason == "cancelled":
        parts.append("stopped")
    return " · ".join(parts)


def context_full(prompt: int, completion: int) -> str:
    """Why a reply stopped at a full context window (it fills at prompt + reply), and what makes room."""
    window = prompt + completion
    if prompt * 2 >= window:
        return f"the prompt filled the context ({prompt} of {window} tokens): shorten it, or relaunch with more"
    return f"the context is full ({window} tokens): a new chat, or a relaunch with more, makes room"


def schema_note(params: Params, text: str) -> str:
    """For a reply asked to follow a JSON schema: whether it does, and if not, the first thing wrong."""
    schema = schema_of(params)
    if schema is None:
        return ""
    from engines.structured.check import ReplyNotValid, check_reply

    try:
        check_reply(text, schema)
    except ReplyNotValid as exc:
        return f" · ✗ {exc}"
    return " · ✓ JSON follows the schema"
