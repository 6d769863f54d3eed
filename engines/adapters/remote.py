"""OpenAI-compatible servers (vLLM, SGLang, TGI, llama-server, `llm-tui serve`) driven over HTTP.

The model runs elsewhere: this adapter only checks the server lists it, streams `/chat/completions` as
server-sent events (text, thinking and tool calls: remote_stream) and asks `/embeddings`. The request's shapes
are in remote_tools, the HTTP client and its rules (the API key only ever in the Authorization header to the
endpoint itself, masked out of every message) in remote_link.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from engines.adapters.base import Engine
from engines.adapters.remote_link import Link
from engines.adapters.remote_score import score_choices
from engines.adapters.remote_stream import read_events
from engines.adapters.remote_tools import chat_message, tool_fields
from engines.adapters.token_estimate import estimate_prompt_tokens
from engines.errors import InstanceNotReady, ModelNotFound, RemoteEndpointError
from engines.secret import Secret
from engines.types import (
    Capability,
    ChatMessage,
    Done,
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

_CANCEL_POLL_S = 0.05


def list_models(endpoint: str, api_key: Secret | None = None, *, timeout_s: float = 10.0) -> list[str]:
    """The model ids an OpenAI-compatible endpoint (its base URL, ending in /v1) serves; RemoteEndpointError else."""
    link = Link(endpoint, api_key, timeout_s, timeout_s, 2, 0.2)
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
        | Capability.TOOLS
        | Capability.SCORE
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
        self._link: Link | None = None

    def __repr__(self) -> str:
        return f"RemoteEngine(endpoint={self._link.shown if self._link else None!r})"

    def load(self, spec: ModelSpec, options: LaunchOptions) -> None:
        """Check the server answers and lists `spec.served_name`; ModelNotFound names what it lists instead."""
        self.unload()
        if not spec.endpoint or not spec.served_name:
            raise ModelNotFound(f"{spec.id}: a remote model needs an endpoint and the model's name on it")
        timeouts = (self.connect_timeout_s, self.read_timeout_s)
        link = Link(spec.endpoint, spec.api_key, *timeouts, self.connect_retries, self.retry_backoff_s)
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
        """Stream `/chat/completions` (text, thinking and tool calls); HTTP errors before the stream raise, failures
        during it end in Error."""
        link, spec = self._require()
        body = self._body(spec, params) | tool_fields(params) | {"messages": [chat_message(m) for m in messages]}
        yield from self._stream(link, "/chat/completions", body, (*params.stop, *spec.stop), cancel)

    def complete(self, prompt: str, params: Params, cancel: threading.Event) -> Iterator[StreamEvent]:
        """Stream `/completions`: the server continues `prompt` as it is, with no chat template."""
        link, spec = self._require()
        body = self._body(spec, params) | {"prompt": prompt}
        yield from self._stream(link, "/completions", body, (*params.stop, *spec.stop), cancel)

    def score_choices(self, prompt: str, choices: Sequence[str], cancel: threading.Event) -> list[float]:
        """Each choice's log-probability from `/completions` top log-probabilities (remote_score); raises
        CapabilityNotSupported when the server sends none."""
        link, spec = self._require()
        assert spec.served_name is not None
        return score_choices(link, spec.served_name, prompt, choices, cancel)

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
        self, link: Link, path: str, body: dict[str, Any], stops: Sequence[str], cancel: threading.Event
    ) -> Iterator[StreamEvent]:
        if cancel.is_set():
            yield Done(Usage(), "cancelled")
            return
        resp = link.send("POST", path, body, cancel)
        lock, finished = threading.Lock(), [False]
        threading.Thread(target=_hang_up_on_cancel, args=(resp, cancel, lock, finished), daemon=True).start()
        try:
            yield from read_events(link, resp, stops, cancel, estimate_prompt_tokens(body))
        finally:
            with lock:  # from here on the watcher must not touch a socket the pool may hand to the next request
                finished[0] = True
            resp.close()  # unread rest: httpx drops the connection, so the server stops generating

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

    def _require(self) -> tuple[Link, ModelSpec]:
        if self._link is None or self.spec is None:
            raise InstanceNotReady("remote engine: no model loaded")
        return self._link, self.spec


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
