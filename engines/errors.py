"""Errors a user can act on: each says what happened and what to do next."""

from __future__ import annotations


class LlmTuiError(Exception):
    """Base of every error llm-tui raises on purpose; its text is shown as is."""


class ConfigError(LlmTuiError):
    """A configuration file or value is invalid."""


class EngineUnavailable(LlmTuiError):
    """An engine's Python package is missing or its native library cannot run."""

    def __init__(self, engine: str, reason: str, fix: str = "") -> None:
        self.engine = engine
        self.reason = reason
        self.fix = fix
        text = f"{engine} engine unavailable: {reason}"
        super().__init__(f"{text}; {fix}" if fix else text)


class CapabilityNotSupported(LlmTuiError):
    """The engine cannot do what was asked (embeddings, vision, JSON schema...)."""

    def __init__(self, engine: str, capability: str) -> None:
        self.engine = engine
        self.capability = capability
        super().__init__(f"the {engine} engine does not support {capability}")


class ModelNotFound(LlmTuiError):
    """A model reference matches no catalog id, alias or file."""


class BadModelFile(LlmTuiError):
    """A model file is malformed, truncated or not what its name says."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"bad model file {path}: {reason}")


class ChatTemplateError(LlmTuiError):
    """A chat template is broken or tried something the sandbox forbids."""


class BadRequest(LlmTuiError):
    """Parameters or messages of a request are invalid."""


class ContextLengthExceeded(BadRequest):
    """The prompt does not fit the model's context window (with room for a reply)."""


class InstanceNotFound(LlmTuiError):
    """No running instance has the given run id."""


class InstanceNotReady(LlmTuiError):
    """The instance exists but cannot take requests (loading, error, stopping)."""


class RemoteEndpointError(LlmTuiError):
    """A remote server refused, failed or ended a stream early."""


class InsufficientMemory(LlmTuiError):
    """A model would not fit in the memory that is free."""


class DownloadError(LlmTuiError):
    """A download failed; the partial file is kept for resume unless said otherwise."""


class EmbedInputTooLong(BadRequest):
    """A text to embed has more tokens than the model embeds at once: refused, never silently cut."""

    def __init__(self, index: int, tokens: int, limit: int, *, over: bool = False) -> None:
        self.index, self.tokens, self.limit = index, tokens, limit
        counted = f"over {tokens}" if over else str(tokens)  # over: counted only until it was certainly too long
        super().__init__(f"input[{index}] is {counted} tokens; this model embeds at most {limit} tokens per text")


class Cancelled(LlmTuiError):
    """The request was cancelled (its client went away, or Stop) before it finished."""
