"""The status document an llm-tui server publishes for its peers (`GET /v1/llm-tui/status`): telemetry,
instances and launchable models in one JSON object, cheap enough to poll every 2 s. The local row of the fleet
screen is built from the same document, so this machine and the others are read the same way."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable, Mapping

import engines
from engines.telemetry.snapshot import Snapshot
from engines.types import InstanceInfo

STATUS_PATH = "/v1/llm-tui/status"
INSTANCES_PATH = "/v1/llm-tui/instances"
"""POST launches (admin), DELETE …/{run_id} stops (admin)."""
METRICS_JSON_PATH = "/v1/llm-tui/metrics"
"""The server's counts and instances as JSON (what GET /metrics gave before it became Prometheus text)."""
PROMETHEUS_PATH = "/metrics"
SCHEMA = 1
"""Bumped when a field changes meaning; readers ignore fields they do not know."""


def instance_json(info: InstanceInfo) -> dict[str, object]:
    """One instance as the status document and the instances API show it."""
    return {
        "run_id": info.run_id,
        "model": info.model_id,
        "engine": info.engine,
        "device": info.device,
        "state": info.state.value,
        "error": info.error,
        "requests_served": info.requests_served,
        "pending_requests": info.pending_requests,
        "slots": info.slots,
        "slots_busy": info.slots_busy,
        "queued": info.queued,
        "last_tokens_per_s": info.last_tokens_per_s,
        "ram_bytes": info.footprint.ram_bytes,
        "vram_bytes": info.footprint.vram_bytes,
        "idle_s": round(info.idle_s, 1),
        "started_at": info.started_at,
    }


def status_document(
    instances: Iterable[InstanceInfo],
    snapshot: Snapshot | None,
    models: Iterable[str],
    *,
    server: Mapping[str, object] | None = None,
    started_at: float | None = None,
) -> dict[str, object]:
    """The whole document; `server` is the request counts (ServerStats.snapshot()), `models` the launchable ids."""
    return {
        "schema": SCHEMA,
        "llm_tui": {
            "version": engines.__version__,
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "uptime_s": None if started_at is None else round(time.time() - started_at, 1),
        },
        "server": dict(server) if server is not None else None,
        "telemetry": snapshot.to_json() if snapshot is not None else None,
        "instances": [instance_json(i) for i in instances],
        "models": sorted(models),
    }
