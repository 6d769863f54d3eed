"""The request bodies the server accepts (OpenAI's shapes), and how they become llm-tui's messages and Params.

Pydantic checks the types (a wrong type is a 400 naming the field); the functions here check what
pydantic cannot (roles we do not serve, `n` > 1, tools, image URLs) and apply the server's limits.
Fields OpenAI defines that change nothing here (`user`, `logit_bias`, penalties...) are accepted and ignored,
so existing clients work unchanged; `top_k` and `repetition_penalty` are accepted as extensions (vLLM's names).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from engines.images import MAX_IMAGE_BYTES, image_mime
from engines.server.errors import ApiError, bad_param
from engines.types import ChatMessage, Params, Role


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")


class ImageUrl(_Body):
    url: str


class ContentPart(_Body):
    type: str
    text: str | None = None
    image_url: ImageUrl | None = None


class Message(_Body):
    role: str
    content: str | list[ContentPart] | None = None


class StreamOptions(_Body):
    include_usage: bool = False


class ResponseFormat(_Body):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None


class Sampling(_Body):
    """What chat and raw completions share."""

    model: str
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    repetition_penalty: float | None = None
    max_tokens: int | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int | None = None


class ChatRequest(Sampling):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = None
    response_format: ResponseFormat | None = None
    tools: list[dict[str, Any]] | None = None


class CompletionRequest(Sampling):
    prompt: str | list[str]
    echo: bool = False
    suffix: str | None = None


class EmbeddingRequest(_Body):
    model: str
    input: str | list[str]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None


_ROLES: dict[str, Role] = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


def chat_messages(request: ChatRequest) -> list[ChatMessage]:
    """The conversation; 400 naming the message for a role, part or image we cannot take."""
    if request.tools:
        raise ApiError(400, "tool calling is not supported by this server", param="tools", code="unsupported_parameter")
    out: list[ChatMessage] = []
    for i, message in enumerate(request.messages):
        role = _ROLES.get(message.role)
        if role is None:
            raise bad_param(f"messages[{i}].role", f"role {message.role!r} is not supported (system, user, assistant)")
        out.append(_message(role, message, f"messages[{i}].content"))
    return out


def _message(role: Role, message: Message, where: str) -> ChatMessage:
    if message.content is None or isinstance(message.content, str):
        return ChatMessage(role, message.content or "")
    texts: list[str] = []
    images: list[bytes] = []
    for j, part in enumerate(message.content):
        if part.type == "text":
            texts.append(part.text or "")
        elif part.type == "image_url" and part.image_url is not None:
            images.append(_data_url_image(part.image_url.url, f"{where}[{j}].image_url.url"))
        else:
            raise bad_param(f"{where}[{j}].type", f"content part type {part.type!r} is not supported (text, image_url)")
    if images and role != "user":
        raise bad_param(where, "images can only be attached to user messages")
    return ChatMessage(role, "\n".join(texts), tuple(images))


def _data_url_image(url: str, where: str) -> bytes:
    """An image sent inline as a data URL; the server never fetches a URL a client names."""
    if not url.startswith("data:"):
        raise bad_param(where, "only data: URLs are accepted for images (this server fetches nothing)")
    header, _, payload = url.partition(",")
    if not header.endswith(";base64"):
        raise bad_param(where, "the image data URL must be base64-encoded")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise bad_param(where, "the image data URL is not valid base64") from None
    if len(data) > MAX_IMAGE_BYTES:
        raise bad_param(where, f"the image is {len(data)} bytes; the limit is {MAX_IMAGE_BYTES}")
    if image_mime(data) is None:
        raise bad_param(where, "the data is not a PNG, JPEG, WebP or GIF image")
    return data


def chat_params(request: ChatRequest, max_tokens_limit: int) -> Params:
    """Sampling parameters and the JSON schema of a chat request."""
    schema = None
    fmt = request.response_format
    if fmt is not None and fmt.type == "json_object":
        schema = json.dumps({"type": "object"})
    elif fmt is not None and fmt.type == "json_schema":
        inner = (fmt.json_schema or {}).get("schema")
        if not isinstance(inner, dict):
            raise bad_param("response_format.json_schema.schema", "give the JSON schema as an object")
        schema = json.dumps(inner)
    limit_from = "max_completion_tokens" if request.max_completion_tokens is not None else "max_tokens"
    asked = request.max_completion_tokens if request.max_completion_tokens is not None else request.max_tokens
    return sampling_params(request, asked, limit_from, max_tokens_limit, json_schema=schema)


def sampling_params(
    request: Sampling,
    asked: int | None,
    asked_from: str,
    max_tokens_limit: int,
    *,
    json_schema: str | None = None,
) -> Params:
    """Params from the shared fields; 400 naming the field for a value out of range or over the server's limit."""
    if request.n not in (None, 1):
        raise bad_param("n", "only n=1 is supported")
    if asked is not None and asked < 1:
        raise bad_param(asked_from, f"{asked_from} must be at least 1, got {asked}")
    if asked is not None and asked > max_tokens_limit:
        raise bad_param(asked_from, f"{asked_from} is {asked}; this server allows at most {max_tokens_limit}")
    checks: tuple[tuple[str, float | None, Callable[[float], bool], str], ...] = (
        ("temperature", request.temperature, lambda v: 0 <= v <= 2, "between 0 and 2"),
        ("top_p", request.top_p, lambda v: 0 < v <= 1, "in (0, 1]"),
        ("top_k", request.top_k, lambda v: v >= 0, "0 (off) or positive"),
        ("repetition_penalty", request.repetition_penalty, lambda v: v > 0, "positive"),
    )
    for name, value, ok, expected in checks:
        if value is not None and not ok(value):
            raise bad_param(name, f"{name} must be {expected}, got {value}")
    stops = [request.stop] if isinstance(request.stop, str) else list(request.stop or [])
    if len(stops) > 4 or any(not s for s in stops):
        raise bad_param("stop", "give at most 4 stop sequences, none empty")
    return Params(
        temperature=request.temperature,
        top_p=request.top_p,
        top_k=request.top_k,
        repetition_penalty=request.repetition_penalty,
        max_tokens=asked if asked is not None else max_tokens_limit,
        stop=tuple(stops),
        seed=request.seed,
        json_schema=json_schema,
    )


def completion_prompt(request: CompletionRequest) -> str:
    """The one prompt of a raw completion (a list of one is accepted, as clients send it)."""
    prompts = [request.prompt] if isinstance(request.prompt, str) else request.prompt
    if len(prompts) != 1:
        raise bad_param("prompt", "give exactly one prompt")
    if not prompts[0]:
        raise bad_param("prompt", "the prompt is empty")
    if request.echo or request.suffix:
        raise bad_param("echo" if request.echo else "suffix", "echo and suffix are not supported")
    return prompts[0]


def embedding_inputs(request: EmbeddingRequest) -> list[str]:
    texts = [request.input] if isinstance(request.input, str) else request.input
    if not texts or any(not t for t in texts):
        raise bad_param("input", "give one or more non-empty texts")
    if request.dimensions is not None:
        raise bad_param("dimensions", "dimensions cannot be changed for these models")
    return texts
