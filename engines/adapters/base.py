"""The contract every engine adapter fulfils; the rest of llm-tui sees only this."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from engines.errors import CapabilityNotSupported
from engines.types import (
    Capability,
    ChatMessage,
    Footprint,
    LaunchOptions,
    ModelSpec,
    Params,
    StreamEvent,
)

if TYPE_CHECKING:
    from engines.audio.types import Audio, TranscribeOptions, Transcript
    from engines.requests import RequestHandle


_WORDS = {Capability.TRANSCRIBE: "speech to text"}
"""Capabilities whose flag name reads badly in a message ("does not support transcribe")."""


@dataclass(frozen=True, slots=True)
class SlotStats:
    """What a batching engine's slots are doing, for listings and /metrics."""

    slots: int
    busy: int = 0
    draft_proposed: int = 0
    draft_accepted: int = 0


class Batcher(ABC):
    """Decodes several requests at once: the instance admits requests into free slots and calls `step` while
    any is active; every call happens on the instance's worker thread."""

    @abstractmethod
    def free_slots(self) -> int:
        """Slots that can take a request now."""

    @abstractmethod
    def busy_slots(self) -> int:
        """Slots holding a request."""

    @abstractmethod
    def admit(self, handle: RequestHandle, emit: Callable[[StreamEvent], None]) -> None:
        """Take `handle` into a free slot; its Deltas and one final Done or Error go to `emit` from `step`.

        Raises (an LlmTuiError for a request it refuses, e.g. a prompt past the context) before taking a slot."""

    @abstractmethod
    def step(self) -> None:
        """One decode over every busy slot (their next tokens and chunks of newly admitted prompts)."""

    @abstractmethod
    def stats(self) -> SlotStats:
        """Slots in use and speculative-decoding counts."""


class Engine(ABC):
    """One model loaded on one inference backend.

    An Engine object is used from a single worker thread at a time (the
    manager guarantees it); `chat` may therefore keep per-model state such as
    an evaluated prompt prefix.
    """

    name: ClassVar[str]
    capabilities: ClassVar[Capability]
    formats: ClassVar[tuple[str, ...]] = ("gguf",)
    """Model formats the engine loads (see ModelSpec.format)."""

    def supports(self, capability: Capability) -> bool:
        """True when the engine declares `capability`."""
        return capability in self.capabilities

    def require(self, capability: Capability) -> None:
        """Raise CapabilityNotSupported when `capability` is missing."""
        if not self.supports(capability):
            raise CapabilityNotSupported(self.name, _WORDS.get(capability, (capability.name or "").lower()))

    @abstractmethod
    def load(self, spec: ModelSpec, options: LaunchOptions) -> None:
        """Load the model; raises EngineUnavailable, BadModelFile or ModelNotFound."""

    @abstractmethod
    def unload(self) -> None:
        """Free the model's memory; safe to call twice."""

    @abstractmethod
    def chat(
        self,
        messages: Sequence[ChatMessage],
        params: Params,
        cancel: threading.Event,
        session: str | None = None,
    ) -> Iterator[StreamEvent]:
        """Stream a reply: Delta events, then one Done (or an Error).

        `cancel` is checked between tokens; when set, the generator ends with
        Done(finish_reason="cancelled"). `session` names the conversation so
        an engine can keep per-conversation state (prompt caches).
        Done.metrics is left None: the manager measures time.
        """

    def complete(self, prompt: str, params: Params, cancel: threading.Event) -> Iterator[StreamEvent]:
        """Stream a raw completion of `prompt` (no chat template), like `chat`; raises CapabilityNotSupported
        unless COMPLETION is declared."""
        self.require(Capability.COMPLETION)
        raise NotImplementedError

    def score_choices(self, prompt: str, choices: Sequence[str], cancel: threading.Event) -> list[float]:
        """The natural-log probability of each of `choices` as the continuation of the raw `prompt` (no chat
        template; the prompt is tokenized as `complete` would), in the order given; raises
        CapabilityNotSupported unless SCORE is declared, Cancelled once `cancel` is set.

        A choice of several tokens scores the sum of its tokens' log-probabilities. Evaluation asks for the
        letters of a multiple-choice answer (" A", " B", ...), so one forward pass over the prompt serves them all.
        """
        self.require(Capability.SCORE)
        raise NotImplementedError

    last_embed_tokens: int | None = None
    """Tokens the last `embed` call read, over all its texts (None when the engine cannot tell)."""

    def embed(self, texts: Sequence[str], cancel: threading.Event | None = None) -> list[list[float]]:
        """Embed texts; raises CapabilityNotSupported unless EMBED is declared.

        A text longer than the model takes raises EmbedInputTooLong (never cut silently); once `cancel` is set
        the engine stops as soon as it can (between texts at least) and raises Cancelled."""
        self.require(Capability.EMBED)
        raise NotImplementedError

    def transcribe(
        self,
        audio: Audio,
        options: TranscribeOptions,
        cancel: threading.Event,
        progress: Callable[[float], None] | None = None,
    ) -> Transcript:
        """Speech to text; raises CapabilityNotSupported unless TRANSCRIBE is declared.

        `progress` hears the fraction of the audio done (0..1) as chunks finish; once `cancel` is set the engine
        stops between chunks and raises Cancelled."""
        self.require(Capability.TRANSCRIBE)
        raise NotImplementedError

    def footprint(self) -> Footprint:
        """Memory the loaded model holds, as far as the engine knows."""
        return Footprint()

    def vram_in_use(self) -> int | None:
        """GPU memory the backend reports allocated for this model (e.g. torch's reserved bytes), or None.

        The manager prefers this to the VRAM `footprint` declares; attributing NVML's per-process
        figures to instances is the UI's job.
        """
        return None

    def batcher(self) -> Batcher | None:
        """The loaded model's slots when it was launched to decode several requests at once, else None (the
        instance then runs one request at a time through `chat` / `complete`)."""
        return None
