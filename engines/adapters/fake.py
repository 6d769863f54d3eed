"""A deterministic engine for tests of everything above the engine layer."""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from engines.adapters.base import Engine
from engines.adapters.fake_slots import FakeSlots
from engines.errors import BadModelFile, Cancelled, EmbedInputTooLong, InstanceNotReady
from engines.stop_text import StopText
from engines.types import (
    Capability,
    ChatMessage,
    Delta,
    Done,
    FinishReason,
    Footprint,
    LaunchOptions,
    ModelSpec,
    Params,
    StreamEvent,
    Usage,
)

if TYPE_CHECKING:
    from engines.audio.types import Audio, TranscribeOptions, Transcript

FAIL_MARKER = "[[fail]]"
"""A user message containing this makes the fake engine raise after two tokens."""

ANSWER_CUE = "Answer:"
_MARK = re.compile(r"<<([A-Z])>>")


def marked_letter(prompt: str) -> str | None:
    """X when the prompt's last question (the text after the last "Answer:" but a final one) holds `<<X>>`."""
    body = prompt.rstrip()
    body = body.removesuffix(ANSWER_CUE)
    found = _MARK.search(body.rsplit(ANSWER_CUE, 1)[-1])
    return found.group(1) if found else None


def fake_scores(prompt: str, choices: Sequence[str]) -> list[float]:
    """The fake's log-probabilities: the marked letter's choice " X" -0.1 and every other -3.0; without a mark,
    log(1/n) each and the first choice 0.01 more (never a tie)."""
    letter = marked_letter(prompt)
    if letter is not None:
        return [-0.1 if choice == f" {letter}" else -3.0 for choice in choices]
    even = math.log(1 / len(choices)) if choices else 0.0
    return [even + (0.01 if i == 0 else 0.0) for i in range(len(choices))]


