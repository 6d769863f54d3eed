"""One assistant reply in flight: stored as it streams, shown as it arrives."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from engines.requests import RequestHandle
from engines.store.sessions import ReplyWriter, SessionRecord, TurnMetrics
from engines.types import Delta, Done, Error, Params, StreamEvent, schema_of
from tui.messages import ReplyEvent

if TYPE_CHECKING:
    from textual.message_pump import MessagePump

    from tui.runtime import ActiveModel, Runtime
    from tui.widgets.chat_log import ChatLog


@dataclass(eq=False)
class ChatTurn:
    """The request, the store row it writes, and the log entry it fills."""

    key: int
    session_id: int
    handle: RequestHandle
    writer: ReplyWriter

    @classmethod
    def start(cls, target: MessagePump, runtime: Runtime, session: SessionRecord, active: ActiveModel) -> ChatTurn:
        """Begin a reply to the session's conversation on the active instance.

        The sink runs on the instance's worker thread: it feeds the store
        (which writes at most about once a second) and posts the event to
        `target` without blocking the worker.
        """
        store = runtime.store
        params = session.params or Params()
        messages = store.chat_messages(session.id)
        writer = store.begin_reply(session.id, model=active.model_id, engine=active.engine, params=params)
        key = writer.message_id

        def sink(event: StreamEvent) -> None:
            writer.feed(event)  # never raises; a failed save is kept in writer.save_error
            target.post_message(ReplyEvent(key, event))

        try:
            handle = runtime.manager.submit(active.run_id, messages, params, session=f"chat-{session.id}", sink=sink)
        except Exception as exc:
            writer.fail(str(exc))
            raise
        turn = cls(key, session.id, handle, writer)
        log = target.query_one("#chat-log")  # type: ignore[attr-defined]
        log.start_reply(key, header=f"{active.model_id} · {active.engine}")
        return turn

    def apply(self, event: StreamEvent, log: ChatLog) -> bool:
        """Show one event; True when the reply has ended."""
        view = log.reply(self.key)
        if isinstance(event, Delta):
            if view is not None:
                view.append(event.text)
            return False
        if view is not None:
            if isinstance(event, Done):
                status = "cancelled" if event.finish_reason == "cancelled" else "complete"
                footer = metrics_line(TurnMetrics.from_done(event))
                if status == "complete":
                    footer += schema_note(self.handle.params, self.writer.text)
                view.finish(footer=footer, status=status)
            elif isinstance(event, Error):
                view.set_error(event.message)
        return True


def metrics_line(metrics: TurnMetrics) -> str:
    """The per-turn line under a reply: TTFT, decode speed, tokens in → out."""
    parts = []
    if metrics.ttft_ms is not None:
        parts.append(f"TTFT {metrics.ttft_ms:.0f} ms")
    if metrics.tokens_per_s:
        parts.append(f"{metrics.tokens_per_s:.1f} tok/s")
    about = "≈" if metrics.estimated else ""  # the server never sent its counts (a stopped remote reply)
    parts.append(f"{about}{metrics.prompt_tokens or 0}→{metrics.completion_tokens or 0} tokens")
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
