"""The OpenAI-compatible API (FastAPI) over an EngineManager: the routes.

Requests to one instance queue in its FIFO; different instances run in parallel. The hand-over of tokens is in
answer.py: a client that goes away cancels its request (the stream's generator is closed and cancels the handle,
which the engine sees before its next token).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from anyio import to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.routing import Match, Route

from engines.config.load import Config
from engines.config.serve import ServeConfig
from engines.errors import CapabilityNotSupported, EmbedInputTooLong, LlmTuiError
from engines.launch import SnapshotSource
from engines.manager import EngineManager
from engines.requests import RequestHandle
from engines.server import audio, openapi, status_routes
from engines.server.answer import Bridge, answer, note_error
from engines.server.drain import Drain
from engines.server.errors import ApiError, from_exception, model_not_found
from engines.server.guard import Asgi, Guard, Scope, ServerStats
from engines.server.jobs import run_job
from engines.server.presets import explicit_params, preset_model, preset_system, under_preset
from engines.server.prom import PrometheusMetrics
from engines.server.replies import Kind, Shaper, embeddings_json
from engines.server.request_state import note_model, note_usage
from engines.server.root_path import RootPath
from engines.server.router import Router
from engines.server.schemas import (
    ChatRequest,
    CompletionRequest,
    EmbeddingRequest,
    Sampling,
    chat_messages,
    chat_params,
    completion_prompt,
    embedding_inputs,
    sampling_params,
    validation_message,
)
from engines.types import LaunchOptions, StreamEvent


@dataclass
class ServerContext:
    """What the routes work with; the app's serve toggle and `llm-tui serve` each build one."""

    manager: EngineManager
    config: Config
    serve: ServeConfig
    snapshot: SnapshotSource | None = None
    stats: ServerStats = field(default_factory=ServerStats)
    started_at: float = field(default_factory=time.time)
    drain: Drain = field(default_factory=Drain)
    router: Router = field(init=False)
    prometheus: PrometheusMetrics = field(init=False)
    """GET /metrics: this server's own registry, fed by `stats`."""

    def __post_init__(self) -> None:
        self.router = Router(self.manager, self.config, self.serve, snapshot=self.snapshot)
        self.prometheus = PrometheusMetrics(self.manager.instances, self.snapshot, self.stats, self.started_at)


def create_app(ctx: ServerContext) -> Asgi:
    """The ASGI app: the API routes behind the guard (body limit, keys, rate limit, request log)."""
    app = FastAPI(title="llm-tui", docs_url=None, redoc_url=None, openapi_url="/openapi.json")
    _error_handlers(app)
    openapi.install(app, ctx.serve.max_tokens)

    # HEAD too: what load balancers and `curl -I` send.
    @app.api_route(
        "/healthz", methods=["GET", "HEAD"], responses={200: {"model": openapi.Health}, **openapi.errors(keyed=False)}
    )
    async def healthz() -> dict[str, object]:
        return {"status": "ok", "instances": len(ctx.manager.instances())}

    @app.get("/v1/models", responses={200: {"model": openapi.ModelList}, **openapi.errors()})
    async def list_models() -> dict[str, object]:
        entries = await to_thread.run_sync(ctx.router.models)
        return {"object": "list", "data": [e.to_json() for e in entries]}

    @app.get("/v1/models/{name:path}", responses={200: {"model": openapi.ModelCard}, **openapi.errors(404)})
    async def get_model(name: str) -> dict[str, object]:
        entries = await to_thread.run_sync(ctx.router.models)
        entry = next((e for e in entries if e.id == name), None)
        if entry is None:
            raise model_not_found(name)
        return entry.to_json()

    @app.post("/v1/chat/completions", responses={200: _reply_doc(openapi.ChatCompletion), **openapi.GENERATION})
    async def chat_completions(body: ChatRequest, request: Request) -> Any:
        messages = chat_messages(body)
        params = chat_params(body, ctx.serve.max_tokens)
        preset = await to_thread.run_sync(ctx.router.preset_for, body.model)
        target: Target = (body.model, None)
        if preset is not None:
            target = (preset_model(preset), preset.launch)
            messages = preset_system(preset, messages)
            explicit = explicit_params({name: getattr(body, name) for name in body.model_fields_set})
            params = under_preset(preset, params, explicit, ctx.serve.max_tokens)
        return await _reply(
            request,
            ctx,
            body,
            "chat",
            lambda run_id, sink: ctx.manager.submit(run_id, messages, params, sink=sink),
            target,
        )

    @app.post("/v1/completions", responses={200: _reply_doc(openapi.TextCompletion), **openapi.GENERATION})
    async def completions(body: CompletionRequest, request: Request) -> Any:
        prompt = completion_prompt(body)
        params = sampling_params(body, body.max_tokens, "max_tokens", ctx.serve.max_tokens, logprobs=body.logprobs)
        return await _reply(
            request, ctx, body, "text", lambda run_id, sink: ctx.manager.complete(run_id, prompt, params, sink=sink)
        )

    @app.post("/v1/embeddings", responses={200: {"model": openapi.EmbeddingList}, **openapi.GENERATION})
    async def embeddings(body: EmbeddingRequest, request: Request) -> Any:
        texts = embedding_inputs(body)
        note_model(request.scope, body.model)
        if ctx.drain.stopping:
            raise ApiError(503, "the server is shutting down", type="server_error", code="server_shutting_down")
        info = await to_thread.run_sync(ctx.router.instance_for, body.model)
        # Watched like a chat request: a client that hangs up frees the instance (the engine stops mid-decode).
        job = await run_job(ctx, request, lambda notify: ctx.manager.submit_embed(info.run_id, texts, notify=notify))
        if isinstance(job, JSONResponse):
            return job
        if job.error is not None:
            raise _embedding_error(job.error, body) from None
        note_usage(request.scope, job.prompt_tokens)
        return embeddings_json(body.model, job.vectors or [], body.encoding_format, job.prompt_tokens)

    audio.install(app, ctx)  # POST /v1/audio/transcriptions
    status_routes.install(app, ctx)  # /metrics, /v1/llm-tui/...
    guarded = Guard(app, ctx.serve, ctx.stats)
    # Outside the guard: the guard and the routes see paths without the proxy's prefix.
    return RootPath(guarded, ctx.serve.root_path) if ctx.serve.root_path else guarded


