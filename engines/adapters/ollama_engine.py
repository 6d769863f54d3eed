"""Models run by a local Ollama daemon, driven through the `ollama` client: chat, embeddings, unload, memory.

The daemon keeps and loads the model; this adapter checks it has the model (`show`), warms it with the launch's
context size so the memory it takes shows in `ps`, streams `/api/chat` (text, thinking and tool calls: see
ollama_tools) and asks the daemon to unload (`keep_alive` 0) when the instance stops. Stop works while the daemon
is silent (loading the model, a long prompt): a watcher thread shuts the chat's socket down, as the Ollama pull
does. Failures during a reply end in an Error event, never a raw exception. `ollama` (and `httpx`, whose import
pulls in `rich` when that is installed) is imported inside the functions that need it.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import ssl
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from engines.adapters.base import Engine
from engines.adapters.ollama_tools import ReplyParts, ollama_message, tool_request
from engines.adapters.token_estimate import estimate_prompt_tokens
from engines.downloads.ollama_source import hang_up_on_cancel, normalise_name
from engines.errors import (
    BadRequest,
    EngineUnavailable,
    InstanceNotReady,
    LlmTuiError,
    ModelNotFound,
    RemoteEndpointError,
)
from engines.types import (
    Capability,
    ChatMessage,
    Done,
    Error,
    FinishReason,
    Footprint,
    LaunchOptions,
    ModelSpec,
    Params,
    StreamEvent,
    Usage,
)

if TYPE_CHECKING:
    import httpx
    import ollama

_QUICK = (30.0, 5.0)  # read, connect (s) for show, ps, unload: the daemon answers these at once
_SLOW = (None, 10.0)  # for warm, chat, embed: loading a model or a long prompt is silent for long
_INSTALL = "pip install 'llm-tui[ollama]'"


@dataclass(frozen=True, slots=True)
class RunningModel:
    """A model the daemon holds in memory (`ollama ps`)."""

    name: str
    size_bytes: int
    """Memory it takes, RAM and VRAM together."""
    vram_bytes: int
    expires_at: datetime | None
    """When the daemon unloads it unless it is used again."""


def running_models(host: str) -> list[RunningModel]:
    """The models the Ollama daemon at `host` has loaded; RemoteEndpointError when it cannot say."""
    with _client(host, _QUICK) as client:
        try:
            models = client.ps().models
        except _failures() as exc:
            raise _failure(exc, host, None) from None
    return [
        RunningModel(m.model or m.name or "?", int(m.size or 0), int(m.size_vram or 0), m.expires_at) for m in models
    ]


class OllamaEngine(Engine):
    """A model the Ollama daemon at `spec.endpoint` serves under `spec.served_name`.

    `warm` loads it at `load()` (so the instance is ready when it says so and `footprint` has numbers);
    `keep_alive` is sent with every request (None: the daemon's default, 5 minutes since the last use).
    """

    name: ClassVar[str] = "ollama"
    capabilities: ClassVar[Capability] = (
        Capability.CHAT
        | Capability.STREAM
        | Capability.EMBED
        | Capability.VISION
        | Capability.JSON_SCHEMA
        | Capability.TOOLS
    )
    formats: ClassVar[tuple[str, ...]] = ("ollama",)

    def __init__(self, *, warm: bool = True, keep_alive: float | str | None = None) -> None:
        self.warm = warm
        self.keep_alive = keep_alive
        self.spec: ModelSpec | None = None
        self.host = ""
        self.model = ""
        """The daemon's name for it, tag included ("qwen2.5:0.5b", "llama3.2:latest")."""
        self._options: dict[str, Any] = {}
        self._seed: int | None = None

    def load(self, spec: ModelSpec, options: LaunchOptions) -> None:
        """Check the daemon has the model, then (with `warm`) have it load it with the launch's context size."""
        self.unload()
        from engines.config.load import DEFAULT_OLLAMA_HOST

        host, model = spec.endpoint or DEFAULT_OLLAMA_HOST, normalise_name(spec.served_name or spec.id)
        load_options: dict[str, Any] = {"num_ctx": options.n_ctx}
        if options.n_threads:
            load_options["num_thread"] = options.n_threads
        with _client(host, _SLOW) as client:
            try:
                client.show(model)
                if self.warm:  # an empty request only loads it; the same options keep chat from reloading it
                    client.generate(model, keep_alive=self.keep_alive, options=load_options)
            except _failures() as exc:
                raise _failure(exc, host, model) from None
        self.spec, self.host, self.model, self._options, self._seed = spec, host, model, load_options, options.seed

    def unload(self) -> None:
        """Ask the daemon to free the model now (errors ignored: a daemon that is gone holds nothing); safe twice."""
        if self.spec is None:
            return
        self.spec = None
        with contextlib.suppress(Exception), _client(self.host, _QUICK) as client:
            client.generate(self.model, keep_alive=0)

    def footprint(self) -> Footprint:
        """The memory `ollama ps` says the model takes, split into RAM and VRAM; unknown when it is not loaded."""
        entry = self._ps_entry()
        if entry is None:
            return Footprint()
        return Footprint(ram_bytes=max(0, entry.size_bytes - entry.vram_bytes), vram_bytes=entry.vram_bytes)

    def vram_in_use(self) -> int | None:
        """The VRAM `ollama ps` says the model takes; None when it is not loaded."""
        entry = self._ps_entry()
        return None if entry is None else entry.vram_bytes

    def _ps_entry(self) -> RunningModel | None:
        if self.spec is None:
            return None
        try:
            return next((m for m in running_models(self.host) if m.name == self.model), None)
        except LlmTuiError:
            return None

    def chat(
        self,
        messages: Sequence[ChatMessage],
        params: Params,
        cancel: threading.Event,
        session: str | None = None,
    ) -> Iterator[StreamEvent]:
        """Stream `/api/chat`: Delta per piece, then Done with the daemon's counts, or Error with its words."""
        spec = self._require()
        params.validate()
        stops = (*params.stop, *spec.stop)
        options = dict(self._options)
        seed = params.seed if params.seed is not None else self._seed
        sampling = {
            "temperature": params.temperature,
            "top_p": params.top_p,
            "top_k": params.top_k,
            "repeat_penalty": params.repetition_penalty,
            "num_predict": params.max_tokens,
            "seed": seed,
        }
        options.update({k: v for k, v in sampling.items() if v is not None})
        if stops:
            options["stop"] = list(stops)
        body = [ollama_message(m) for m in messages]
        tools = tool_request(params)
        if cancel.is_set():
            yield Done(Usage(), "cancelled")
            return
        sockets: list[socket.socket] = []
        finished = threading.Event()
        hooks = {"request": [functools.partial(_trace_connect, cancel=cancel, sockets=sockets)]}
        with _client(self.host, _SLOW, event_hooks=hooks) as client:
            stream = client.chat(
                self.model,
                body,
                tools=tools.tools,
                stream=True,
                format=tools.format,
                options=options,
                keep_alive=self.keep_alive,
            )
            threading.Thread(
                target=hang_up_on_cancel, args=(cancel, finished, sockets), daemon=True, name="ollama-chat"
            ).start()
            try:
                reply = ReplyParts(stops, forced=tools.forced)
                yield from self._events(stream, reply, cancel, estimate_prompt_tokens({"messages": body}))
            finally:
                finished.set()
                stream.close()  # an unfinished reply: the connection is dropped, so the daemon stops generating

    def _events(
        self, stream: Iterator[ollama.ChatResponse], reply: ReplyParts, cancel: threading.Event, prompt_guess: int
    ) -> Iterator[StreamEvent]:
        """Turn the daemon's NDJSON lines into Reasoning, Delta and ToolCallDelta, then Done or Error.

        A reply that ends before the daemon's last line (cut at a stop sequence, or stopped by the user) never
        gets the daemon's counts: the prompt is then `prompt_guess` and both counts are marked estimated."""
        usage = Usage()
        finish: FinishReason | None = None
        try:
            for part in stream:
                if cancel.is_set():
                    break
                yield from reply.feed(part.message)
                if reply.cut.stopped:  # the daemon honours `stop` too; this cut is for what it let through
                    yield Done(reply.estimate(prompt_guess), "stop")
                    return
                if part.done:
                    usage = reply.usage(part.prompt_eval_count, part.eval_count)
                    finish = "length" if part.done_reason == "length" else "stop"
                    break
        except _failures() as exc:  # the daemon's error line, a dropped connection, or our own hang-up on Stop
            if not cancel.is_set():
                yield from reply.flush()
                yield Error(str(_failure(exc, self.host, self.model, replying=reply.pieces > 0)), "ollama")
                return
        yield from reply.flush()
        if cancel.is_set():
            yield Done(reply.estimate(prompt_guess), "cancelled")
        elif finish is None:
            yield Error(f"Ollama at {self.host} ended the reply before it was complete", "ollama")
        else:
            # Ollama's calls come whole, so a reply that made any is a call even when it then ran out of tokens.
            yield Done(usage, "tool_calls" if reply.calls else finish)

    def embed(self, texts: Sequence[str], cancel: threading.Event | None = None) -> list[list[float]]:
        """`/api/embed`: one vector per text, in order (the daemon normalises them; one call: `cancel` cannot cut
        it)."""
        self._require()
        if not texts:
            return []
        with _client(self.host, _SLOW) as client:
            try:
                vectors = client.embed(self.model, list(texts), options=self._options, keep_alive=self.keep_alive)
            except _failures() as exc:
                raise _failure(exc, self.host, self.model) from None
        if len(vectors.embeddings) != len(texts):
            raise RemoteEndpointError(f"Ollama sent {len(vectors.embeddings)} embeddings for {len(texts)} texts")
        counted = getattr(vectors, "prompt_eval_count", None)
        self.last_embed_tokens = counted if isinstance(counted, int) and counted > 0 else None
        return [[float(x) for x in v] for v in vectors.embeddings]

    def _require(self) -> ModelSpec:
        if self.spec is None:
            raise InstanceNotReady("ollama engine: no model loaded")
        return self.spec


def _import_ollama() -> Any:
    try:
        import ollama
    except ImportError as exc:
        raise EngineUnavailable("ollama", "Python package 'ollama' is not installed", _INSTALL) from exc
    return ollama


def _failures() -> tuple[type[Exception], ...]:
    """What the `ollama` client raises: its ResponseError, builtin ConnectionError (an OSError), raw httpx errors
    when streaming, ValueError for a line that is not JSON or not a reply."""
    import httpx

    return (_import_ollama().ResponseError, httpx.HTTPError, OSError, ValueError)


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """One TLS context for every client: httpx builds a new one (~50 ms, reading the CA bundle) otherwise."""
    import httpx

    return httpx.create_ssl_context()


def _client(host: str, timeout: tuple[float | None, float], **kwargs: Any) -> ollama.Client:
    """A new client for one call: nothing shared between the worker thread and the one asking for `ps`."""
    import httpx

    read_s, connect_s = timeout
    client: ollama.Client = _import_ollama().Client(
        host=host, timeout=httpx.Timeout(read_s, connect=connect_s), verify=_ssl_context(), **kwargs
    )
    return client


def _trace_connect(request: httpx.Request, *, cancel: threading.Event, sockets: list[socket.socket]) -> None:
    """httpx request hook: note the socket as soon as it connects, so Stop can shut it down before any answer."""

    def trace(event: str, info: dict[str, Any]) -> None:
        if event == "connection.connect_tcp.complete":
            sock = info["return_value"].get_extra_info("socket")
            if isinstance(sock, socket.socket):
                sockets.append(sock)
                if cancel.is_set():  # set before the watcher could see this socket
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)

    request.extensions["trace"] = trace


def _failure(exc: Exception, host: str, model: str | None, *, replying: bool = False) -> LlmTuiError:
    """The error to show for what the client raised: one line, the daemon's own words where it gave some."""
    import httpx

    if isinstance(exc, _import_ollama().ResponseError):
        text = " ".join(str(exc.error).split())[:300]
        if exc.status_code == 404 and model is not None:
            return ModelNotFound(
                f"Ollama at {host} has no model {model} ({text}); "
                f"pull it with `llm-tui models pull ollama:{model}` or `ollama pull {model}`"
            )
        return BadRequest(f"ollama: {text}") if exc.status_code == 400 else RemoteEndpointError(f"ollama: {text}")
    if not replying and isinstance(exc, ConnectionError | httpx.ConnectError | httpx.ConnectTimeout):
        return RemoteEndpointError(f"cannot reach Ollama at {host}: is `ollama serve` running?")
    reason = " ".join((str(exc) or type(exc).__name__).split())[:200]
    return RemoteEndpointError(f"the connection to Ollama at {host} broke ({reason})")
