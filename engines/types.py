"""Plain data that crosses module and thread boundaries: messages, parameters, events."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from engines.secret import Secret

Role = Literal["system", "user", "assistant", "tool"]
ROLES: tuple[Role, ...] = ("system", "user", "assistant", "tool")
FinishReason = Literal["stop", "length", "context", "cancelled", "tool_calls"]
"""Why a reply ended: end of turn or a stop sequence; max_tokens; the context window was full; Stop; the model
called tools (the caller runs them and sends their results back)."""
ToolChoice = Literal["auto", "none", "required"]
"""Whether the model may call a tool (auto), must not (none) or must call one (required)."""


MAX_TOP_LOGPROBS = 20
"""The most alternatives per token a request may ask (OpenAI's own limit for chat)."""


class Capability(enum.Flag):
    """What an engine can do; the UI and CLI ask instead of guessing."""

    NONE = 0
    CHAT = enum.auto()
    STREAM = enum.auto()
    EMBED = enum.auto()
    VISION = enum.auto()
    JSON_SCHEMA = enum.auto()
    LORA = enum.auto()
    COMPLETION = enum.auto()
    """Raw text completion of a prompt, no chat template (`Engine.complete`)."""
    LOGPROBS = enum.auto()
    """Log-probabilities of the generated tokens (`Params.logprobs`)."""
    TRANSCRIBE = enum.auto()
    """Speech to text (`Engine.transcribe`): a Whisper model."""
    PARALLEL = enum.auto()
    """Several requests decoded at once in one batch (`LaunchOptions.parallel`, `Engine.batcher`)."""
    SPECULATIVE = enum.auto()
    """Speculative decoding (`LaunchOptions.speculative`)."""
    SCORE = enum.auto()
    """Log-probabilities of given continuations after a raw prompt (`Engine.score_choices`): multiple-choice
    evaluation by log-likelihood."""
    TOOLS = enum.auto()
    """The engine takes `Params.tools` / `tool_choice` itself and streams ToolCallDelta events (a remote server,
    Ollama). Engines without it get tools through their chat template, and their calls are parsed out of the
    text or forced by a JSON-schema grammar (engines.tools) when they declare JSON_SCHEMA."""


class InstanceState(enum.StrEnum):
    """Life cycle of a model loaded on an engine."""

    LOADING = "loading"
    READY = "ready"
    BUSY = "busy"
    ERROR = "error"
    STOPPING = "stopping"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A function call the model asked for (OpenAI's `tool_calls[i]`)."""

    id: str
    name: str
    arguments: str = "{}"
    """The arguments as the JSON object text the model wrote (it may be invalid JSON: the caller checks)."""


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call (OpenAI's `tools[i].function`)."""

    name: str
    description: str = ""
    parameters: str = '{"type": "object", "properties": {}}'
    """Its arguments' JSON Schema, as JSON text (kept as text so a Tool stays hashable and frozen)."""


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of a conversation, with an OpenAI-style role."""

    role: Role
    content: str
    images: tuple[bytes, ...] = ()
    """Image files (PNG, JPEG, WebP, GIF bytes) attached to a user message, for vision engines."""
    tool_calls: tuple[ToolCall, ...] = ()
    """An assistant message's calls (its `content` may then be empty)."""
    tool_call_id: str | None = None
    """A tool message: the id of the call whose result `content` is."""
    name: str | None = None
    """A tool message: the function's name (templates and Ollama want it)."""


@dataclass(frozen=True, slots=True)
class Params:
    """Sampling parameters of one request; None means the engine's default."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    repetition_penalty: float | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    json_schema: str | None = None
    """A JSON Schema (as JSON text) the reply must follow; engines without JSON_SCHEMA refuse it."""
    logprobs: int | None = None
    """Give each generated token's log-probability and this many likeliest alternatives (0 to MAX_TOP_LOGPROBS);
    None: none. Engines without LOGPROBS refuse it."""
    tools: tuple[Tool, ...] = ()
    """Functions the model may call."""
    tool_choice: ToolChoice = "auto"
    tool_name: str | None = None
    """When set, the model must call this function (OpenAI's `{"type": "function", "function": {"name": ...}}`)."""
    parallel_tool_calls: bool = True
    """Whether one reply may hold several calls."""

    def validate(self) -> None:
        """Raise BadRequest for values no engine accepts."""
        from engines.errors import BadRequest

        if self.temperature is not None and not 0.0 <= self.temperature <= 5.0:
            raise BadRequest(f"temperature must be between 0 and 5, got {self.temperature}")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise BadRequest(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k is not None and self.top_k < 0:
            raise BadRequest(f"top_k must be 0 (off) or positive, got {self.top_k}")
        if self.repetition_penalty is not None and self.repetition_penalty <= 0:
            raise BadRequest(f"repetition_penalty must be positive, got {self.repetition_penalty}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise BadRequest(f"max_tokens must be at least 1, got {self.max_tokens}")
        if self.logprobs is not None and not 0 <= self.logprobs <= MAX_TOP_LOGPROBS:
            raise BadRequest(f"logprobs must be between 0 and {MAX_TOP_LOGPROBS} alternatives, got {self.logprobs}")
        if any(s == "" for s in self.stop):
            raise BadRequest("stop sequences must not be empty")
        if self.json_schema is not None:
            schema_of(self)
        if self.tool_name is not None and all(t.name != self.tool_name for t in self.tools):
            raise BadRequest(f"tool_choice names the function {self.tool_name!r}, which is not in tools")
        if self.tool_choice == "required" and not self.tools:
            raise BadRequest('tool_choice "required" needs at least one tool')

    @property
    def wants_tools(self) -> bool:
        """Whether the model is offered tools it may call."""
        return bool(self.tools) and self.tool_choice != "none"


def schema_of(params: Params) -> dict[str, object] | None:
    """The JSON schema `params` asks for, parsed; BadRequest when it is not a JSON object or is over a limit."""
    if params.json_schema is None:
        return None
    from engines.structured.limits import check_schema_text

    return check_schema_text(params.json_schema)


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A resolved model: what to load and how to talk to it."""

    id: str
    path: Path | None = None
    format: Literal["gguf", "hf", "ollama", "remote", "fake"] = "gguf"
    chat_template: str | None = None
    """Template to use when the model file carries none (from the catalog)."""
    engines: tuple[str, ...] = ("llama.cpp",)
    context_length: int | None = None
    stop: tuple[str, ...] = ()
    """Stop sequences every request to this model uses (the template's turn marker)."""
    endpoint: str | None = None
    """The server that runs it (format "ollama": the Ollama host; "remote": the OpenAI-compatible base URL,
    ending in /v1)."""
    served_name: str | None = None
    """The model's name on that server ("qwen2.5:0.5b"); `id` is what the user typed ("ollama:qwen2.5:0.5b")."""
    api_key: Secret | None = field(default=None, repr=False)
    """The remote endpoint's key; a Secret, so it never shows in a repr, a log or an error."""


@dataclass(frozen=True, slots=True)
class LaunchOptions:
    """How to load a model on an engine."""

    n_ctx: int = 4096
    n_threads: int | None = None
    n_gpu_layers: int = 0
    seed: int | None = None
    device: str = "cpu"
    dtype: str | None = None
    quantization: str | None = None
    lora_path: Path | None = None
    idle_unload_s: float | None = None
    chat_template: str | None = None
    """A built-in template's name chosen in the launch dialog ("chatml"); None: the file's own, else the catalog's."""
    parallel: int = 1
    """Requests decoded at once, each in its own slot of one shared batch (engines that batch; 1: one at a time)."""
    speculative: str | None = None
    """Speculative decoding: "prompt-lookup" drafts tokens from the conversation itself; None: off."""


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one request."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated: bool = False
    """The server never sent its counts (e.g. the user stopped first): the engine's own estimate."""
    reasoning_tokens: int = 0
    """Of completion_tokens, those spent thinking (a `<think>` block, `reasoning_content`)."""

    @property
    def reply_tokens(self) -> int:
        """Completion tokens of the reply itself (thinking left out)."""
        return max(0, self.completion_tokens - self.reasoning_tokens)


@dataclass(frozen=True, slots=True)
class Metrics:
    """Timing of one request, measured by the engine manager."""

    ttft_ms: float
    """From the start of processing (after any queue wait) to the first delta."""
    tokens_per_s: float
    """Decode throughput after the first token."""
    total_ms: float
    queue_ms: float = 0.0
    reply_ttft_ms: float | None = None
    """From the start of processing to the first token of the reply itself, when thinking came first."""


@dataclass(frozen=True, slots=True)
class Delta:
    """A piece of generated text."""

    text: str
    logprobs: tuple[TokenLogprob, ...] = ()
    """The tokens this text came from, when the request asked for `logprobs`."""


@dataclass(frozen=True, slots=True)
class Reasoning:
    """A piece of the model's thinking (a `<think>` block, a server's `reasoning_content`), kept apart from the
    reply: shown folded, counted apart, and not sent back to the model with the history. An engine whose prompt
    opened the thinking block itself yields an empty one first (engines.shaper then reads the reply as thinking
    until `</think>`); receivers never see that one."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of the `index`-th tool call of this reply: its first piece has the id and the name, and the
    arguments' JSON text arrives in pieces (engines.tools.assemble joins them)."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """A generated token's log-probability, and the likeliest tokens at its place (when asked), likeliest first."""

    token: bytes
    logprob: float
    top: tuple[tuple[bytes, float], ...] = ()


@dataclass(frozen=True, slots=True)
class Done:
    """The end of a reply; metrics are filled in by the manager."""

    usage: Usage
    finish_reason: FinishReason = "stop"
    metrics: Metrics | None = None


@dataclass(frozen=True, slots=True)
class Error:
    """A request failed; the text generated before it is kept by the receiver."""

    message: str
    kind: str = "error"


StreamEvent = Delta | Reasoning | ToolCallDelta | Done | Error
Final = (Done, Error)
"""The event kinds that end a stream (`isinstance(event, Final)`)."""


@dataclass(frozen=True, slots=True)
class Footprint:
    """Memory an instance holds, in bytes (None when unknown)."""

    ram_bytes: int | None = None
    """The larger of what the engine declares and what the process grew by while loading."""
    vram_bytes: int | None = None
    """What the engine reports allocated on the GPU, else what it declares."""
    measured_ram_bytes: int | None = None
    """RSS growth of the process across the load; None when another load or unload overlapped it."""
    mapped_bytes: int | None = None
    """Part of the RSS growth that is file-backed (the mmap'd model file): page cache, not heap."""


@dataclass(frozen=True, slots=True)
class InstanceInfo:
    """A snapshot of one instance for listings."""

    run_id: str
    model_id: str
    engine: str
    device: str
    state: InstanceState
    error: str | None = None
    requests_served: int = 0
    last_tokens_per_s: float | None = None
    started_at: float = 0.0
    footprint: Footprint = field(default_factory=Footprint)
    options: LaunchOptions = field(default_factory=LaunchOptions)
    """What it was launched with (n_ctx, n_gpu_layers, idle_unload_s...)."""
    last_used_at: float = 0.0
    """time.time() of the last request submitted or finished (or of the end of the load)."""
    idle_s: float = 0.0
    """Seconds since it was last used; 0 while loading, busy or holding queued requests."""
    pending_requests: int = 0
    """Requests running or queued on it."""
    load_s: float | None = None
    """How long the load took (None while loading)."""
    stop_reason: str | None = None
    """Why it stopped or is stopping ("idle for 300 s", "stopped"), None while it runs."""
    slots: int = 1
    """Requests it decodes at once."""
    slots_busy: int = 0
    """Slots holding a request now (the rest of pending_requests wait in the queue)."""
    draft_proposed: int = 0
    """Speculative decoding: tokens drafted since the load."""
    draft_accepted: int = 0
    """Speculative decoding: drafted tokens the model confirmed (each saves one decode step)."""

    @property
    def queued(self) -> int:
        """Requests waiting for a slot."""
        return max(0, self.pending_requests - self.slots_busy)

    @property
    def idle(self) -> bool:
        """Loaded and doing nothing: the only state in which it may be unloaded to make room."""
        return self.state is InstanceState.READY and self.pending_requests == 0
