"""Errors in OpenAI's shape — `{"error": {"message", "type", "param", "code"}}` — with the HTTP status that fits.

Clients written for OpenAI branch on the status (the official SDK raises NotFoundError for 404,
RateLimitError for 429, ...) and show `message`; `param` names the field at fault.
"""

from __future__ import annotations

from dataclasses import dataclass

from engines.errors import (
    BadModelFile,
    BadRequest,
    CapabilityNotSupported,
    ContextLengthExceeded,
    EngineUnavailable,
    InstanceNotFound,
    InstanceNotReady,
    InsufficientMemory,
    LlmTuiError,
    ModelNotFound,
)
from engines.structured.limits import SchemaRefused
from engines.types import Error


@dataclass(eq=False)
class ApiError(Exception):
    """An error the server answers with; raise it from anywhere in a request."""

    status: int
    message: str
    type: str = "invalid_request_error"
    param: str | None = None
    code: str | None = None
    headers: tuple[tuple[str, str], ...] = ()

    def body(self) -> dict[str, object]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def __str__(self) -> str:
        return f"{self.status} {self.message}"


def bad_param(param: str, message: str) -> ApiError:
    """400 naming the field at fault."""
    return ApiError(400, message, param=param, code="invalid_value")


def model_not_found(name: str, why: str = "") -> ApiError:
    text = f"the model {name!r} does not exist or is not running"
    return ApiError(404, f"{text}: {why}" if why else text, param="model", code="model_not_found")


def from_exception(exc: BaseException) -> ApiError:
    """The answer for an error raised before or while a request was queued."""
    if isinstance(exc, ApiError):
        return exc
    text = str(exc) or type(exc).__name__
    if isinstance(exc, ContextLengthExceeded):  # OpenAI's code: clients branch on it to trim the conversation
        return ApiError(400, text, param="messages", code="context_length_exceeded")
    if isinstance(exc, CapabilityNotSupported):
        return ApiError(400, text, code="capability_not_supported")
    if isinstance(exc, SchemaRefused):
        return ApiError(400, text, param="response_format", code="invalid_value")
    if isinstance(exc, BadRequest):
        return ApiError(400, text, code="invalid_value")
    if isinstance(exc, ModelNotFound | InstanceNotFound):
        return ApiError(404, text, param="model", code="model_not_found")
    if isinstance(exc, InsufficientMemory):
        return ApiError(503, text, type="server_error", code="insufficient_memory")
    if isinstance(exc, InstanceNotReady | EngineUnavailable | BadModelFile):
        return ApiError(503, text, type="server_error", code="model_unavailable")
    if isinstance(exc, LlmTuiError):
        return ApiError(500, text, type="server_error", code="engine_error")
    return ApiError(500, "internal server error", type="server_error", code="internal_error")


_EVENT_ERRORS: dict[str, tuple[int, str, str]] = {
    "BadRequest": (400, "invalid_request_error", "invalid_value"),
    ContextLengthExceeded.__name__: (400, "invalid_request_error", "context_length_exceeded"),
    SchemaRefused.__name__: (400, "invalid_request_error", "invalid_value"),
    "CapabilityNotSupported": (400, "invalid_request_error", "capability_not_supported"),
    "stopped": (503, "server_error", "model_unavailable"),
    "InstanceNotReady": (503, "server_error", "model_unavailable"),
    "shutdown": (503, "server_error", "server_shutting_down"),  # drain.SHUTDOWN_KIND: ended by a server stop
}


def from_event(event: Error) -> ApiError:
    """The answer for an Error the instance delivered (engine failure, context overflow, instance stopped)."""
    status, kind, code = _EVENT_ERRORS.get(event.kind, (500, "server_error", "engine_error"))
    param = "response_format" if event.kind == SchemaRefused.__name__ else None  # its grammar failed a test run
    if code == "context_length_exceeded":
        param = "messages"
    return ApiError(status, event.message, type=kind, param=param, code=code)
