"""The request bodies the server accepts (OpenAI's shapes), and how they become llm-tui's messages and Params.

Pydantic checks the types, ranges and sizes (a 400 naming the field; GET /openapi.json shows every bound); the
functions here check what pydantic cannot (image URLs and data; tools in engines.server.tools) and apply the
server's own limits.
Fields OpenAI defines that change nothing here (`user`, `logit_bias`, penalties...) are accepted and ignored,
so existing clients work unchanged; `top_k` and `repetition_penalty` are accepted as extensions (vLLM's names).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, JsonValue

from engines.images import MAX_IMAGE_BYTES, image_mime
from engines.server.errors import bad_param
from engines.server.tools import CallId, Calls, Choice, Tools, calls_of, tool_request
from engines.types import MAX_TOP_LOGPROBS, ChatMessage, Params, Role

# Bounds on what a request may hold, far above real use, so that a giant value is a 400 before any work (the
# body limit, 16 MiB by default, bounds the rest). Pydantic checks them; the schema (GET /openapi.json) shows them.
MAX_NAME = 4096
"""Characters in a model name (a catalog id, alias, run id or file name)."""
MAX_MESSAGES = 10_000
MAX_PARTS = 1_000
"""Content parts of one message."""
MAX_STOP = 4
MAX_STOP_CHARS = 1_000
MAX_INPUTS = 2_048
"""Texts in one embeddings request (OpenAI's own limit)."""
MAX_TOKENS = 2**31 - 1
"""The most a count may say (llama.cpp counts in int32); the server's own max_tokens is far lower."""
MAX_TEXT_LOGPROBS = 5
"""Alternatives per token a text completion may ask (OpenAI's limit for /v1/completions)."""
SEED_RANGE = 2**64
"""Seeds are taken modulo this: torch.manual_seed takes 0..2**64-1 and refuses more (llama.cpp uses the low
32 bits), and OpenAI's clients may send any int64, negative ones too."""


def _not_bool(value: object) -> object:
    """Pydantic reads true as 1 and false as 0 in a number field; the schema (and OpenAI) says a number."""
    if isinstance(value, bool):
        raise ValueError("a number is expected, not true or false")
    return value


Int = Annotated[int, BeforeValidator(_not_bool)]
"""An integer; true and false are refused, not read as 1 and 0."""
Name = Annotated[str, Field(max_length=MAX_NAME)]
Text = Annotated[str, Field(min_length=1)]
Count = Annotated[Int, Field(ge=1, le=MAX_TOKENS)]
Real = Annotated[float, BeforeValidator(_not_bool), Field(allow_inf_nan=False)]
"""A finite number: JSON has no NaN or Infinity, but Python's parser accepts them."""
Stop = Annotated[str, Field(min_length=1, max_length=MAX_STOP_CHARS)]


_UNSUPPORTED: dict[str, JsonValue] = {"description": "not supported: leave it out"}
"""OpenAI fields this server refuses when set: the schema says so, and the code's 400 says why in words."""


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")


class ImageUrl(_Body):
    url: str


class ContentPart(_Body):
    model_config = ConfigDict(  # merged with _Body's
        json_schema_extra={
            "if": {"properties": {"type": {"const": "image_url"}}},
            "then": {"required": ["image_url"], "properties": {"image_url": {"type": "object"}}},
        },
    )
    type: Literal["text", "image_url"]
    text: str | None = None
    image_url: ImageUrl | None = None


class Message(_Body):
    # A tool result says which call it answers (the code's 400 says it in words).
    model_config = ConfigDict(
        json_schema_extra={"if": {"properties": {"role": {"const": "tool"}}}, "then": {"required": ["tool_call_id"]}}
    )
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | Annotated[list[ContentPart], Field(max_length=MAX_PARTS)] | None = None
    tool_calls: Calls | None = Field(None, description="an assistant message's calls (its content may be null)")
    tool_call_id: CallId | None = Field(None, description="a tool message: the call it answers")
    name: Name | None = None


class StreamOptions(_Body):
    include_usage: bool = False


class ResponseFormat(_Body):
    # `json_schema` must hold the schema when the type says so (the code's 400 says it in words).
    model_config = ConfigDict(
        json_schema_extra={
            "if": {"properties": {"type": {"const": "json_schema"}}},
            "then": {
                "required": ["json_schema"],
                "properties": {
                    "json_schema": {
                        "type": "object",
                        "required": ["schema"],
                        "properties": {"schema": {"type": "object"}},
                    }
                },
            },
        },
    )
    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None


class Sampling(_Body):
    """What chat and raw completions share."""

    model: Name
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: Annotated[Real, Field(ge=0, le=2)] | None = None
    top_p: Annotated[Real, Field(gt=0, le=1)] | None = None
    top_k: Annotated[Int, Field(ge=0, le=MAX_TOKENS)] | None = Field(None, description="0: off")
    repetition_penalty: Annotated[Real, Field(gt=0)] | None = None
    max_tokens: Count | None = None
    stop: Stop | Annotated[list[Stop], Field(max_length=MAX_STOP)] | None = None
    seed: Int | None = Field(None, description="any integer; engines use it modulo 2**64")
    n: Annotated[Int, Field(ge=1, le=1, description="only 1 is supported")] | None = None


class ChatRequest(Sampling):
    messages: list[Message] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_completion_tokens: Count | None = None
    response_format: ResponseFormat | None = None
    logprobs: bool | None = Field(None, description="llama.cpp engines give them; others answer 400")
    top_logprobs: Annotated[Int, Field(ge=0, le=MAX_TOP_LOGPROBS)] | None = Field(None, description="needs logprobs")
    tools: Tools | None = None
    tool_choice: Choice | None = Field(None, description='"auto" (the default), "none", "required" or a function')
    parallel_tool_calls: bool | None = None


class CompletionRequest(Sampling):
    prompt: Text | Annotated[list[Text], Field(min_length=1, max_length=1)]
    logprobs: Annotated[Int, Field(ge=0, le=MAX_TEXT_LOGPROBS)] | None = Field(
        None, description="alternatives per token; llama.cpp engines give them, others answer 400"
    )
    echo: bool = Field(False, json_schema_extra=_UNSUPPORTED | {"enum": [False]})
    suffix: str | None = Field(None, json_schema_extra=_UNSUPPORTED | {"maxLength": 0})


class EmbeddingRequest(_Body):
    model: Name
    input: Text | Annotated[list[Text], Field(min_length=1, max_length=MAX_INPUTS)]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Int | None = Field(None, json_schema_extra=_UNSUPPORTED | {"type": "null"})


_ROLES: dict[str, Role] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
}


