"""llm-tui's own routes beside the OpenAI API: Prometheus metrics, the status document its peers poll, the same
counts as JSON, and the admin routes that list, launch and stop instances.

- `GET /metrics`: Prometheus text (prom.py names every metric).
- `GET /v1/llm-tui/metrics`: `{"server": {...}, "instances": [...], "telemetry": {...} | null}`.
- `GET /v1/llm-tui/status`: engines.fleet.status.status_document.
- `GET /v1/llm-tui/instances`: `{"object": "list", "data": [instance, ...]}`.
- `POST /v1/llm-tui/instances` `{"model", "engine"?, "n_ctx"?, "n_gpu_layers"?}`: 201 `{"instance": {...}}` once
  loaded; the names launch-on-demand takes (catalog ids, aliases, files inside models_dir), never another path.
- `DELETE /v1/llm-tui/instances/{run_id}`: 200 `{"run_id": ..., "stopped": true}`; 404 when unknown.

Which key may call which (metrics, admin) is the guard's business; everything that blocks runs off the loop.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING, Annotated, Any

from anyio import to_thread
from fastapi import FastAPI
from fastapi import Path as PathParam
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from engines.errors import InstanceNotFound
from engines.fleet.status import (
    INSTANCES_PATH,
    METRICS_JSON_PATH,
    PROMETHEUS_PATH,
    STATUS_PATH,
    instance_json,
    status_document,
)
from engines.launch import default_options
from engines.server import openapi
from engines.server.errors import ApiError
from engines.server.prom import CONTENT_TYPE_LATEST
from engines.types import LaunchOptions

if TYPE_CHECKING:
    from engines.server.app import ServerContext

MAX_RUN_ID = 200


class LaunchBody(BaseModel):
    """POST /v1/llm-tui/instances: what to launch, and how (unset: the configuration's defaults)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=512, description="a catalog id, an alias, or a file in models_dir")
    engine: str | None = Field(None, min_length=1, max_length=64, description="none: the first that loads it")
    n_ctx: int | None = Field(None, ge=1, le=1_048_576)
    n_gpu_layers: int | None = Field(None, ge=-1, le=100_000, description="-1: all")


class InstanceList(BaseModel):
    """GET /v1/llm-tui/instances."""

    object: str
    data: list[dict[str, Any]]


class InstanceLaunched(BaseModel):
    """POST /v1/llm-tui/instances: the instance, loaded."""

    instance: dict[str, Any]


class InstanceStopped(BaseModel):
    """DELETE /v1/llm-tui/instances/{run_id}."""

    run_id: str
    stopped: bool


_OBJECT: dict[str, Any] = {"type": "object"}
_PROMETHEUS_DOC: openapi.Responses = {
    200: {
        "description": "Prometheus text exposition (every metric is named in engines/server/prom.py)",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    },
    **openapi.errors(),
}
_STATUS_DOC: openapi.Responses = {
    200: {
        "description": "The status document: telemetry, instances and launchable models",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["schema", "llm_tui", "server", "telemetry", "instances", "models"],
                    "properties": {
                        "schema": {"type": "integer"},
                        "llm_tui": _OBJECT,
                        "server": {"anyOf": [_OBJECT, {"type": "null"}]},
                        "telemetry": {"anyOf": [_OBJECT, {"type": "null"}]},
                        "instances": {"type": "array", "items": _OBJECT},
                        "models": {"type": "array", "items": {"type": "string"}},
                    },
                }
            }
        },
    },
    **openapi.errors(),
}
_METRICS_JSON_DOC: openapi.Responses = {
    200: {
        "description": "The server's counts, its instances and the telemetry snapshot",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["server", "instances", "telemetry"],
                    "properties": {
                        "server": _OBJECT,
                        "instances": {"type": "array", "items": _OBJECT},
                        "telemetry": {"anyOf": [_OBJECT, {"type": "null"}]},
                    },
                }
            }
        },
    },
    **openapi.errors(),
}


