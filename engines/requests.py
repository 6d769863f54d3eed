"""One chat (or raw completion) request in flight: its events, its cancellation, its result."""

from __future__ import annotations

import contextlib
import itertools
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from engines.errors import LlmTuiError
from engines.types import (
    ChatMessage,
    Delta,
    Done,
    Error,
    Final,
    Params,
    Reasoning,
    StreamEvent,
    ToolCall,
    ToolCallDelta,
)

EventSink = Callable[[StreamEvent], None]
"""Receives events on the instance's worker thread; must not block (e.g. post_message)."""

if TYPE_CHECKING:
    from engines.adapters.base import Engine
    from engines.audio.types import Audio, TranscribeOptions, Transcript

_ids = itertools.count(1)


@dataclass(slots=True)
class ChatResult:
    """Everything a finished request produced."""

    text: str
    done: Done | None
    error: Error | None
    reasoning: str = ""
    """The model's thinking, apart from the reply."""
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(eq=False)
class RequestHandle:
    """A queued or running request; iterate it for events, or give a sink instead.

    A chat request carries `messages`; a raw completion carries `prompt` (and no messages)."""

    run_id: str
    messages: Sequence[ChatMessage]
    params: Params
    session: str | None = None
    sink: EventSink | None = None
    prompt: str | None = None
    """Set for a raw completion (`Engine.complete`): the text to continue, no chat template."""
    request_id: int = field(default_factory=lambda: next(_ids))
    submitted_at: float = field(default_factory=time.perf_counter)
    cancel_event: threading.Event = field(default_factory=threading.Event)
    sink_error: Exception | None = None
    """The first exception the sink raised, if any (events after it are still offered to the sink)."""
    _events: queue.SimpleQueue[StreamEvent] = field(default_factory=queue.SimpleQueue)
    _finished: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        """Stop generation within one token; a queued request ends without running."""
        self.cancel_event.set()

    @property
    def finished(self) -> bool:
        """True once Done or Error has been delivered."""
        return self._finished.is_set()

    def deliver(self, event: StreamEvent) -> None:
        """Hand an event to the sink or the iterator (called by the worker)."""
        if self.sink is not None:
            try:
                self.sink(event)
            except Exception as exc:  # a broken receiver must not kill the instance's worker thread
                self.sink_error = self.sink_error or exc
        else:
            self._events.put(event)
        if isinstance(event, Final):
            self._finished.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the request has finished; False on timeout."""
        return self._finished.wait(timeout)

    def __iter__(self) -> Iterator[StreamEvent]:
        if self.sink is not None:
            raise LlmTuiError("this request delivers its events to a sink; it cannot be iterated")
        while True:
            event = self._events.get()
            yield event
            if isinstance(event, Final):
                return

    def result(self) -> ChatResult:
        """Consume the events and return the whole reply."""
        from engines.tools.assemble import ToolCallAssembler

        parts: list[str] = []
        thinking: list[str] = []
        calls = ToolCallAssembler()
        done: Done | None = None
        error: Error | None = None
        for event in self:
            if isinstance(event, Delta):
                parts.append(event.text)
            elif isinstance(event, Reasoning):
                thinking.append(event.text)
            elif isinstance(event, ToolCallDelta):
                calls.add(event)
            elif isinstance(event, Done):
                done = event
            else:
                error = event
        return ChatResult("".join(parts), done, error, "".join(thinking), calls.calls())


@dataclass(eq=False, kw_only=True)
class EngineJob:
    """Work other than a chat request for an instance's worker (an engine is used from one thread at a time).

    `notify` is called on the worker thread once the job is done (it must not block, e.g. call_soon_threadsafe)."""

    what: ClassVar[str] = "job"
    """Its name in messages ("the embedding request was cancelled before it ran")."""
    error: BaseException | None = None
    elapsed_ms: float = 0.0
    done: threading.Event = field(default_factory=threading.Event)
    cancel_event: threading.Event = field(default_factory=threading.Event)
    notify: Callable[[], None] | None = None

    def run(self, engine: Engine) -> None:
        """Do the work on `engine` (on the worker thread), keeping what it gives on the job."""
        raise NotImplementedError

    def cancel(self) -> None:
        """Stop the job: a queued one never runs, a running one ends as soon as the engine can."""
        self.cancel_event.set()

    def finish(self) -> None:
        """Mark the job done and tell whoever waits (called by the worker)."""
        self.done.set()
        if self.notify is not None:
            with contextlib.suppress(Exception):  # e.g. the server's loop has closed: the worker must live on
                self.notify()

    def wait(self, timeout: float | None) -> None:
        """Wait for the job; raises what the engine raised, or LlmTuiError after `timeout` seconds."""
        if not self.done.wait(timeout):
            raise LlmTuiError(f"{self.what} did not finish within {timeout} s")
        if self.error is not None:
            raise self.error


@dataclass(eq=False, kw_only=True)
class EmbedJob(EngineJob):
    """Texts to embed."""

    what: ClassVar[str] = "embedding"
    texts: Sequence[str]
    vectors: list[list[float]] | None = None
    prompt_tokens: int = 0
    """Tokens the engine read for all the texts (0 when it cannot tell)."""

    def run(self, engine: Engine) -> None:
        self.vectors = engine.embed(self.texts, self.cancel_event)
        self.prompt_tokens = engine.last_embed_tokens or 0

    def result(self, timeout: float | None) -> list[list[float]]:
        """The vectors, in the order of the texts; raises what the engine raised."""
        self.wait(timeout)
        return self.vectors or []


@dataclass(eq=False, kw_only=True)
class TranscribeJob(EngineJob):
    """Audio to turn into text; `progress` hears the fraction done (on the worker thread, must not block)."""

    what: ClassVar[str] = "transcription"
    audio: Audio
    options: TranscribeOptions
    progress: Callable[[float], None] | None = None
    transcript: Transcript | None = None

    def run(self, engine: Engine) -> None:
        self.transcript = engine.transcribe(self.audio, self.options, self.cancel_event, self.progress)

    def result(self, timeout: float | None) -> Transcript:
        """The transcript; raises what the engine raised."""
        self.wait(timeout)
        assert self.transcript is not None
        return self.transcript


@dataclass(eq=False, kw_only=True)
class ScoreJob(EngineJob):
    """Prompts whose given continuations the engine scores (`Engine.score_choices`), one list of log-probabilities
    per prompt, in order; `progress` hears how many prompts are done (on the worker thread, must not block)."""

    what: ClassVar[str] = "scoring"
    items: Sequence[tuple[str, Sequence[str]]]
    progress: Callable[[int], None] | None = None
    scores: list[list[float]] = field(default_factory=list)

    def run(self, engine: Engine) -> None:
        from engines.errors import Cancelled

        for prompt, choices in self.items:
            if self.cancel_event.is_set():
                raise Cancelled(f"the {self.what} request was cancelled")
            self.scores.append(engine.score_choices(prompt, choices, self.cancel_event))
            if self.progress is not None:
                self.progress(len(self.scores))

    def result(self, timeout: float | None) -> list[list[float]]:
        """The log-probabilities, a list per prompt; raises what the engine raised."""
        self.wait(timeout)
        return self.scores
