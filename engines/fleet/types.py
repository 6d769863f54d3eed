"""What crosses between the fleet poller (a worker) and the fleet screen: one host's view at one poll."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from engines.telemetry.snapshot import GpuStats

MemberKind = Literal["llm-tui", "openai"]
"""llm-tui: another `llm-tui serve` (its status document, admin actions with an admin key).
openai: any OpenAI-compatible server (vLLM, SGLang, TGI, llama-server): its /v1/models and Prometheus /metrics,
read-only."""


@dataclass(frozen=True, slots=True)
class FleetMember:
    """One `[[fleet]]` entry of config.toml."""

    name: str
    url: str
    """Base URL without `/v1`, e.g. `http://10.0.0.5:8000` (a reverse proxy's prefix included)."""
    kind: MemberKind = "llm-tui"
    key_env: str | None = None
    """The environment variable holding the API key to send (never the key itself in the file)."""
    timeout_s: float = 2.0
    """How long one poll of this host may take before it counts as slow/unreachable."""


@dataclass(frozen=True, slots=True)
class FleetInstance:
    """A model being served on a host: an llm-tui instance, or a model an OpenAI-compatible server lists."""

    run_id: str
    """llm-tui's run id; for an openai member, the model id it serves (what a chat request names)."""
    model: str
    engine: str
    """llama.cpp / transformers / ... for llm-tui; vllm / sglang / tgi / llama-server / openai otherwise."""
    state: str
    """ready / busy / loading / error / stopped; "serving" for a member we only read."""
    device: str | None = None
    vram_bytes: int | None = None
    ram_bytes: int | None = None
    tokens_per_s: float | None = None
    running: int | None = None
    """Requests being decoded now."""
    queued: int | None = None
    """Requests waiting."""
    kv_cache_pct: float | None = None
    """KV-cache in use, 0-100 (engines that publish it)."""
    ttft_ms: float | None = None
    """Mean time to first token so far (engines that publish a histogram)."""
    error: str | None = None


@dataclass(frozen=True, slots=True)
class HostView:
    """One host at its latest poll. When the latest poll failed, `reachable` is False, `error` says why and the
    rest is what the last successful poll saw (as of `last_seen`)."""

    member: FleetMember
    reachable: bool
    polled_at: float | None = None
    """time.time() of the latest poll's end (None before the first)."""
    last_seen: float | None = None
    """time.time() of the latest successful poll."""
    latency_ms: float | None = None
    error: str | None = None
    engine_kind: str | None = None
    """llm-tui, vllm, sglang, tgi, llama-server, or openai when the metrics say nothing more."""
    version: str | None = None
    hostname: str | None = None
    gpus: tuple[GpuStats, ...] = ()
    """Its GPUs, as its telemetry saw them (the same type as this machine's gauges)."""
    instances: tuple[FleetInstance, ...] = ()
    models: tuple[str, ...] = ()
    """Models it can launch (llm-tui: its local catalog models) or serves (openai)."""
    cpu_pct: float | None = None
    ram_used_bytes: int | None = None
    ram_total_bytes: int | None = None
    local: bool = False
    """This machine (read from the app's own manager, not over HTTP)."""

    @property
    def free_vram_bytes(self) -> int | None:
        """Free memory over all its GPUs; None when no GPU reports it."""
        free = [g.memory_free_bytes for g in self.gpus if g.memory_free_bytes is not None]
        return sum(free) if free else None
