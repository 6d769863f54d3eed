"""A fake OpenAI-compatible server (what vLLM, SGLang and llama-server speak) on 127.0.0.1, misbehaving on demand.

Routes: `GET /v1/models`, `POST /v1/chat/completions` (streamed as server-sent `chat.completion.chunk`s, with a
usage chunk when `stream_options.include_usage` is set, then `data: [DONE]`; or one `chat.completion`), and
`POST /v1/embeddings` (listed in reverse order, each with its `index`, as a client must not rely on the order).

Each chat request takes the next `Reply` from `replies` (then `default` applies): scripted `pieces` or, when
None, an echo of the last user message word by word, each piece one token (after a tool result: "The tool said:
<result>"); or raw `deltas`, each a chunk's
`delta` as is (tool-call pieces, reasoning_content); `max_tokens` is honoured (finish "length"), `stop` is not
(servers differ; the client must cut). Faults: an HTTP error status with an OpenAI-shaped error body, an error
event mid-stream (`{"error": ...}` in a data line or an `event: error`), a dropped connection, per-piece delays,
a hold until `release()` or the client hangs up (which sets `disconnected`), keep-alive comments, data lines
split across TCP writes. A non-streamed `/v1/completions` answer carries the reply's `logprobs` as given (scoring
tests); `raw_body` answers 200 with exact bytes (malformed or oversized answers). Every request is recorded.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Literal

from tests.engines.fake_stream_server import HungUp, StreamHandler, StreamServer


@dataclass(frozen=True)
class Reply:
    """How one chat request is answered; the default is a correct, echoed reply."""

    pieces: tuple[str, ...] | None = None  # the reply's tokens; None: echo the last user message word by word
    finish_reason: str = "stop"  # when every piece was sent (max_tokens cut short gives "length")
    status: int | None = None  # answer with this HTTP status and an OpenAI error body instead
    message: str = "something went wrong"  # the error's message (for `status` and `error_after`)
    error_after: int | None = None  # after this many pieces send an error event and end the stream
    error_style: Literal["data", "event"] = "data"  # {"error": {...}} in a data line, or `event: error` first
    drop_after: int | None = None  # after this many pieces close the connection mid-stream
    hold_after: int | None = None  # after this many pieces wait for release() or the client to hang up
    delay_s: float = 0.0  # before each piece
    keepalive: bool = False  # a `: keep-alive` comment before each piece
    split: bool = False  # write each data line in two TCP writes, cut inside the JSON
    usage: bool = True  # send the usage chunk when the client asks for it
    deltas: tuple[dict[str, Any], ...] | None = None  # raw `delta`s streamed in place of pieces (tool_calls, reasoning)
    usage_details: dict[str, Any] | None = None  # the usage chunk's `completion_tokens_details`
    logprobs: Any = None  # a non-streamed /v1/completions answer's `choices[0].logprobs`, as is
    raw_body: bytes | None = None  # answer 200 with exactly these bytes (malformed or oversized answers)


@dataclass(frozen=True)
class Recorded:
    """One request as the server saw it (header names in lower case; body None unless JSON)."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


def echo_pieces(text: str) -> tuple[str, ...]:
    """`text` as the fake streams it: "Echo:" and each word with its leading blank."""
    words = ["Echo:", *text.split()]
    return tuple(w if i == 0 else " " + w for i, w in enumerate(words))


def prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """The fake's prompt size: words of the text plus 4 per message."""
    total = 0
    for m in messages:
        content = m.get("content")
        text = content if isinstance(content, str) else " ".join(p.get("text", "") for p in content or [])
        total += len(text.split()) + 4
    return total


def fake_vector(text: str) -> list[float]:
    """The fake's embedding of `text`."""
    return [float(len(text)), float(sum(text.encode()) % 1000), 1.0]


class FakeOpenAI(StreamServer):
    """The server; use as a context manager. `endpoint` is the base URL (ending in /v1) to give a client."""

    def __init__(
        self,
        models: tuple[str, ...] = ("fake-model",),
        *,
        api_key: str | None = None,
        replies: list[Reply] | None = None,
        default: Reply | None = None,
        models_status: int | None = None,
    ) -> None:
        self.models = models
        self.api_key = api_key  # when set, requests without `Authorization: Bearer <it>` get 401
        self.replies = list(replies or [])
        self.default = default or Reply()
        self.models_status = models_status  # answer GET /v1/models with this error status
        self.requests: list[Recorded] = []
        super().__init__(_Handler)
        self.endpoint = f"http://127.0.0.1:{self.port}/v1"

    def chat_bodies(self) -> list[dict[str, Any]]:
        """The JSON bodies of the chat requests so far."""
        return [r.body for r in self.requests if r.path == "/v1/chat/completions"]


