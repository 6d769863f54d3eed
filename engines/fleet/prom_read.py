"""Reading OpenAI-compatible servers we do not run (kind "openai"): the models `GET /v1/models` lists and the
numbers their Prometheus `GET /metrics` publishes, one FleetInstance per served model.

Which metric names each engine publishes, and where they come from, is in docs/fleet.md. Tokens per second is
the rate of a generated-tokens counter between two polls (the caller keeps the previous sample), so it is None
on the first poll and after a counter reset. A server without /metrics (404) still shows its models.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engines.fleet.errors import FleetError
from engines.fleet.http import base_url, get, json_body, status_error
from engines.fleet.read_status import MAX_MODELS, count, text
from engines.fleet.types import FleetInstance, FleetMember, HostView

if TYPE_CHECKING:
    import httpx

Samples = dict[str, list[tuple[dict[str, str], float]]]
"""Sample name → (labels, value) of each series, for the names some engine's table reads."""
Counters = dict[str, tuple[float, float]]
"""Served model → (time, generated-tokens counter) at a poll: what the next poll's rate is measured from."""


@dataclass(frozen=True, slots=True)
class EngineMetrics:
    """The metric names one engine publishes for the numbers of a FleetInstance (first name present wins)."""

    kind: str
    prefix: str
    running: tuple[str, ...]
    queued: tuple[str, ...]
    kv_ratio: tuple[str, ...] = ()
    """Gauges of the KV cache in use as a fraction, 0-1."""
    generated: tuple[str, ...] = ()
    """Counters (sample names) of tokens generated since the start."""
    throughput: tuple[str, ...] = ()
    """A tokens/s gauge of the engine's own, used only when it publishes no counter."""
    ttft: str | None = None
    """A histogram of seconds to the first token (its _sum and _count are read)."""


ENGINES: tuple[EngineMetrics, ...] = (
    EngineMetrics(
        kind="vllm",
        prefix="vllm:",
        running=("vllm:num_requests_running",),
        queued=("vllm:num_requests_waiting",),
        kv_ratio=("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
        generated=("vllm:generation_tokens_total",),
        ttft="vllm:time_to_first_token_seconds",
    ),
    EngineMetrics(
        kind="sglang",
        prefix="sglang:",
        running=("sglang:num_running_reqs",),
        queued=("sglang:num_queue_reqs",),
        kv_ratio=("sglang:token_usage",),
        generated=("sglang:generation_tokens_total",),
        throughput=("sglang:gen_throughput",),
        ttft="sglang:time_to_first_token_seconds",
    ),
    EngineMetrics(
        kind="tgi",
        prefix="tgi_",
        running=("tgi_batch_current_size",),
        queued=("tgi_queue_size",),
        # A histogram of tokens per finished request: its _sum counts every token generated so far.
        generated=("tgi_request_generated_tokens_sum",),
    ),
    EngineMetrics(
        kind="llama-server",
        prefix="llamacpp:",
        running=("llamacpp:requests_processing",),
        queued=("llamacpp:requests_deferred",),
        kv_ratio=("llamacpp:kv_cache_usage_ratio",),  # older builds; newer ones dropped it (None then)
        generated=("llamacpp:tokens_predicted_total",),
    ),
)
_WANTED = frozenset(
    name
    for e in ENGINES
    for name in (
        *e.running,
        *e.queued,
        *e.kv_ratio,
        *e.generated,
        *e.throughput,
        *((f"{e.ttft}_sum", f"{e.ttft}_count") if e.ttft else ()),
    )
)
MODEL_LABEL = "model_name"
"""The label vLLM and SGLang put the served model's name in."""


@dataclass(frozen=True, slots=True)
class Scrape:
    """One /metrics page: the engine its names show (None: none we know) and the series the tables read."""

    engine: EngineMetrics | None
    samples: Samples


def parse_metrics(page: str) -> Scrape:
    """Parse Prometheus text; FleetError when it cannot be read."""
    from prometheus_client.parser import text_string_to_metric_families

    samples: Samples = {}
    seen: set[str] = set()
    try:
        for family in text_string_to_metric_families(page):
            seen.update(e.kind for e in ENGINES if family.name.startswith(e.prefix))
            for sample in family.samples:
                if sample.name in _WANTED:
                    samples.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    except Exception as exc:  # the parser raises ValueError, IndexError, KeyError... on text it cannot read
        raise FleetError(f"metrics unreadable: {str(exc)[:120] or type(exc).__name__}") from None
    return Scrape(next((e for e in ENGINES if e.kind in seen), None), samples)


def models_from_list(doc: object) -> tuple[str, ...]:
    """The model ids of a `GET /v1/models` answer (at most MAX_MODELS); FleetError when it is not a model list."""
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, list):
        raise FleetError("/v1/models is not an OpenAI-compatible model list")
    ids = (text(m.get("id")) for m in data[:MAX_MODELS] if isinstance(m, dict))
    return tuple(dict.fromkeys(i for i in ids if i is not None))


