"""The fleet table's rows: a host, then the models it serves, as cells; no widget, so it is tested alone.

A host row says whether the host answered, its GPUs and their free memory, and when it was last seen; the rows
under it are its instances (llm-tui's, or the models a vLLM / SGLang / TGI / llama-server lists). Hosts keep the
config's order, or are sorted by free VRAM (most first; hosts without a GPU reading last).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text

from engines.catalog.fit import human_bytes
from engines.fleet.types import FleetInstance, HostView
from engines.telemetry.snapshot import GpuStats

COLUMNS = ("Host", "GPU", "Model", "Engine", "State", "VRAM", "tok/s", "Queue", "Seen")
NARROW_DROPS = ("Engine", "Seen", "GPU")
"""Columns given up, in this order, on a narrow terminal (the detail line under the table still says them)."""
STATE_COLOUR = {"ready": "success", "serving": "success", "busy": "accent", "loading": "warning", "error": "error"}
DOWN = "✗"
UP = "●"


@dataclass(frozen=True, slots=True)
class FleetRow:
    """A table row: a host (instance None) or one of its instances."""

    key: str
    host: HostView
    instance: FleetInstance | None = None


def order_hosts(views: Sequence[HostView], by_free_vram: bool) -> list[HostView]:
    """Config order (the local box first), or most free VRAM first; unreachable hosts keep their place."""
    if not by_free_vram:
        return list(views)
    return sorted(views, key=lambda v: -(v.free_vram_bytes if v.free_vram_bytes is not None else -1))


def fleet_rows(views: Sequence[HostView], by_free_vram: bool = False) -> list[FleetRow]:
    """Each host's row, then a row per instance it runs."""
    rows: list[FleetRow] = []
    for view in order_hosts(views, by_free_vram):
        name = view.member.name
        rows.append(FleetRow(f"h:{name}", view))
        rows.extend(FleetRow(f"i:{name}:{i.run_id}", view, i) for i in view.instances)
    return rows


def ago(seconds: float) -> str:
    s = int(max(0, seconds))
    if s < 60:
        return f"{s} s ago"
    if s < 3600:
        return f"{s // 60} m ago"
    return f"{s // 3600} h ago"


def gpu_summary(gpus: Sequence[GpuStats]) -> str:
    """ "RTX 4090 ×2", "A100 + L4", "-" without GPUs."""
    if not gpus:
        return "no GPU"
    names = [_short_gpu(g.name) for g in gpus]
    if len(set(names)) == 1:
        return names[0] if len(names) == 1 else f"{names[0]} ×{len(names)}"
    return " + ".join(dict.fromkeys(names))


def _short_gpu(name: str | None) -> str:
    """ "NVIDIA A100-SXM4-80GB" -> "A100", "NVIDIA GeForce RTX 4090" -> "RTX 4090": the model, not the package."""
    text = (name or "GPU").removeprefix("NVIDIA ").removeprefix("GeForce ")
    text = re.sub(r"-(SXM\d*|PCIE)(-\d+GB)?$", "", text)
    return text if len(text) <= 16 else text[:15] + "…"


def vram_free(view: HostView) -> str:
    """ "18.2 GB free" over all its GPUs, for the host row (the detail line has each GPU's)."""
    free = view.free_vram_bytes
    return "-" if free is None else f"{human_bytes(free)} free"


def queue_text(instance: FleetInstance) -> str:
    """Running, then waiting: "2 +5"; "-" when the server does not say."""
    if instance.running is None and instance.queued is None:
        return "-"
    text = str(instance.running or 0)
    return text + (f" +{instance.queued}" if instance.queued else "")


def host_cells(view: HostView, now: float, colours: dict[str, str]) -> tuple[str | Text, ...]:
    ok = colours.get("success", "green")
    bad = colours.get("error", "red")
    mark = Text(UP, style=ok) if view.reachable else Text(DOWN, style=bad)
    name = Text.assemble(mark, " ", (view.member.name, "bold"))
    if view.reachable:
        count = len(view.instances)
        what = f"{count} running"
        if view.member.kind == "llm-tui" and view.models:
            what += f" · {len(view.models)} on disk"
        state = Text("up", style=ok)
        seen = "this box" if view.local else (f"{view.latency_ms:.0f} ms" if view.latency_ms is not None else "-")
    else:
        what = view.error or "not polled yet"
        word = "denied" if refused(view) else "down" if view.polled_at is not None else "…"
        state = Text(word, style=bad)
        seen = ago(now - view.last_seen) if view.last_seen is not None else "never"
    engine = view.engine_kind or view.member.kind
    return (name, gpu_summary(view.gpus), what, engine, state, vram_free(view), "", "", seen)