class FakeEngine(Engine):
    """Replies "Echo: <last user message>" (raw completions: "Echo: <prompt>") word by word, reproducibly; after a
    tool result, "The tool said: <results>" (so a scripted tool call in `reply` is followed by an answer).

    Knobs for tests (constructor arguments, never environment):
    `reply` fixes the reply text; `token_delay_s` paces tokens (waiting on the
    cancel event, so Stop still ends it at once); `gate` holds the first token
    until a test sets it; `load_gate` holds the load; `load_error` makes load() fail;
    `n_ctx` is a context window (in the fake's tokens: words) that ends a reply with "context" when full;
    `embed_gate` holds each text to embed until a test sets it; `answers_tools=False` makes it reply as scripted
    after a tool result too (a model that calls again and again).
    """

    name: ClassVar[str] = "fake"
    capabilities: ClassVar[Capability] = (
        Capability.CHAT
        | Capability.STREAM
        | Capability.EMBED
        | Capability.COMPLETION
        | Capability.PARALLEL
        | Capability.SCORE
    )
    formats: ClassVar[tuple[str, ...]] = ("gguf", "hf", "fake")

    def __init__(
        self,
        *,
        reply: str | None = None,
        token_delay_s: float = 0.0,
        gate: threading.Event | None = None,
        load_error: Exception | None = None,
        ram_bytes: int = 64 * 1024 * 1024,
        load_gate: threading.Event | None = None,
        n_ctx: int | None = None,
        embed_gate: threading.Event | None = None,
        answers_tools: bool = True,
    ) -> None:
        self.reply = reply
        self.answers_tools = answers_tools
        self.embed_gate = embed_gate
        self.embedded = 0
        """Texts embedded so far."""
        self.embed_started = threading.Event()
        """Set when an embedding call reaches its first text."""
        self.n_ctx = n_ctx
        self.token_delay_s = token_delay_s
        self.gate = gate
        self.load_error = load_error
        self.load_gate = load_gate
        self.ram_bytes = ram_bytes
        self.spec: ModelSpec | None = None
        self.calls: list[list[ChatMessage]] = []
        self.sessions: list[str | None] = []
        self.params: list[Params] = []
        """The parameters of chat calls, in order."""
        self.prompts: list[str] = []
        """The prompts of raw completions, in order."""
        self.started = threading.Event()
        """Set when a chat or completion call begins, so tests can wait for it instead of sleeping."""
        self.scored: list[tuple[str, tuple[str, ...]]] = []
        """The prompts and choices of `score_choices` calls, in order."""
        self.score_gate: threading.Event | None = None
        """When set by a test: each prompt to score waits for it (or for cancel, which raises Cancelled)."""
        self.slots: FakeSlots | None = None
        """The slots, when launched with `parallel` > 1: one reply event per request per step."""

    def load(self, spec: ModelSpec, options: LaunchOptions) -> None:
        """Pretend to load (waiting for `load_gate` if given); raise `load_error` if one was given."""
        if self.load_gate is not None:
            self.load_gate.wait(30)
        if self.load_error is not None:
            raise self.load_error
        if spec.path is not None and not spec.path.exists():
            raise BadModelFile(str(spec.path), "file does not exist")
        self.spec = spec
        self.slots = FakeSlots(self, options.parallel) if options.parallel > 1 else None

    def unload(self) -> None:
        """Forget the model."""
        self.spec = None
        self.slots = None

    def batcher(self) -> FakeSlots | None:
        return self.slots

    def chat(
        self,
        messages: Sequence[ChatMessage],
        params: Params,
        cancel: threading.Event,
        session: str | None = None,
    ) -> Iterator[StreamEvent]:
        """Stream the scripted or echoed reply one word at a time."""
        if self.spec is None:
            raise InstanceNotReady("fake engine: no model loaded")
        self.calls.append(list(messages))
        self.sessions.append(session)
        self.params.append(params)
        last_user = next((m.content for m in reversed(messages) if m.role == "user"), "")
        prompt_tokens = sum(len(m.content.split()) + 4 for m in messages)
        if self.answers_tools and messages and messages[-1].role == "tool":  # it answers with its tools' results
            results = "; ".join(m.content for m in messages if m.role == "tool" and m.tool_call_id)
            yield from self._reply(last_user, prompt_tokens, params, cancel, f"The tool said: {results}")
            return
        yield from self._reply(last_user, prompt_tokens, params, cancel, self._letter_reply(last_user))

    def complete(self, prompt: str, params: Params, cancel: threading.Event) -> Iterator[StreamEvent]:
        """Stream the scripted reply, or "Echo: <prompt>", like `chat`."""
        self.require(Capability.COMPLETION)  # a test subclass may take the capability away
        if self.spec is None:
            raise InstanceNotReady("fake engine: no model loaded")
        self.prompts.append(prompt)
        yield from self._reply(prompt, len(prompt.split()), params, cancel, self._letter_reply(prompt))

    def _letter_reply(self, said: str) -> str | None:
        """ " X" for a prompt ending in "Answer:" (X its marked letter, else "A", as scoring picks); else None."""
        if self.reply is not None or not said.rstrip().endswith(ANSWER_CUE):
            return None
        return " " + (marked_letter(said) or "A")

    def score_choices(self, prompt: str, choices: Sequence[str], cancel: threading.Event) -> list[float]:
        """`fake_scores` (the `<<X>>` marker rule), waiting on `score_gate` when a test set one."""
        self.require(Capability.SCORE)  # a test subclass may take the capability away
        if self.spec is None:
            raise InstanceNotReady("fake engine: no model loaded")
        if self.score_gate is not None:
            while not self.score_gate.wait(0.01):
                if cancel.is_set():
                    break
        if cancel.is_set():
            raise Cancelled("scoring cancelled")
        self.scored.append((prompt, tuple(choices)))
        return fake_scores(prompt, choices)

    def _reply(
        self, said: str, prompt_tokens: int, params: Params, cancel: threading.Event, text: str | None = None
    ) -> Iterator[StreamEvent]:
        self.started.set()
        if text is None:
            text = self.reply if self.reply is not None else f"Echo: {said}"
        words = text.split(" ")
        pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
        limit = params.max_tokens if params.max_tokens is not None else len(pieces)
        room = None if self.n_ctx is None else max(self.n_ctx - prompt_tokens, 0)
        limit = limit if room is None else min(limit, room)
        cut = StopText(params.stop)  # held back where a stop may be starting, as the real engines do
        count = 0
        if self.gate is not None:
            while not self.gate.wait(0.01):
                if cancel.is_set():
                    break
        for piece in pieces[:limit]:
            if cancel.is_set():
                yield Done(Usage(prompt_tokens, count), "cancelled")
                return
            if FAIL_MARKER in said and count == 2:
                raise RuntimeError("fake engine failure after two tokens")
            emit = cut.feed(piece)
            if cut.stopped:
                if emit:
                    yield Delta(emit)
                yield Done(Usage(prompt_tokens, count), "stop")
                return
            if self.token_delay_s and cancel.wait(self.token_delay_s):
                yield Done(Usage(prompt_tokens, count), "cancelled")
                return
            count += 1
            if emit:
                yield Delta(emit)
        if held := cut.flush():
            yield Delta(held)
        finish: FinishReason = "length" if limit < len(pieces) else "stop"
        if finish == "length" and room is not None and limit >= room:
            finish = "context"
        yield Done(Usage(prompt_tokens, count), finish)

    def embed(self, texts: Sequence[str], cancel: threading.Event | None = None) -> list[list[float]]:
        """A tiny bag-of-letters vector, enough to test similarity plumbing (tokens: words; `n_ctx` limits them;
        `embed_gate` holds each text until a test sets it, or until `cancel` ends the wait with Cancelled)."""
        for i, text in enumerate(texts):
            if self.n_ctx is not None and len(text.split()) > self.n_ctx:
                raise EmbedInputTooLong(i, len(text.split()), self.n_ctx)
        vectors = []
        for text in texts:
            self.embed_started.set()
            if self.embed_gate is not None:
                while not self.embed_gate.wait(0.01):
                    if cancel is not None and cancel.is_set():
                        raise Cancelled("embedding cancelled")
            if cancel is not None and cancel.is_set():
                raise Cancelled("embedding cancelled")
            self.embedded += 1
            counts = [0.0] * 26
            for ch in text.lower():
                if "a" <= ch <= "z":
                    counts[ord(ch) - 97] += 1.0
            vectors.append(counts)
        self.last_embed_tokens = sum(len(text.split()) for text in texts)
        return vectors

    def footprint(self) -> Footprint:
        """A fixed, declared size so memory tests have numbers to check."""
        return Footprint(ram_bytes=self.ram_bytes if self.spec else 0, vram_bytes=0)


