"""Replies in OpenAI's shapes: chat and text completions (whole and as SSE chunks), embeddings.

One `Shaper` per request writes every object of its reply, so ids, `created` and `model` agree across
the chunks of a stream.
"""

from __future__ import annotations

import base64
import json
import struct
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from engines.server.tools import call_json
from engines.types import Done, TokenLogprob, ToolCall, Usage

Kind = Literal["chat", "text"]


def finish_reason(done: Done, called: bool = False) -> str:
    """OpenAI's finish_reason; a full context reads as "length", a cancelled reply (the client left) as "stop".

    `called`: the reply held tool calls, so a reply that simply ended is "tool_calls" whatever the engine said:
    clients loop on that value to run the calls."""
    if done.finish_reason in ("length", "context"):
        return "length"
    return "tool_calls" if called or done.finish_reason == "tool_calls" else "stop"


def usage_json(usage: Usage) -> dict[str, object]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def sse(data: object) -> bytes:
    """One server-sent event."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


SSE_DONE = sse("[DONE]")


@dataclass
class Shaper:
    """Writes the objects of one reply to a chat (`kind="chat"`) or raw completion (`"text"`) request."""

    kind: Kind
    model: str
    id: str = field(default="")
    created: int = field(default_factory=lambda: int(time.time()))
    logprobs: bool = False
    """The request asked for logprobs: each piece of text carries its tokens' (else `logprobs` is null)."""
    _offset: int = 0
    """Characters of text written so far (a text completion's `text_offset`)."""

    def __post_init__(self) -> None:
        if not self.id:
            self.id = ("chatcmpl-" if self.kind == "chat" else "cmpl-") + uuid.uuid4().hex[:24]

    def _object(self, stream: bool) -> str:
        if self.kind == "chat":
            return "chat.completion.chunk" if stream else "chat.completion"
        return "text_completion"

    def _head(self, stream: bool) -> dict[str, object]:
        return {"id": self.id, "object": self._object(stream), "created": self.created, "model": self.model}

    def chunk(
        self,
        text: str | None,
        *,
        finish: str | None = None,
        role: bool = False,
        scored: Sequence[TokenLogprob] = (),
        reasoning: str | None = None,
        calls: Sequence[dict[str, object]] = (),
    ) -> dict[str, object]:
        """One streamed piece; `role` marks the first chat chunk, `finish` the last one; `scored`: its tokens;
        `reasoning`: a piece of thinking; `calls`: pieces of tool calls (`delta.tool_calls` entries)."""
        choice: dict[str, object] = {"index": 0, "finish_reason": finish, "logprobs": None}
        if self.logprobs and text is not None and not role:
            choice["logprobs"] = self._logprobs(scored)
        if self.kind == "chat":
            delta: dict[str, object] = {}
            if role:
                delta["role"] = "assistant"
            if text is not None:
                delta["content"] = text
            if reasoning is not None:  # the field llama-server and DeepSeek use
                delta["reasoning_content"] = reasoning
            if calls:
                delta["tool_calls"] = list(calls)
            choice["delta"] = delta
        else:
            choice["text"] = text or ""
        return {**self._head(True), "choices": [choice]}

    def _logprobs(self, scored: Sequence[TokenLogprob]) -> dict[str, object]:
        if self.kind == "chat":
            return chat_logprobs(scored)
        shaped = text_logprobs(scored, self._offset)
        self._offset += sum(len(t.token.decode("utf-8", "replace")) for t in scored)
        return shaped

    def usage_chunk(self, usage: Usage) -> dict[str, object]:
        """The last chunk when the client asked `stream_options.include_usage`: no choices, the usage."""
        return {**self._head(True), "choices": [], "usage": usage_json(usage)}

    def whole(
        self,
        text: str,
        done: Done,
        scored: Sequence[TokenLogprob] = (),
        *,
        reasoning: str = "",
        calls: Sequence[ToolCall] = (),
    ) -> dict[str, object]:
        """The non-streamed reply (`scored`: its tokens' log-probabilities, when asked; `reasoning`: the thinking;
        `calls`: the tool calls)."""
        choice: dict[str, object] = {"index": 0, "finish_reason": finish_reason(done, bool(calls)), "logprobs": None}
        if self.logprobs:
            choice["logprobs"] = self._logprobs(scored)
        if self.kind == "chat":
            # OpenAI's shape: content is null when the reply is only calls.
            message: dict[str, object] = {"role": "assistant", "content": None if calls and not text.strip() else text}
            if calls:
                message["tool_calls"] = [call_json(call) for call in calls]
            if reasoning:
                message["reasoning_content"] = reasoning
            choice["message"] = message
        else:
            choice["text"] = text
        return {**self._head(False), "choices": [choice], "usage": usage_json(done.usage)}


def _token(token: bytes, logprob: float) -> dict[str, object]:
    return {"token": token.decode("utf-8", "replace"), "logprob": logprob, "bytes": list(token)}


def chat_logprobs(scored: Sequence[TokenLogprob]) -> dict[str, object]:
    """A chat choice's `logprobs`: per token its text, log-probability, bytes and likeliest alternatives."""
    content = [{**_token(t.token, t.logprob), "top_logprobs": [_token(b, p) for b, p in t.top]} for t in scored]
    return {"content": content}


def text_logprobs(scored: Sequence[TokenLogprob], offset: int) -> dict[str, object]:
    """A text completion's `logprobs` (the legacy shape: parallel lists); `offset`: characters before them."""
    tokens = [t.token.decode("utf-8", "replace") for t in scored]
    offsets = []
    for token in tokens:
        offsets.append(offset)
        offset += len(token)
    return {
        "tokens": tokens,
        "token_logprobs": [t.logprob for t in scored],
        "top_logprobs": [{b.decode("utf-8", "replace"): p for b, p in t.top} for t in scored],
        "text_offset": offsets,
    }


def embeddings_json(model: str, vectors: list[list[float]], encoding: str, prompt_tokens: int = 0) -> dict[str, object]:
    """The embeddings reply; "base64" packs each vector as little-endian float32, as the OpenAI SDK asks by default.

    `prompt_tokens`: the tokens the engine read for all the texts."""
    data = []
    for i, vector in enumerate(vectors):
        value: object = vector
        if encoding == "base64":
            value = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": i, "embedding": value})
    usage = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
    return {"object": "list", "data": data, "model": model, "usage": usage}
