"""Reading a status document (engines.fleet.status) into a HostView: this machine's and every other llm-tui's.

A remote document comes from another machine: every field is checked for its type, lists are cut to a bound,
strings to 256 characters, and a field that cannot be read becomes None. Nothing but FleetError leaves here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from typing import Any

from engines.fleet.errors import FleetError
from engines.fleet.status import SCHEMA, status_document
from engines.fleet.types import FleetInstance, FleetMember, HostView
from engines.telemetry.snapshot import GpuStats, Snapshot
from engines.types import InstanceInfo

MAX_GPUS = 64
MAX_INSTANCES = 256
MAX_MODELS = 4096
MAX_TEXT = 256
LOCAL = FleetMember(name="local", url="")
"""The member that stands for this machine in the fleet view."""


def text(value: object) -> str | None:
    """A string cut to MAX_TEXT characters; None for anything else or an empty string."""
    if not isinstance(value, str) or not value:
        return None
    return value[:MAX_TEXT]


def number(value: object) -> float | None:
    """A finite number (not a bool); None otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    result = float(value)
    return result if math.isfinite(result) else None


def count(value: object) -> int | None:
    """A whole number of at least 0 (bytes, requests); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float) and math.isfinite(value) and value >= 0 and value.is_integer():
        return int(value)
    return None


def _table(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object, limit: int) -> list[Any]:
    # A tuple too: the local document is read as built, without a JSON round trip (asdict keeps tuples).
    return list(value[:limit]) if isinstance(value, list | tuple) else []


def instance_from_json(raw: object) -> FleetInstance | None:
    """One entry of a document's `instances` (engines.fleet.status.instance_json); None when it has no run id."""
    item = _table(raw)
    run_id = text(item.get("run_id"))
    if run_id is None:
        return None
    return FleetInstance(
        run_id=run_id,
        model=text(item.get("model")) or "?",
        engine=text(item.get("engine")) or "?",
        state=text(item.get("state")) or "unknown",
        device=text(item.get("device")),
        vram_bytes=count(item.get("vram_bytes")),
        ram_bytes=count(item.get("ram_bytes")),
        tokens_per_s=number(item.get("last_tokens_per_s")),
        running=count(item.get("slots_busy")),
        queued=count(item.get("queued")),
        error=text(item.get("error")),
    )


def _gpu(raw: object, position: int) -> GpuStats:
    item = _table(raw)
    index = count(item.get("index"))
    return GpuStats(
        index=position if index is None else index,
        name=text(item.get("name")),
        uuid=text(item.get("uuid")),
        utilization_pct=number(item.get("utilization_pct")),
        memory_used_bytes=count(item.get("memory_used_bytes")),
        memory_total_bytes=count(item.get("memory_total_bytes")),
        temperature_c=number(item.get("temperature_c")),
        power_w=number(item.get("power_w")),
        power_limit_w=number(item.get("power_limit_w")),
        error=text(item.get("error")),
    )


def host_view_from_status(
    member: FleetMember, doc: object, *, polled_at: float, latency_ms: float | None, local: bool = False
) -> HostView:
    """The view of a host whose status document is `doc` (parsed JSON); FleetError when it is not one."""
    if not isinstance(doc, dict):
        raise FleetError(f"host {member.name}: the answer is not an llm-tui status document (not a JSON object)")
    schema = count(doc.get("schema"))
    if schema is None or schema < 1:
        raise FleetError(f"host {member.name}: the answer is not an llm-tui status document (no schema)")
    about = _table(doc.get("llm_tui"))
    telemetry = _table(doc.get("telemetry"))
    host = _table(telemetry.get("host"))
    gpus = tuple(_gpu(g, i) for i, g in enumerate(_list(telemetry.get("gpus"), MAX_GPUS)))
    found = (instance_from_json(i) for i in _list(doc.get("instances"), MAX_INSTANCES))
    models = (text(m) for m in _list(doc.get("models"), MAX_MODELS))
    return HostView(
        member=member,
        reachable=True,
        polled_at=polled_at,
        last_seen=polled_at,
        latency_ms=latency_ms,
        # A newer schema is read for the fields this reader knows; say so, since some may have changed meaning.
        error=None if schema <= SCHEMA else f"status schema {schema} is newer than this llm-tui's ({SCHEMA})",
        engine_kind="llm-tui",
        version=text(about.get("version")),
        hostname=text(about.get("hostname")),
        gpus=gpus,
        instances=tuple(i for i in found if i is not None),
        models=tuple(m for m in models if m is not None),
        cpu_pct=number(host.get("cpu_pct")),
        ram_used_bytes=count(host.get("ram_used_bytes")),
        ram_total_bytes=count(host.get("ram_total_bytes")),
        local=local,
    )


def local_view(
    instances: Iterable[InstanceInfo], snapshot: Snapshot | None, models: Iterable[str], *, now: float | None = None
) -> HostView:
    """This machine's row, read through the same status document its server publishes to its peers."""
    doc = status_document(instances, snapshot, models)
    return host_view_from_status(LOCAL, doc, polled_at=time.time() if now is None else now, latency_ms=None, local=True)
