"""What GET /openapi.json says about the API: the replies (success and every error status a route can give)
and the bearer key, so clients and the fuzzer (schemathesis, tests/server/test_api_fuzz.py) see the real API.

The reply models here only document: the routes build their replies as dicts (replies.py), unchanged.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from engines.server.guard import OPEN_PATHS


class ErrorDetail(BaseModel):
    """OpenAI's error object: what went wrong, the field at fault, a stable code."""

    message: str
    type: str
    param: str | None
    code: str | None


class ErrorReply(BaseModel):
    """Every error reply: `{"error": {...}}`."""

    error: ErrorDetail


class Health(BaseModel):
    """GET /healthz."""

    status: Literal["ok"]
    instances: int


class ModelCard(BaseModel):
    """One model of GET /v1/models."""

    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    llm_tui: dict[str, Any]


class ModelList(BaseModel):
    """GET /v1/models."""

    object: Literal["list"]
    data: list[ModelCard]


class CompletionDetails(BaseModel):
    """What the completion tokens were spent on."""

    reasoning_tokens: int


class Usage(BaseModel):
    """Token counts of a reply."""

    prompt_tokens: int
    completion_tokens: int = 0
    total_tokens: int
    completion_tokens_details: CompletionDetails | None = None


class FunctionCall(BaseModel):
    """The function a tool call calls, and its arguments as JSON text."""

    name: str
    arguments: str


class ToolCall(BaseModel):
    """One call the model asks the client to run."""

    id: str
    type: Literal["function"]
    function: FunctionCall


class AssistantMessage(BaseModel):
    """The reply of a chat completion: text (null when the reply is only tool calls), calls, and the thinking
    (`reasoning_content`, the field llama-server and DeepSeek use), when there was any."""

    role: Literal["assistant"]
    content: str | None
    tool_calls: list[ToolCall] | None = None
    reasoning_content: str | None = None


class ChatChoice(BaseModel):
    """The one choice of a chat completion."""

    index: int
    message: AssistantMessage
    finish_reason: Literal["stop", "length", "tool_calls"]
    logprobs: Any = None


class ChatCompletion(BaseModel):
    """POST /v1/chat/completions without `stream` (with it: `text/event-stream` of chunks, then `[DONE]`)."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class TextChoice(BaseModel):
    """The one choice of a raw completion."""

    index: int
    text: str
    finish_reason: Literal["stop", "length"]
    logprobs: Any = None


class TextCompletion(BaseModel):
    """POST /v1/completions without `stream`."""

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[TextChoice]
    usage: Usage


class Embedding(BaseModel):
    """One vector: floats, or base64 of little-endian float32 (`encoding_format: "base64"`)."""

    object: Literal["embedding"]
    index: int
    embedding: list[float] | str


class EmbeddingList(BaseModel):
    """POST /v1/embeddings."""

    object: Literal["list"]
    data: list[Embedding]
    model: str
    usage: Usage


SSE_EVENT: dict[str, Any] = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "data": {
            "type": "string",
            "description": "a chunk as JSON (chat.completion.chunk or text_completion), then `[DONE]`; "
            "a failure after the reply began is an error object as JSON, with no `[DONE]`",
        }
    },
}
"""One server-sent event of a streamed reply (the schema of each event, as OpenAPI describes a stream)."""

_WHY: dict[int, str] = {
    400: "A field is missing, has the wrong type or is out of range (`param` names it), or the body is not JSON",
    401: "Missing or wrong API key",
    403: "Refused (a Host or Origin this server does not serve)",
    404: "No such model (not running, and not launchable)",
    405: "Method not allowed",
    413: "The request body (or an upload) is over the server's limit",
    415: "The body is not sent as `Content-Type: application/json` (a web form cannot post here), or an upload "
    "not as `multipart/form-data`",
    429: "Rate limit reached, or too many requests waiting for the model (see Retry-After)",
    500: "The engine failed while generating",
    503: "The model is loading, failed to load, or stopped",
}

Responses = dict[int | str, dict[str, Any]]


def errors(*statuses: int, keyed: bool = True) -> Responses:
    """The `responses=` of a route: each error status it can give, in OpenAI's error shape (`keyed`: the route
    needs the key and counts toward the rate limit, as all but OPEN_PATHS do)."""
    common = (401, 403, 429) if keyed else (403,)
    return {status: {"model": ErrorReply, "description": _WHY[status]} for status in (*statuses, *common)}


COMMON = (400, 413, 415)
"""What any route with a body can answer before it runs."""
GENERATION = errors(*COMMON, 404, 500, 503)
"""Chat, completions and embeddings: the model may be missing, loading, or fail."""


def install(app: FastAPI, max_tokens: int) -> None:
    """Serve the schema with the bearer key declared (every path but the open ones needs it) and this server's
    own limit on tokens a request may ask for."""

    def schema() -> dict[str, Any]:
        if app.openapi_schema is None:
            with warnings.catch_warnings():  # a route with two methods (GET and HEAD /healthz) has one id: fixed below
                warnings.filterwarnings("ignore", "Duplicate Operation ID", UserWarning)
                doc = get_openapi(title=app.title, version=app.version, routes=app.routes)
            for operations in doc["paths"].values():
                if "head" in operations and "get" in operations:
                    operations["head"]["operationId"] = operations["get"]["operationId"] + "_head"
            doc.setdefault("components", {})["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
            doc["security"] = [{"bearer": []}]
            for path in OPEN_PATHS:
                for operation in doc["paths"].get(path, {}).values():
                    operation["security"] = []
            # Validation failures are 400 here (OpenAI's shape), never FastAPI's 422.
            for operations in doc["paths"].values():
                for operation in operations.values():
                    operation["responses"].pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                doc["components"].get("schemas", {}).pop(name, None)
            _limit_tokens(doc["components"].get("schemas", {}), max_tokens)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = schema  # type: ignore[method-assign]


def _limit_tokens(schemas: dict[str, Any], max_tokens: int) -> None:
    for name in ("ChatRequest", "CompletionRequest"):
        for field in ("max_tokens", "max_completion_tokens"):
            prop = schemas.get(name, {}).get("properties", {}).get(field)
            for member in (prop or {}).get("anyOf", ()):
                if member.get("type") == "integer":
                    member["maximum"] = max_tokens
