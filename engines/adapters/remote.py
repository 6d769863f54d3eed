"""OpenAI-compatible servers (vLLM, SGLang, TGI, llama-server, `llm-tui serve`) driven over HTTP.

The model runs elsewhere: this adapter only checks the server lists it, streams `/chat/completions` as
server-sent events and asks `/embeddings`. The API key travels only in the Authorization header to the
endpoint itself (redirects are never followed) and is masked out of every message this module writes.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import socket
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from engines.adapters.base import Engine
from engines.adapters.token_estimate import estimate_prompt_tokens
from engines.errors import BadRequest, InstanceNotReady, LlmTuiError, ModelNotFound, RemoteEndpointError
from engines.images import image_mime
from engines.secret import MASK, Secret
from engines.stop_text import StopText
from engines.types import (
    Capability,
    ChatMessage,
    Delta,
    Done,
    Error,
    FinishReason,
    Footprint,
    LaunchOptions,
    ModelSpec,
    Params,
    StreamEvent,
    Usage,
    schema_of,
)

if TYPE_CHECKING:
    import httpx

_MAX_ERROR_BODY = 64 * 1024  # bytes of an error reply read for its message
_CANCEL_POLL_S = 0.05


class _Link:
    """One endpoint's HTTP client and the rules for talking to it: connect retries, error texts, key masking."""

    def __init__(
        self, endpoint: str, api_key: Secret | None, connect_s: float, read_s: float, retries: int, backoff_s: float
    ) -> None:
        import httpx  # here, not at import: httpx pulls in its CLI's rich when click is installed

        self.endpoint = endpoint.rstrip("/")
        self.shown = re.sub(r"(?<=://)[^/@]*@", "", self.endpoint)  # no user:password@ in messages
        self.key = api_key
        self.connect_s, self.read_s, self.retries, self.backoff_s = connect_s, read_s, retries, backoff_s
        headers = {"Authorization": f"Bearer {api_key.reveal()}"} if api_key is not None else {}
        self.client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(connect=connect_s, read=read_s, write=read_s, pool=connect_s),
            follow_redirects=False,  # the key must never follow a redirect to another origin
        )

    def clean(self, text: str) -> str:
        """One line, at most 300 characters, with the key masked."""
        secret = self.key.reveal() if self.key is not None else ""
        if secret:
            text = text.replace(secret, MASK)
        text = " ".join(text.split())
        return text if len(text) <= 300 else text[:299] + "…"

    def send(self, method: str, path: str, body: Any = None, cancel: threading.Event | None = None) -> httpx.Response:
        """Send a request and return its streaming response (status 2xx); raise LlmTuiError otherwise.

        Only connect errors are retried: then nothing reached the server. Once a request is sent it is never
        repeated, since the server may already be generating. A `cancel` set during a backoff stops the retries.
        """
        import httpx

        request = self.client.build_request(
            method, self.endpoint + path, json=body, headers={"Accept": "text/event-stream, application/json"}
        )
        pause = cancel if cancel is not None else threading.Event()
        for attempt in range(self.retries + 1):
            try:
                resp = self.client.send(request, stream=True)
                break
            except httpx.ConnectError as exc:  # nothing reached the server: safe to try again
                if attempt == self.retries or pause.wait(self.backoff_s * 2**attempt):
                    raise RemoteEndpointError(self.clean(f"cannot reach {self.shown}: {_reason(exc)}")) from None
            except httpx.ConnectTimeout:
                raise RemoteEndpointError(f"cannot reach {self.shown}: no connection in {self.connect_s:g} s") from None
            except httpx.TimeoutException:
                raise RemoteEndpointError(f"{self.shown} did not answer {path} within {self.read_s:g} s") from None
            except httpx.HTTPError as exc:
                raise RemoteEndpointError(self.clean(f"request to {self.shown} failed: {_reason(exc)}")) from None
        if resp.is_success:
            return resp
        try:
            raise self.failure(resp)
        finally:
            resp.close()

    def failure(self, resp: httpx.Response) -> LlmTuiError:
        """The error an HTTP error answer stands for, with the server's own message where it is safe to show."""
        import httpx

        status, where = resp.status_code, self.shown
        if resp.is_redirect:
            target = re.sub(r"(?<=://)[^/@]*@", "", resp.headers.get("location", "?"))
            return RemoteEndpointError(self.clean(f"{where} redirects to {target}; not followed (give the final URL)"))
        if status in (401, 403):  # the server's text may quote the key: leave it out
            if self.key is None:
                return RemoteEndpointError(f"{where} wants an API key (HTTP {status}) and none is set")
            return RemoteEndpointError(f"{where} refused the API key (HTTP {status})")
        body = b""
        with contextlib.suppress(httpx.HTTPError):
            for chunk in resp.iter_bytes():
                body += chunk
                if len(body) >= _MAX_ERROR_BODY:
                    break
        message = _error_text(_json_or_none(body)) or body.decode("utf-8", "replace").strip() or resp.reason_phrase
        if status in (400, 422):
            return BadRequest(self.clean(f"{where} rejected the request: {message}"))
        if status == 404:
            return ModelNotFound(self.clean(f"{where}: not found (HTTP 404): {message}"))
        return RemoteEndpointError(self.clean(f"{where} answered HTTP {status}: {message}"))

    def fetch_json(self, method: str, path: str, body: Any = None) -> Any:
        """A whole JSON answer (None when it is not JSON)."""
        import httpx

        resp = self.send(method, path, body)
        try:
            return _json_or_none(resp.read())
        except httpx.HTTPError as exc:
            raise RemoteEndpointError(self.clean(f"{self.shown} dropped its answer: {_reason(exc)}")) from None
        finally:
            resp.close()

    def models(self) -> list[str]:
        """The model ids `GET /models` lists."""
        try:
            doc = self.fetch_json("GET", "/models")
        except ModelNotFound:  # no such route: not the API root
            raise RemoteEndpointError(f"{self.shown}/models not found (HTTP 404); is this the API root?") from None
        data = doc.get("data") if isinstance(doc, dict) else None
        if not isinstance(data, list):
            raise RemoteEndpointError(f"{self.shown}/models is not an OpenAI-compatible model list")
        return [m["id"] for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]