def chat_messages(request: ChatRequest) -> list[ChatMessage]:
    """The conversation; 400 naming the message for a role, part, image or call we cannot take."""
    out: list[ChatMessage] = []
    called: dict[str, str] = {}
    """Call ids of the assistant messages so far → the function's name (a tool result's own `name` is optional)."""
    for i, message in enumerate(request.messages):
        role = _ROLES[message.role]
        converted = _message(role, message, f"messages[{i}].content")
        if message.tool_calls:
            if role != "assistant":
                raise bad_param(f"messages[{i}].tool_calls", "only assistant messages hold tool_calls")
            calls = calls_of(message.tool_calls)
            called.update((call.id, call.name) for call in calls)
            converted = replace(converted, tool_calls=calls)
        if role == "tool":
            if message.tool_call_id is None:
                raise bad_param(f"messages[{i}].tool_call_id", "a tool message needs the tool_call_id it answers")
            name = message.name or called.get(message.tool_call_id)
            converted = replace(converted, tool_call_id=message.tool_call_id, name=name)
        out.append(converted)
    return out


def _message(role: Role, message: Message, where: str) -> ChatMessage:
    if message.content is None or isinstance(message.content, str):
        return ChatMessage(role, message.content or "")
    texts: list[str] = []
    images: list[bytes] = []
    for j, part in enumerate(message.content):
        if part.type == "text":
            texts.append(part.text or "")
        elif part.image_url is not None:
            images.append(_data_url_image(part.image_url.url, f"{where}[{j}].image_url.url"))
        else:  # the fuzzer's find: this once said "type 'image_url' is not supported (text, image_url)"
            raise bad_param(f"{where}[{j}].image_url", 'an image_url part needs image_url: {"url": "data:..."}')
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
    """Sampling parameters, the JSON schema and the tools of a chat request."""
    tools = tool_request(request.tools, request.tool_choice, request.parallel_tool_calls)
    schema = None
    fmt = request.response_format
    if fmt is not None and fmt.type == "json_object":
        schema = json.dumps({"type": "object"})
    elif fmt is not None and fmt.type == "json_schema":
        inner = (fmt.json_schema or {}).get("schema")
        if not isinstance(inner, dict):
            raise bad_param("response_format.json_schema.schema", "give the JSON schema as an object")
        schema = json.dumps(inner)
    if schema is not None and tools.wants_tools:  # a reply cannot both follow the schema and be a call
        raise bad_param("response_format", "response_format cannot be used with tools; leave one out")
    limit_from = "max_completion_tokens" if request.max_completion_tokens is not None else "max_tokens"
    asked = request.max_completion_tokens if request.max_completion_tokens is not None else request.max_tokens
    if request.top_logprobs is not None and not request.logprobs:
        raise bad_param("top_logprobs", "top_logprobs needs logprobs: true")
    logprobs = (request.top_logprobs or 0) if request.logprobs else None
    params = sampling_params(request, asked, limit_from, max_tokens_limit, json_schema=schema, logprobs=logprobs)
    return replace(
        params,
        tools=tools.tools,
        tool_choice=tools.tool_choice,
        tool_name=tools.tool_name,
        parallel_tool_calls=tools.parallel_tool_calls,
    )