def install(app: FastAPI, ctx: ServerContext) -> None:
    """Add the metrics, status and admin routes to `app`."""

    @app.get(PROMETHEUS_PATH, response_class=Response, responses=_PROMETHEUS_DOC)
    async def prometheus() -> Response:
        body = await to_thread.run_sync(ctx.prometheus.render)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @app.get(METRICS_JSON_PATH, responses=_METRICS_JSON_DOC)
    async def metrics_json() -> dict[str, object]:
        return await to_thread.run_sync(metrics_document, ctx)

    @app.get(STATUS_PATH, responses=_STATUS_DOC)
    async def status() -> dict[str, object]:
        return await to_thread.run_sync(status_of, ctx)

    @app.get(INSTANCES_PATH, responses={200: {"model": InstanceList}, **openapi.errors()})
    async def list_instances() -> dict[str, object]:
        return {"object": "list", "data": [instance_json(i) for i in ctx.manager.instances()]}

    @app.post(
        INSTANCES_PATH,
        status_code=201,
        responses={201: {"model": InstanceLaunched}, **openapi.errors(*openapi.COMMON, 404, 500, 503)},
    )
    async def launch_instance(body: LaunchBody) -> dict[str, object]:
        if ctx.drain.stopping:
            raise ApiError(503, "the server is shutting down", type="server_error", code="server_shutting_down")
        options = launch_options(ctx, body)
        info = await to_thread.run_sync(lambda: ctx.router.launch_new(body.model, engine=body.engine, options=options))
        return {"instance": instance_json(info)}

    @app.delete(
        INSTANCES_PATH + "/{run_id}", responses={200: {"model": InstanceStopped}, **openapi.errors(400, 404, 500)}
    )
    async def stop_instance(
        run_id: Annotated[str, PathParam(min_length=1, max_length=MAX_RUN_ID)],
    ) -> dict[str, object]:
        def stop() -> None:
            try:
                ctx.manager.stop(run_id, reason="stopped through the API")
            except InstanceNotFound:
                raise ApiError(
                    404, f"no instance with run id {run_id!r} (GET {INSTANCES_PATH} lists them)", code="not_found"
                ) from None

        await to_thread.run_sync(stop)
        return {"run_id": run_id, "stopped": True}


def launch_options(ctx: ServerContext, body: LaunchBody) -> LaunchOptions:
    """The configuration's launch options with the body's n_ctx and n_gpu_layers over them."""
    options = default_options(ctx.config)
    if body.n_ctx is not None:
        options = replace(options, n_ctx=body.n_ctx)
    if body.n_gpu_layers is not None:
        options = replace(options, n_gpu_layers=body.n_gpu_layers, device="cpu" if body.n_gpu_layers == 0 else "auto")
    return options


def status_of(ctx: ServerContext) -> dict[str, object]:
    """The status document of this server (blocks: telemetry, and the models listing every LISTING_TTL_S)."""
    snapshot = ctx.snapshot() if ctx.snapshot is not None else None
    return status_document(
        ctx.manager.instances(),
        snapshot,
        ctx.router.launchable_names(),
        server=ctx.stats.snapshot(),
        started_at=ctx.started_at,
    )


def metrics_document(ctx: ServerContext) -> dict[str, object]:
    """GET /v1/llm-tui/metrics: the server's counts, every instance's numbers and the telemetry snapshot."""
    instances = []
    for info in ctx.manager.instances():
        instances.append(
            {
                "run_id": info.run_id,
                "model": info.model_id,
                "engine": info.engine,
                "device": info.device,
                "state": info.state.value,
                "requests_served": info.requests_served,
                "pending_requests": info.pending_requests,
                "slots": info.slots,
                "slots_busy": info.slots_busy,
                "queued": info.queued,
                "draft_proposed": info.draft_proposed,
                "draft_accepted": info.draft_accepted,
                "last_tokens_per_s": info.last_tokens_per_s,
                "ram_bytes": info.footprint.ram_bytes,
                "vram_bytes": info.footprint.vram_bytes,
            }
        )
    snapshot = ctx.snapshot() if ctx.snapshot is not None else None
    return {
        "server": {**ctx.stats.snapshot(), "uptime_s": round(time.time() - ctx.started_at, 1)},
        "instances": instances,
        "telemetry": snapshot.to_json() if snapshot is not None else None,
    }