def list_models(endpoint: str, api_key: Secret | None = None, *, timeout_s: float = 10.0) -> list[str]:
    """The model ids an OpenAI-compatible endpoint (its base URL, ending in /v1) serves; RemoteEndpointError else."""
    link = _Link(endpoint, api_key, timeout_s, timeout_s, 2, 0.2)
    try:
        return link.models()
    finally:
        link.client.close()


class RemoteEngine(Engine):
    """A model served by an OpenAI-compatible server; the server decides what it can do and says so in errors.

    `connect_timeout_s` / `read_timeout_s` bound connecting and each wait for data (a long prefill is silent);
    connect errors are retried `connect_retries` times after `retry_backoff_s`, doubling.
    """

    name: ClassVar[str] = "remote"
    capabilities: ClassVar[Capability] = (
        Capability.CHAT
        | Capability.STREAM
        | Capability.EMBED
        | Capability.VISION
        | Capability.JSON_SCHEMA
        | Capability.COMPLETION
    )
    formats: ClassVar[tuple[str, ...]] = ("remote",)

    def __init__(
        self,
        *,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 300.0,
        connect_retries: int = 2,
        retry_backoff_s: float = 0.25,
    ) -> None:
        self.connect_timeout_s, self.read_timeout_s = connect_timeout_s, read_timeout_s
        self.connect_retries, self.retry_backoff_s = connect_retries, retry_backoff_s
        self.spec: ModelSpec | None = None
        self._link: _Link | None = None

    def __repr__(self) -> str:
        return f"RemoteEngine(endpoint={self._link.shown if self._link else None!r})"

    def load(self, spec: ModelSpec, options: LaunchOptions) -> None:
        """Check the server answers and lists `spec.served_name`; ModelNotFound names what it lists instead."""
        self.unload()
        if not spec.endpoint or not spec.served_name:
            raise ModelNotFound(f"{spec.id}: a remote model needs an endpoint and the model's name on it")
        timeouts = (self.connect_timeout_s, self.read_timeout_s)
        link = _Link(spec.endpoint, spec.api_key, *timeouts, self.connect_retries, self.retry_backoff_s)
        try:
            served = link.models()
            if spec.served_name not in served:
                listed = ", ".join(served[:5]) + (f" and {len(served) - 5} more" if len(served) > 5 else "")
                raise ModelNotFound(
                    link.clean(f"{link.shown} does not serve {spec.served_name!r}; it serves: {listed or 'nothing'}")
                )
        except BaseException:
            link.client.close()
            raise
        self._link, self.spec = link, spec

    def unload(self) -> None:
        """Close the connection pool; safe to call twice."""
        if self._link is not None:
            self._link.client.close()
        self._link = self.spec = None

    def footprint(self) -> Footprint:
        """Nothing here: the model's memory is on the server, which does not say."""
        return Footprint()

    def chat(
        self,
        messages: Sequence[ChatMessage],
        params: Params,
        cancel: threading.Event,
        session: str | None = None,
    ) -> Iterator[StreamEvent]:
        """Stream `/chat/completions`; HTTP errors before the stream raise, failures during it end in Error."""
        link, spec = self._require()
        body = self._body(spec, params) | {"messages": [_message(m) for m in messages]}
        yield from self._stream(link, "/chat/completions", body, (*params.stop, *spec.stop), cancel)

    def complete(self, prompt: str, params: Params, cancel: threading.Event) -> Iterator[StreamEvent]:
        """Stream `/completions`: the server continues `prompt` as it is, with no chat template."""
        link, spec = self._require()
        body = self._body(spec, params) | {"prompt": prompt}
        yield from self._stream(link, "/completions", body, (*params.stop, *spec.stop), cancel)

    def _body(self, spec: ModelSpec, params: Params) -> dict[str, Any]:
        """The request fields both endpoints share: model, streaming with usage, sampling, stop, response format."""
        params.validate()
        body: dict[str, Any] = {
            "model": spec.served_name,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        # top_k and repetition_penalty are vLLM/SGLang extras, sent only when set (top_k 0 = off, as on vLLM >= 0.8
        # and llama-server; -1 would be refused by llama-cpp-python's server, 0 by older vLLM).
        for key in ("temperature", "top_p", "max_tokens", "seed", "top_k", "repetition_penalty"):
            if (value := getattr(params, key)) is not None:
                body[key] = value
        if stops := (*params.stop, *spec.stop):
            body["stop"] = list(stops)
        if (schema := schema_of(params)) is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "reply", "schema": schema, "strict": True},
            }
        return body

    def _stream(
        self, link: _Link, path: str, body: dict[str, Any], stops: Sequence[str], cancel: threading.Event
    ) -> Iterator[StreamEvent]:
        if cancel.is_set():
            yield Done(Usage(), "cancelled")
            return
        resp = link.send("POST", path, body, cancel)
        lock, finished = threading.Lock(), [False]
        threading.Thread(target=_hang_up_on_cancel, args=(resp, cancel, lock, finished), daemon=True).start()
        try:
            yield from self._events(link, resp, stops, cancel, estimate_prompt_tokens(body))
        finally:
            with lock:  # from here on the watcher must not touch a socket the pool may hand to the next request
                finished[0] = True
            resp.close()  # unread rest: httpx drops the connection, so the server stops generating

    def _events(
        self, link: _Link, resp: httpx.Response, stops: Sequence[str], cancel: threading.Event, prompt_guess: int
    ) -> Iterator[StreamEvent]:
        """Turn the server-sent events of `resp` into Delta, then Done or Error."""
        import httpx

        cut, deltas, usage = StopText(stops), 0, None

        def counted() -> Usage:
            # Without the server's usage chunk (it comes last, so a stopped reply never gets it) the prompt's
            # size is estimated and the completion is the number of content deltas (one token each on vLLM,
            # SGLang and llama-server, an approximation elsewhere); both are marked as estimates.
            return usage or Usage(prompt_guess, deltas, estimated=True)

        finish: FinishReason | None = None
        try:
            for event, data in _sse(resp.iter_lines()):
                if cancel.is_set() or data == "[DONE]":
                    finish = finish or "stop"
                    break
                doc = _json_or_none(data.encode())
                if event == "error" or not isinstance(doc, dict) or doc.get("error") or doc.get("object") == "error":
                    if held := cut.flush():
                        yield Delta(held)
                    yield Error(link.clean(f"{link.shown} failed mid-reply: {_error_text(doc) or data}"), "remote")
                    return
                if isinstance(u := doc.get("usage"), dict):
                    usage = Usage(int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0))
                for choice in doc.get("choices") or []:
                    if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                        continue
                    text = (choice.get("delta") or {}).get("content") if "delta" in choice else choice.get("text")
                    if isinstance(text, str) and text:
                        deltas += 1
                        if emit := cut.feed(text):
                            yield Delta(emit)
                        if cut.stopped:  # servers differ in honouring `stop`; cut here and hang up on the rest
                            yield Done(counted(), "stop")
                            return
                    if choice.get("finish_reason"):
                        finish = "length" if choice["finish_reason"] == "length" else "stop"
        except httpx.ReadTimeout:
            if not cancel.is_set():
                yield Error(f"{link.shown} sent nothing for {link.read_s:g} s; gave up on the reply", "remote")
                return
        except httpx.HTTPError as exc:  # dropped, reset, or hung up by the cancel watcher
            if not cancel.is_set():
                yield Error(link.clean(f"connection to {link.shown} lost mid-reply: {_reason(exc)}"), "remote")
                return
        if cancel.is_set():
            yield Done(counted(), "cancelled")
        elif finish is None:
            yield Error(f"{link.shown} ended the stream before the reply was complete", "remote")
        else:
            if held := cut.flush():
                yield Delta(held)
            yield Done(counted(), finish)

    def embed(self, texts: Sequence[str], cancel: threading.Event | None = None) -> list[list[float]]:
        """POST /embeddings; the vectors come back in the order of `texts` (one call: `cancel` cannot cut it)."""
        link, spec = self._require()
        if not texts:
            return []
        doc = link.fetch_json("POST", "/embeddings", {"model": spec.served_name, "input": list(texts)})
        items = doc.get("data") if isinstance(doc, dict) else None
        if not isinstance(items, list) or len(items) != len(texts):
            raise RemoteEndpointError(
                f"{link.shown} sent {len(items) if isinstance(items, list) else 'no'} embeddings for {len(texts)} texts"
            )
        usage = doc.get("usage") if isinstance(doc, dict) else None
        tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
        self.last_embed_tokens = tokens if isinstance(tokens, int) and tokens > 0 else None
        try:
            ordered = sorted(items, key=lambda item: int(item.get("index", 0)))
            return [[float(x) for x in item["embedding"]] for item in ordered]
        except (AttributeError, KeyError, TypeError, ValueError):
            raise RemoteEndpointError(f"{link.shown} sent malformed embeddings") from None

    def _require(self) -> tuple[_Link, ModelSpec]:
        if self._link is None or self.spec is None:
            raise InstanceNotReady("remote engine: no model loaded")
        return self._link, self.spec