def sampling_params(
    request: Sampling,
    asked: int | None,
    asked_from: str,
    max_tokens_limit: int,
    *,
    json_schema: str | None = None,
    logprobs: int | None = None,
) -> Params:
    """Params from the shared fields; 400 naming the field for a value over the server's limit (the models above
    have checked ranges, counts and lengths)."""
    if asked is not None and asked > max_tokens_limit:
        raise bad_param(asked_from, f"{asked_from} is {asked}; this server allows at most {max_tokens_limit}")
    stops = [request.stop] if isinstance(request.stop, str) else list(request.stop or [])
    return Params(
        temperature=request.temperature,
        top_p=request.top_p,
        top_k=request.top_k,
        repetition_penalty=request.repetition_penalty,
        max_tokens=asked if asked is not None else max_tokens_limit,
        stop=tuple(stops),
        seed=None if request.seed is None else request.seed % SEED_RANGE,
        json_schema=json_schema,
        logprobs=logprobs,
    )


def completion_prompt(request: CompletionRequest) -> str:
    """The one prompt of a raw completion (a list of one is accepted, as clients send it)."""
    prompt = request.prompt if isinstance(request.prompt, str) else request.prompt[0]
    if request.echo or request.suffix:
        raise bad_param("echo" if request.echo else "suffix", "echo and suffix are not supported")
    return prompt


def embedding_inputs(request: EmbeddingRequest) -> list[str]:
    """The texts to embed; 400 for a setting these models cannot honour."""
    texts = [request.input] if isinstance(request.input, str) else request.input
    if request.dimensions is not None:
        raise bad_param("dimensions", "dimensions cannot be changed for these models")
    return texts


_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "none", "list", "dict"})


def _is_type_tag(part: str) -> bool:
    """Pydantic names the member of a union in `loc` ("list[str]", "str", "function-after[...]"): no field."""
    return part in _TYPE_TAGS or "[" in part or "-" in part or part[:1].isupper()


def param_of(loc: Sequence[int | str]) -> str | None:
    """The field at fault, as OpenAI writes it ("messages[0].content[1].type"), from a pydantic `loc`."""
    out = ""
    for part in loc[1:] if loc[:1] == ("body",) else loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not _is_type_tag(part):
            out += f".{part}" if out else part
    return out or None


def validation_message(errors: Sequence[Mapping[str, Any]]) -> tuple[str | None, str]:
    """The field and the message of a 400 for a body pydantic refused: the most specific of its errors (a value
    that fits no member of a union gets one error per member; the deepest says what is wrong)."""
    if not errors:
        return None, "invalid body"
    first = max(errors, key=lambda e: len(e.get("loc", ())))
    if tuple(first.get("loc", ())) == ("body",) and first.get("type") == "missing":
        return None, "the request body is missing: send a JSON object"
    param = param_of(tuple(first.get("loc", ())))
    text = str(first.get("msg", "invalid value"))
    return param, f"{param}: {text}" if param else text
