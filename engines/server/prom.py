"""GET /metrics in the Prometheus text format: what the server, its instances, the GPUs and the host are doing
now (read at scrape time), and counters and histograms of the requests it has finished.

Each server has its own CollectorRegistry (never prometheus_client's global one: the app and the tests run
several servers in one process). A scrape reads the manager's instances, one telemetry snapshot and the
request counts; it lists no folder.

Read at scrape time (labels in brackets):
- `llm_tui_instance_info{run_id, model, engine, device}`: 1 per running instance.
- `llm_tui_instance_state{run_id, model, engine, llm_tui_instance_state}`: 1 for its state (loading, ready, busy,
  error, stopping, stopped), 0 for the others.
- `llm_tui_instance_requests_served_total{run_id, model, engine}`: requests it has finished since its load.
- `llm_tui_instance_requests_running{…}`: requests being decoded now (its busy slots).
- `llm_tui_instance_requests_queued{…}`: requests waiting for a slot.
- `llm_tui_instance_slots{…}`: requests it decodes at once.
- `llm_tui_instance_last_tokens_per_second{…}`: decode speed of its last request (absent before the first).
- `llm_tui_instance_ram_bytes{…}`, `llm_tui_instance_vram_bytes{…}`: memory it holds.
- `llm_tui_instance_idle_seconds{…}`: seconds since its last request (0 while busy).
- `llm_tui_gpu_utilization_ratio{gpu, name, uuid}`: 0-1.
- `llm_tui_gpu_memory_used_bytes{…}`, `llm_tui_gpu_memory_total_bytes{…}`.
- `llm_tui_gpu_temperature_celsius{…}`, `llm_tui_gpu_power_watts{…}`.
- `llm_tui_host_cpu_utilization_ratio`: 0-1, over all CPUs.
- `llm_tui_host_memory_used_bytes`, `llm_tui_host_memory_total_bytes`.
- `llm_tui_process_resident_memory_bytes`: this server's process.
- `llm_tui_server_requests_in_flight`: requests being answered now (the scrape included).
- `llm_tui_server_requests_cancelled_total`: requests whose client went away before the end.
- `llm_tui_server_uptime_seconds`.
A GPU or host field telemetry cannot read is left out, never reported as 0.

Fed by every finished request (ServerStats' listener):
- `llm_tui_requests_total{key, model, status}`: every request, by API key name ("" without keys), the model it
  named ("" for none) and HTTP status.
- `llm_tui_prompt_tokens_total{key, model}`, `llm_tui_completion_tokens_total{key, model}`.
- `llm_tui_time_to_first_token_seconds{model}` (histogram): from the request's arrival at its instance (queue
  wait included) to its first token.
- `llm_tui_request_duration_seconds{model}` (histogram): the whole request as the server saw it, for
  successful requests that named a model.
The model label takes at most MAX_MODELS names; a name first seen on a failed request (a typo, a probe) is
counted as "other", so clients cannot grow the label set without bound.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, StateSetMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from engines.launch import SnapshotSource
from engines.server.guard import RequestRecord, ServerStats
from engines.telemetry.snapshot import GpuStats, HostStats
from engines.types import InstanceInfo, InstanceState

__all__ = ["CONTENT_TYPE_LATEST", "MAX_MODELS", "PrometheusMetrics", "RequestMetrics", "ServerCollector"]

MAX_MODELS = 100
"""Distinct `model` label values the request metrics keep; later names are counted as "other"."""
OTHER = "other"

TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0)
"""Seconds: a warm small model answers in tens of ms; a long prompt on a CPU, or a full queue, in tens of s."""
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 60.0, 120.0, 300.0, 600.0)
"""Seconds: from an embedding or a short reply up to a long generation (or a transcription) of minutes."""

INSTANCE_LABELS = ("run_id", "model", "engine")
GPU_LABELS = ("gpu", "name", "uuid")


class ServerCollector(Collector):
    """The gauges read at scrape time: instances, GPUs, host, server."""

    def __init__(
        self,
        instances: Callable[[], Sequence[InstanceInfo]],
        snapshot: SnapshotSource | None,
        stats: ServerStats,
        started_at: float,
    ) -> None:
        self._instances = instances
        self._snapshot = snapshot
        self._stats = stats
        self._started_at = started_at

    def describe(self) -> Iterable[Metric]:
        return []  # nothing fixed to declare; registering must not take a telemetry sample

    def collect(self) -> Iterator[Metric]:
        yield from _instance_metrics(self._instances())
        snapshot = self._snapshot() if self._snapshot is not None else None
        if snapshot is not None:
            yield from _gpu_metrics(snapshot.gpus)
            yield from _host_metrics(snapshot.host)
        counts = self._stats.snapshot()
        yield GaugeMetricFamily(
            "llm_tui_server_requests_in_flight", "Requests being answered now", value=_number(counts["in_flight"])
        )
        yield CounterMetricFamily(
            "llm_tui_server_requests_cancelled",
            "Requests whose client went away before the reply ended",
            value=_number(counts["cancelled"]),
        )
        yield GaugeMetricFamily(
            "llm_tui_server_uptime_seconds",
            "Seconds since the server started",
            value=max(0.0, time.time() - self._started_at),
        )


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def _instance_metrics(instances: Sequence[InstanceInfo]) -> Iterator[Metric]:
    info = InfoMetricFamily("llm_tui_instance", "A running instance", labels=(*INSTANCE_LABELS, "device"))
    state = StateSetMetricFamily("llm_tui_instance_state", "The instance's state", labels=INSTANCE_LABELS)
    served = CounterMetricFamily(
        "llm_tui_instance_requests_served", "Requests the instance finished since its load", labels=INSTANCE_LABELS
    )
    gauges = {
        "running": GaugeMetricFamily(
            "llm_tui_instance_requests_running", "Requests being decoded (busy slots)", labels=INSTANCE_LABELS
        ),
        "queued": GaugeMetricFamily(
            "llm_tui_instance_requests_queued", "Requests waiting for a slot", labels=INSTANCE_LABELS
        ),
        "slots": GaugeMetricFamily("llm_tui_instance_slots", "Requests decoded at once", labels=INSTANCE_LABELS),
        "tps": GaugeMetricFamily(
            "llm_tui_instance_last_tokens_per_second",
            "Decode speed of the instance's last request",
            labels=INSTANCE_LABELS,
        ),
        "ram": GaugeMetricFamily("llm_tui_instance_ram_bytes", "RAM the instance holds", labels=INSTANCE_LABELS),
        "vram": GaugeMetricFamily(
            "llm_tui_instance_vram_bytes", "GPU memory the instance holds", labels=INSTANCE_LABELS
        ),
        "idle": GaugeMetricFamily(
            "llm_tui_instance_idle_seconds", "Seconds since the instance's last request", labels=INSTANCE_LABELS
        ),
    }
    for i in instances:
        labels = [i.run_id, i.model_id, i.engine]
        info.add_metric(labels, {"device": i.device})
        state.add_metric(labels, {s.value: s is i.state for s in InstanceState})
        served.add_metric(labels, i.requests_served)
        gauges["running"].add_metric(labels, i.slots_busy)
        gauges["queued"].add_metric(labels, i.queued)
        gauges["slots"].add_metric(labels, i.slots)
        if i.last_tokens_per_s is not None:
            gauges["tps"].add_metric(labels, i.last_tokens_per_s)
        if i.footprint.ram_bytes is not None:
            gauges["ram"].add_metric(labels, i.footprint.ram_bytes)
        if i.footprint.vram_bytes is not None:
            gauges["vram"].add_metric(labels, i.footprint.vram_bytes)
        gauges["idle"].add_metric(labels, i.idle_s)
    yield info
    yield state
    yield served
    yield from gauges.values()


def _gpu_metrics(gpus: Sequence[GpuStats]) -> Iterator[Metric]:
    def family(name: str, help_text: str) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, help_text, labels=GPU_LABELS)

    util = family("llm_tui_gpu_utilization_ratio", "GPU utilisation, 0-1")
    used = family("llm_tui_gpu_memory_used_bytes", "GPU memory in use")
    total = family("llm_tui_gpu_memory_total_bytes", "GPU memory in all")
    temp = family("llm_tui_gpu_temperature_celsius", "GPU temperature")
    power = family("llm_tui_gpu_power_watts", "GPU power draw")
    for gpu in gpus:
        labels = [str(gpu.index), gpu.name or "", gpu.uuid or ""]
        for metric, value in (
            (util, None if gpu.utilization_pct is None else gpu.utilization_pct / 100.0),
            (used, gpu.memory_used_bytes),
            (total, gpu.memory_total_bytes),
            (temp, gpu.temperature_c),
            (power, gpu.power_w),
        ):
            if value is not None:
                metric.add_metric(labels, value)
    yield from (util, used, total, temp, power)


def _host_metrics(host: HostStats) -> Iterator[Metric]:
    for name, help_text, value in (
        (
            "llm_tui_host_cpu_utilization_ratio",
            "Host CPU use over all CPUs, 0-1",
            None if host.cpu_pct is None else host.cpu_pct / 100.0,
        ),
        ("llm_tui_host_memory_used_bytes", "Host RAM in use", host.ram_used_bytes),
        ("llm_tui_host_memory_total_bytes", "Host RAM in all", host.ram_total_bytes),
        ("llm_tui_process_resident_memory_bytes", "Resident memory of the server's process", host.process_rss_bytes),
    ):
        if value is not None:
            yield GaugeMetricFamily(name, help_text, value=value)


class RequestMetrics:
    """Counters and histograms of finished requests; `observe` is ServerStats' listener."""

    def __init__(self, registry: CollectorRegistry, max_models: int = MAX_MODELS) -> None:
        self.requests = Counter("llm_tui_requests", "Requests finished", ("key", "model", "status"), registry=registry)
        self.prompt_tokens = Counter("llm_tui_prompt_tokens", "Prompt tokens read", ("key", "model"), registry=registry)
        self.completion_tokens = Counter(
            "llm_tui_completion_tokens", "Completion tokens generated", ("key", "model"), registry=registry
        )
        self.ttft = Histogram(
            "llm_tui_time_to_first_token_seconds",
            "From the request's arrival at its instance to its first token",
            ("model",),
            buckets=TTFT_BUCKETS,
            registry=registry,
        )
        self.duration = Histogram(
            "llm_tui_request_duration_seconds",
            "Whole successful requests that named a model",
            ("model",),
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self._max_models = max_models
        self._models: set[str] = set()
        self._lock = threading.Lock()

    def model_label(self, record: RequestRecord) -> str:
        """The record's model as a label: "" for none; a name first seen failing, or past the cap, is "other"."""
        model = record.model
        if not model:
            return ""
        with self._lock:
            if model in self._models:
                return model
            if record.status < 400 and len(self._models) < self._max_models:
                self._models.add(model)
                return model
        return OTHER

    def observe(self, record: RequestRecord) -> None:
        """Count one finished request."""
        key = record.key or ""
        model = self.model_label(record)
        self.requests.labels(key, model, str(record.status)).inc()
        if record.prompt_tokens:
            self.prompt_tokens.labels(key, model).inc(record.prompt_tokens)
        if record.completion_tokens:
            self.completion_tokens.labels(key, model).inc(record.completion_tokens)
        if record.status >= 400 or not record.model:
            return
        if record.ttft_ms is not None:
            self.ttft.labels(model).observe(record.ttft_ms / 1000.0)
        self.duration.labels(model).observe(record.ms / 1000.0)


class PrometheusMetrics:
    """One server's registry: the scrape-time collector and the request metrics, fed by `stats`' listener."""

    def __init__(
        self,
        instances: Callable[[], Sequence[InstanceInfo]],
        snapshot: SnapshotSource | None,
        stats: ServerStats,
        started_at: float,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(ServerCollector(instances, snapshot, stats, started_at))
        self.requests = RequestMetrics(self.registry)
        stats.add_listener(self.requests.observe)

    def render(self) -> bytes:
        """The text exposition (serve it as CONTENT_TYPE_LATEST); blocks on telemetry, so call it off the loop."""
        return generate_latest(self.registry)