def _message(message: ChatMessage) -> dict[str, Any]:
    """An OpenAI chat message; attached images become data-URL content parts after the text."""
    if not message.images:
        return {"role": message.role, "content": message.content}
    parts: list[dict[str, Any]] = [{"type": "text", "text": message.content}] if message.content else []
    for i, image in enumerate(message.images, 1):
        mime = image_mime(image)
        if mime is None:
            raise BadRequest(f"image {i} of a {message.role} message is not a PNG, JPEG, GIF or WebP image")
        url = f"data:{mime};base64,{base64.b64encode(image).decode('ascii')}"
        parts.append({"type": "image_url", "image_url": {"url": url}})
    return {"role": message.role, "content": parts}


def _sse(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    """Server-sent events as (event name, data): data lines joined, each event ended by a blank line;
    comment lines (`: keep-alive`) and other fields are skipped."""
    event = ""
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "", []
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)


def _hang_up_on_cancel(resp: httpx.Response, cancel: threading.Event, lock: threading.Lock, done: list[bool]) -> None:
    """Shut the response's socket down once `cancel` is set, so Stop works while the server is silent too."""
    while not done[0]:
        if cancel.wait(_CANCEL_POLL_S):
            with lock:
                if done[0]:
                    return
                stream = resp.extensions.get("network_stream")
                sock = stream.get_extra_info("socket") if stream is not None else None
                if isinstance(sock, socket.socket):
                    with contextlib.suppress(OSError):  # plain socket's shutdown, also under TLS
                        socket.socket.shutdown(sock, socket.SHUT_RDWR)
            return


def _error_text(doc: Any) -> str:
    """The message of an OpenAI (`{"error": {"message"}}`), vLLM (`{"message"}`), TGI (`{"error": "..."}`) or
    FastAPI (`{"detail"}`) error document; "" when there is none."""
    if not isinstance(doc, dict):
        return ""
    err = doc.get("error")
    if isinstance(err, dict):
        return str(err.get("message") or err)
    for value in (err, doc.get("message"), doc.get("detail")):
        if value:
            return value if isinstance(value, str) else json.dumps(value)
    return ""


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