class _Handler(StreamHandler):
    owner: FakeOpenAI

    def do_GET(self) -> None:
        fake = self.owner
        fake.requests.append(Recorded("GET", self.path, self.lower_headers(), None))
        if not self.authorised():
            return
        if self.path != "/v1/models":
            self.error(404, f"no route {self.path}", "NotFoundError")
        elif fake.models_status is not None:
            self.error(fake.models_status, "the model list is unavailable", "InternalServerError")
        else:
            data = [{"id": m, "object": "model", "created": 1700000000, "owned_by": "fake"} for m in fake.models]
            self.send_json(200, {"object": "list", "data": data})

    def do_POST(self) -> None:
        fake = self.owner
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        fake.requests.append(Recorded("POST", self.path, self.lower_headers(), body))
        if not self.authorised():
            return
        if not isinstance(body, dict):
            self.error(400, "the body is not a JSON object", "BadRequestError")
        elif self.path not in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
            self.error(404, f"no route {self.path}", "NotFoundError")
        elif body.get("model") not in fake.models:
            self.error(404, f"The model `{body.get('model')}` does not exist.", "NotFoundError")
        elif self.path == "/v1/embeddings":
            texts = body.get("input")
            texts = [texts] if isinstance(texts, str) else list(texts or [])
            data = [{"object": "embedding", "index": i, "embedding": fake_vector(t)} for i, t in enumerate(texts)]
            self.send_json(200, {"object": "list", "data": data[::-1], "model": body["model"]})
        else:
            self.chat(body, fake.replies.pop(0) if fake.replies else fake.default)

    def chat(self, body: dict[str, Any], reply: Reply) -> None:
        if reply.status is not None:
            self.error(reply.status, reply.message, "BadRequestError" if reply.status < 500 else "InternalServerError")
            return
        if reply.raw_body is not None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply.raw_body)))
            self.end_headers()
            self.wfile.write(reply.raw_body)
            return
        completion = self.path == "/v1/completions"  # a raw prompt: `choices[].text` instead of `delta.content`
        messages = body.get("messages") or [{"role": "user", "content": str(body.get("prompt") or "")}]
        last_user = next((m.get("content") for m in reversed(messages) if m.get("role") == "user"), "")
        if not isinstance(last_user, str):
            last_user = " ".join(p.get("text", "") for p in last_user if p.get("type") == "text")
        pieces: tuple[Any, ...] = reply.pieces if reply.pieces is not None else echo_pieces(last_user)
        if reply.pieces is None and messages[-1].get("role") == "tool":  # a model reading its tool's result
            pieces = tuple(
                f" {w}" if i else w for i, w in enumerate(f"The tool said: {messages[-1]['content']}".split())
            )
        if reply.deltas is not None:
            pieces = reply.deltas
        finish = reply.finish_reason
        limit = body.get("max_tokens")
        if isinstance(limit, int) and limit < len(pieces):
            pieces, finish = pieces[:limit], "length"
        base = {"id": "chatcmpl-fake", "created": 1700000000, "model": body["model"], "system_fingerprint": None}
        usage = {"prompt_tokens": prompt_tokens(messages), "completion_tokens": len(pieces)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if reply.usage_details is not None:
            usage["completion_tokens_details"] = reply.usage_details
        if not body.get("stream") and completion:
            text = "".join(p for p in pieces if isinstance(p, str))
            choice = {"index": 0, "text": text, "logprobs": reply.logprobs, "finish_reason": finish}
            self.send_json(200, base | {"object": "text_completion", "choices": [choice], "usage": usage})
            return
        if not body.get("stream"):
            message = {"role": "assistant", "content": "".join(p for p in pieces if isinstance(p, str))}
            choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
            self.send_json(200, base | {"object": "chat.completion", "choices": [choice], "usage": usage})
            return
        with_usage = bool((body.get("stream_options") or {}).get("include_usage")) and reply.usage
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            if completion:
                choice = {
                    "index": 0,
                    "text": delta.get("content", ""),
                    "logprobs": None,
                    "finish_reason": finish_reason,
                }
            extra = {"usage": None} if with_usage else {}
            kind = "text_completion" if completion else "chat.completion.chunk"
            return base | {"object": kind, "choices": [choice]} | extra

        try:
            self.send_event(chunk({"role": "assistant", "content": ""}), reply)
            for n, piece in enumerate(pieces):
                if self.fault_at(n, reply):
                    return
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                if reply.keepalive:
                    self.write(b": keep-alive\n\n")
                self.send_event(chunk(piece if isinstance(piece, dict) else {"content": piece}), reply)
            if self.fault_at(len(pieces), reply):
                return
            self.send_event(chunk({}, finish), reply)
            if with_usage:
                self.send_event(base | {"object": "chat.completion.chunk", "choices": [], "usage": usage}, reply)
            self.write(b"data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
        except HungUp:
            self.owner.disconnected.set()
            self.close_connection = True

    def fault_at(self, n: int, reply: Reply) -> bool:
        """Apply the reply's fault due after `n` pieces; True when the stream has ended."""
        if reply.hold_after == n:
            self.hold()
        if reply.error_after == n:
            error = {"error": {"message": reply.message, "type": "InternalServerError", "param": None, "code": 500}}
            if reply.error_style == "event":
                self.write(b"event: error\n")
            self.send_event(error, reply)
            self.write(b"data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
            return True
        if reply.drop_after == n:
            self.close_connection = True  # no closing chunk: the client sees the body cut short
            return True
        return False

    def send_event(self, obj: dict[str, Any], reply: Reply) -> None:
        line = b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"
        if reply.split:
            cut = len(line) // 2
            self.write(line[:cut])
            time.sleep(0.002)  # let the first half leave as its own TCP segment
            self.write(line[cut:])
        else:
            self.write(line)

    def write(self, data: bytes) -> None:
        """One HTTP chunk, flushed at once."""
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        except OSError:
            raise HungUp from None

    def authorised(self) -> bool:
        key = self.owner.api_key
        given = self.headers.get("Authorization", "")
        if key is None or given == f"Bearer {key}":
            return True
        # Like careless servers, quote what was sent: the client must not pass this text on.
        self.error(401, f"Incorrect API key provided: {given.removeprefix('Bearer ')}", "invalid_request_error")
        return False

    def error(self, status: int, message: str, kind: str) -> None:
        body = {"error": {"message": message, "type": kind, "param": None, "code": status}}
        self.send_json(status, body)

    def send_json(self, status: int, doc: dict[str, Any]) -> None:
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def lower_headers(self) -> dict[str, str]:
        return {k.lower(): v for k, v in self.headers.items()}