def refused(view: HostView) -> bool:
    """It answered, but not to this key (401/403): not down, and a different fix (the key or its scopes)."""
    return (view.error or "").startswith(("HTTP 401", "HTTP 403"))


def instance_cells(instance: FleetInstance, colours: dict[str, str], stale: bool) -> tuple[str | Text, ...]:
    state = instance.state
    style = "dim" if stale else colours.get(STATE_COLOUR.get(state, ""), "")
    kv = f" kv {instance.kv_cache_pct:.0f}%" if instance.kv_cache_pct is not None else ""
    # An OpenAI-compatible server's "run id" is the model it serves: name its engine there instead of twice the model.
    run = instance.run_id if instance.run_id != instance.model else instance.engine
    return (
        "  " + run,
        "",
        instance.model,
        instance.engine,
        Text(state, style=style),
        human_bytes(instance.vram_bytes) if instance.vram_bytes else "-",
        f"{instance.tokens_per_s:.1f}" if instance.tokens_per_s else "-",
        queue_text(instance) + kv,
        "",
    )


def row_cells(row: FleetRow, now: float, colours: dict[str, str]) -> tuple[str | Text, ...]:
    if row.instance is None:
        return host_cells(row.host, now, colours)
    return instance_cells(row.instance, colours, stale=not row.host.reachable)


def host_detail(view: HostView, now: float) -> list[str]:
    """Lines under the table for a host (plain text: the caller escapes)."""
    where = "this machine" if view.local else view.member.url
    kind = view.engine_kind or view.member.kind
    lines = [f"{view.member.name} · {where} · {kind}" + (f" {view.version}" if view.version else "")]
    host = []
    if view.hostname:
        host.append(view.hostname)
    if view.cpu_pct is not None:
        host.append(f"CPU {view.cpu_pct:.0f}%")
    if view.ram_used_bytes is not None and view.ram_total_bytes:
        host.append(f"RAM {human_bytes(view.ram_used_bytes)}/{human_bytes(view.ram_total_bytes)}")
    if host:
        lines.append(" · ".join(host))
    for gpu in view.gpus:
        parts = [f"GPU {gpu.index} {_short_gpu(gpu.name)}"]
        if gpu.utilization_pct is not None:
            parts.append(f"{gpu.utilization_pct:.0f}%")
        if gpu.memory_used_bytes is not None and gpu.memory_total_bytes:
            parts.append(f"{human_bytes(gpu.memory_used_bytes)}/{human_bytes(gpu.memory_total_bytes)}")
        if gpu.temperature_c is not None:
            parts.append(f"{gpu.temperature_c:.0f} °C")
        if gpu.power_w is not None:
            parts.append(f"{gpu.power_w:.0f} W")
        lines.append(" · ".join(parts))
    if not view.reachable:
        seen = ago(now - view.last_seen) if view.last_seen is not None else "never"
        what = "refused" if refused(view) else "unreachable"
        lines.append(f"{what}: {view.error or 'not polled yet'} · last seen {seen}")
    return lines


def instance_detail(view: HostView, instance: FleetInstance) -> list[str]:
    lines = [f"{instance.model} on {view.member.name} · {instance.engine} · {instance.run_id}"]
    parts = []
    if instance.device:
        parts.append(instance.device)
    if instance.vram_bytes:
        parts.append(f"VRAM {human_bytes(instance.vram_bytes)}")
    if instance.ram_bytes:
        parts.append(f"RAM {human_bytes(instance.ram_bytes)}")
    if instance.running is not None or instance.queued is not None:
        parts.append(f"running {instance.running or 0} · waiting {instance.queued or 0}")
    if instance.kv_cache_pct is not None:
        parts.append(f"KV cache {instance.kv_cache_pct:.0f}%")
    if instance.ttft_ms is not None:
        parts.append(f"TTFT {instance.ttft_ms:.0f} ms (mean)")
    if parts:
        lines.append(" · ".join(parts))
    if instance.error:
        lines.append(instance.error)
    return lines