def _reply_doc(model: type[BaseModel]) -> dict[str, Any]:
    """A generation's 200: the whole reply as JSON, or (`stream: true`) server-sent events."""
    return {"model": model, "content": {"text/event-stream": {"schema": openapi.SSE_EVENT}}}


def _embedding_error(exc: BaseException, body: EmbeddingRequest) -> ApiError:
    """The answer for what the engine raised: an over-long text is named (OpenAI's code), never cut."""
    if isinstance(exc, EmbedInputTooLong):
        param = "input" if isinstance(body.input, str) else f"input[{exc.index}]"
        return ApiError(400, str(exc), param=param, code="context_length_exceeded")
    if isinstance(exc, LlmTuiError | ApiError):
        return from_exception(exc)
    return ApiError(500, f"{type(exc).__name__}: {exc}", type="server_error", code="engine_error")


Submit = Callable[[str, Callable[[StreamEvent], None]], RequestHandle]
"""Queues the request on an instance (run id) with the given sink; returns its handle."""
Target = tuple[str, LaunchOptions | None]
"""The model to route to, and how to launch it when it must be (a preset's own options; None: the defaults)."""


async def _reply(
    request: Request, ctx: ServerContext, body: Sampling, kind: Kind, submit: Submit, target: Target | None = None
) -> Any:
    """Route to the model's instance (`target`, else the one the body names), submit, and answer: whole, or
    streamed as SSE."""
    note_model(request.scope, body.model)
    if ctx.drain.stopping:
        raise ApiError(503, "the server is shutting down", type="server_error", code="server_shutting_down")
    name, options = target or (body.model, None)
    info = await to_thread.run_sync(ctx.router.instance_for, name, options)
    asked = getattr(body, "logprobs", None)  # chat: a bool; text completions: alternatives per token (0 counts)
    shaper = Shaper(kind, body.model, logprobs=asked is not None and asked is not False)
    bridge = Bridge(asyncio.get_running_loop(), ctx.stats)
    try:
        handle = submit(info.run_id, bridge.put)
    except CapabilityNotSupported as exc:
        if exc.capability != "logprobs":
            raise from_exception(exc) from None
        # Refused by name: a client that asked for logprobs must not get a reply without them.
        raise ApiError(
            400,
            f"logprobs are not available on the {exc.engine} engine: only llama.cpp gives them",
            param="logprobs",
            code="unsupported_parameter",
        ) from None
    except LlmTuiError as exc:
        raise from_exception(exc) from None
    bridge.handle = handle
    ctx.drain.track(bridge)  # a stop ends it after the grace
    try:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        reply = await answer(
            request, handle, bridge, shaper, ctx.drain, stream=body.stream, include_usage=include_usage
        )
    except BaseException:
        ctx.drain.untrack(bridge)
        raise
    if not isinstance(reply, StreamingResponse):  # a stream untracks itself when it ends
        ctx.drain.untrack(bridge)
    return reply


def _allowed(app: FastAPI, scope: Scope) -> list[str]:
    """The methods the routes on this request's path take (several routes may share a path: GET and POST)."""
    methods: set[str] = set()
    for route in app.router.routes:
        if isinstance(route, Route | APIRoute) and route.matches(scope)[0] is Match.PARTIAL:
            methods |= route.methods or set()
    return sorted(methods)


def _error_handlers(app: FastAPI) -> None:
    def answer(error: ApiError) -> JSONResponse:
        return JSONResponse(error.body(), status_code=error.status, headers=dict(error.headers))

    async def api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        note_error(request, exc.message)
        return answer(exc)

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        if first.get("type") == "json_invalid":  # loc is ("body", offset): an offset is no parameter
            why = str(first.get("ctx", {}).get("error", "")).lower() or "it does not parse"
            message = f"the request body is not valid JSON: {why} at character {first.get('loc', (0, 0))[-1]}"
            note_error(request, message)
            return answer(ApiError(400, message, code="invalid_value"))
        param, message = validation_message(exc.errors())
        note_error(request, message)
        return answer(ApiError(400, message, param=param, code="invalid_value"))

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        if isinstance(exc.__cause__, ApiError):  # our body limit, raised while FastAPI read the body
            return answer(exc.__cause__)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        # Starlette's own headers (a 405's `Allow`, which RFC 9110 requires) go out with our body.
        given = dict(exc.headers or {})
        if exc.status_code == 405:  # Starlette names only the first route on the path: name every method it has
            given["Allow"] = ", ".join(_allowed(app, request.scope)) or given.get("Allow", "")
        headers = tuple(given.items())
        return answer(ApiError(exc.status_code, str(exc.detail), code=code, headers=headers))

    async def crash(request: Request, exc: Exception) -> JSONResponse:
        return answer(from_exception(exc))

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, crash)