class FakeTranscriber(FakeEngine):
    """The fake engine that also hears: one segment per 30 s chunk of audio, "sound for N seconds" (or
    "silence for N seconds" where every sample is under 1e-4), in `options.language` or "en".

    Only tests that want speech to text use it; FakeEngine itself keeps its capabilities. `transcribe_gate` holds
    each chunk until a test sets it (or until cancel ends the wait with Cancelled); `transcribed` keeps each
    call's audio and options; `transcribe_started` is set when a call reaches its first chunk."""

    capabilities: ClassVar[Capability] = FakeEngine.capabilities | Capability.TRANSCRIBE
    CHUNK_S: ClassVar[float] = 30.0

    def __init__(self, *, transcribe_gate: threading.Event | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.transcribe_gate = transcribe_gate
        self.transcribe_started = threading.Event()
        self.transcribed: list[tuple[Audio, TranscribeOptions]] = []

    def transcribe(
        self,
        audio: Audio,
        options: TranscribeOptions,
        cancel: threading.Event,
        progress: Callable[[float], None] | None = None,
    ) -> Transcript:
        """The scripted transcript, chunk by chunk, reporting progress and stopping between chunks on cancel."""
        from engines.audio.types import SAMPLE_RATE, Segment, Transcript

        if self.spec is None:
            raise InstanceNotReady("fake engine: no model loaded")
        self.transcribed.append((audio, options))
        started = time.perf_counter()
        step = int(self.CHUNK_S * SAMPLE_RATE)
        total = len(audio.samples)
        segments = []
        for begin in range(0, total, step):
            self.transcribe_started.set()
            if self.transcribe_gate is not None:
                while not self.transcribe_gate.wait(0.01):
                    if cancel.is_set():
                        break
            if cancel.is_set():
                raise Cancelled("transcription cancelled")
            chunk = audio.samples[begin : begin + step]
            seconds = len(chunk) / SAMPLE_RATE
            heard = "sound" if len(chunk) and float(abs(chunk).max()) >= 1e-4 else "silence"
            segments.append(
                Segment(begin / SAMPLE_RATE, begin / SAMPLE_RATE + seconds, f" {heard} for {seconds:g} seconds")
            )
            if progress is not None:
                progress(min(begin + step, total) / total)
        return Transcript(
            "".join(s.text for s in segments),
            tuple(segments),
            language=options.language or "en",
            duration_s=audio.duration_s,
            elapsed_s=time.perf_counter() - started,
            model=self.spec.id,
        )