def _values(samples: Samples, names: Iterable[str], model: str, only: bool) -> list[float]:
    """The series of the first name present that belong to `model` (every series when it is the only model)."""
    for name in names:
        rows = samples.get(name)
        if not rows:
            continue
        mine = [v for labels, v in rows if labels.get(MODEL_LABEL) == model]
        if mine:
            return mine
        if only:
            return [v for _, v in rows]
    return []


def _sum(values: list[float]) -> float | None:
    total = sum(values)
    return total if values and total == total else None  # NaN (an engine with nothing to report) is None


def instances_from_metrics(
    models: Sequence[str], scrape: Scrape | None, *, previous: Mapping[str, tuple[float, float]], now: float
) -> tuple[tuple[FleetInstance, ...], Counters]:
    """One instance per served model with what the metrics say of it, and the counters for the next poll's rate."""
    engine = scrape.engine if scrape is not None else None
    kind = engine.kind if engine is not None else "openai"
    out: list[FleetInstance] = []
    counters: Counters = {}
    only = len(models) == 1
    for model in models:
        if engine is None or scrape is None:
            out.append(FleetInstance(run_id=model, model=model, engine=kind, state="serving"))
            continue
        samples = scrape.samples
        running = _sum(_values(samples, engine.running, model, only))
        queued = _sum(_values(samples, engine.queued, model, only))
        ratios = [r for r in _values(samples, engine.kv_ratio, model, only) if r == r]
        kv = None if not ratios else min(100.0, max(0.0, 100.0 * sum(ratios) / len(ratios)))
        tokens_per_s: float | None = None
        generated = _sum(_values(samples, engine.generated, model, only))
        if generated is not None:
            counters[model] = (now, generated)
            before = previous.get(model)
            if before is not None and now > before[0] and generated >= before[1]:  # a smaller count: a restart
                tokens_per_s = (generated - before[1]) / (now - before[0])
        else:
            tokens_per_s = _sum(_values(samples, engine.throughput, model, only))
        ttft_ms: float | None = None
        if engine.ttft is not None:
            total = _sum(_values(samples, (f"{engine.ttft}_sum",), model, only))
            seen = _sum(_values(samples, (f"{engine.ttft}_count",), model, only))
            if total is not None and seen:
                ttft_ms = 1000.0 * total / seen
        out.append(
            FleetInstance(
                run_id=model,
                model=model,
                engine=kind,
                state="serving",
                tokens_per_s=tokens_per_s,
                running=None if running is None else count(round(running)),
                queued=None if queued is None else count(round(queued)),
                kv_cache_pct=kv,
                ttft_ms=ttft_ms,
            )
        )
    return tuple(out), counters


async def read_openai(
    client: httpx.AsyncClient,
    member: FleetMember,
    key: str | None,
    *,
    previous: Mapping[str, tuple[float, float]],
    now: float,
    max_bytes: int,
) -> tuple[HostView, Counters]:
    """Poll one openai member: its view (latency left None for the caller) and the counters for the next rate.

    FleetError when /v1/models cannot be read or /metrics is over `max_bytes` ("metrics too large").
    """
    import asyncio

    listed, metrics = await asyncio.gather(
        get(client, f"{base_url(member)}/v1/models", key, member.timeout_s, max_bytes, "the model list"),
        get(client, f"{base_url(member)}/metrics", key, member.timeout_s, max_bytes, "metrics"),
    )
    if listed[0] != 200:
        raise FleetError(status_error(listed[0], listed[1], key))
    models = models_from_list(json_body(listed[1], "/v1/models"))
    status, body = metrics
    scrape: Scrape | None = None
    if status == 200:
        scrape = parse_metrics(body.decode("utf-8", "replace"))
    elif status not in (404, 405, 501):  # no /metrics (llama-server without --metrics says 501): numbers None
        raise FleetError("/metrics: " + status_error(status, body, key))
    instances, counters = instances_from_metrics(models, scrape, previous=previous, now=now)
    engine = scrape.engine.kind if scrape is not None and scrape.engine is not None else "openai"
    view = HostView(
        member=member,
        reachable=True,
        polled_at=now,
        last_seen=now,
        engine_kind=engine,
        instances=instances,
        models=models,
    )
    return view, counters
