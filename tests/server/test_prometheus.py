"""GET /metrics in the Prometheus text format: the scrape-time gauges match the manager and the fake GPUs, the
request counters match the requests sent, the routes leave the record fields in the request state, and each
server has its own registry."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from starlette.testclient import TestClient

from engines.adapters.fake import FakeEngine
from engines.config.load import default_config
from engines.config.serve import ServeConfig
from engines.launch import SnapshotSource
from engines.manager import EngineManager
from engines.server.app import ServerContext, create_app
from engines.server.guard import Guard, Receive, RequestRecord, Scope, Send, ServerStats
from engines.server.prom import CONTENT_TYPE_LATEST, MAX_MODELS, PrometheusMetrics
from engines.server.request_state import RecordFields, record_fields
from engines.telemetry.fake import FakeGpuSource, default_gpus
from engines.telemetry.poller import take_snapshot
from engines.telemetry.sources import PsutilSource
from engines.types import ChatMessage, ModelSpec
from tests.engines.server_fixture import Served, served

USER = [{"role": "user", "content": "hi there"}]


def fake_snapshot() -> SnapshotSource:
    gpu, host = FakeGpuSource(), PsutilSource(None)
    return lambda: take_snapshot(gpu, host)


Samples = dict[str, list[Sample]]


def parse(text: str) -> Samples:
    """Every sample by its sample name (`…_total`, `…_bucket`…)."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def value(samples: Samples, metric: str, /, **labels: str) -> float:
    """The one sample of `metric` whose labels include `labels`."""
    found = [s.value for s in samples.get(metric, []) if labels.items() <= s.labels.items()]
    assert len(found) == 1, (metric, labels, samples.get(metric))
    return found[0]


def total(samples: Samples, metric: str, /, **labels: str) -> float:
    return sum(s.value for s in samples.get(metric, []) if labels.items() <= s.labels.items())


def scrape(s: Served) -> Samples:
    reply = httpx.get(s.url.removesuffix("/v1") + "/metrics", timeout=10)
    assert reply.status_code == 200 and reply.headers["content-type"] == CONTENT_TYPE_LATEST
    return parse(reply.text)


def test_gauges_match_the_manager_and_the_fake_gpus() -> None:
    models = {"tiny": FakeEngine(), "second": FakeEngine()}
    with served(models, snapshot=fake_snapshot()) as s:
        for _ in range(3):
            assert httpx.post(f"{s.url}/chat/completions", json={"model": "tiny", "messages": USER}).status_code == 200
        body = {"model": "second", "prompt": "hi", "max_tokens": 3}
        assert httpx.post(f"{s.url}/completions", json=body).status_code == 200
        samples = scrape(s)
        infos = {i.run_id: i for i in s.manager.instances()}
    assert len(infos) == 2
    for run_id, info in infos.items():
        labels = {"run_id": run_id, "model": info.model_id, "engine": "fake"}
        assert value(samples, "llm_tui_instance_requests_served_total", **labels) == info.requests_served
        assert value(samples, "llm_tui_instance_requests_queued", **labels) == info.queued == 0
        assert value(samples, "llm_tui_instance_requests_running", **labels) == info.slots_busy == 0
        assert value(samples, "llm_tui_instance_slots", **labels) == info.slots
        assert value(samples, "llm_tui_instance_ram_bytes", **labels) == info.footprint.ram_bytes
        assert value(samples, "llm_tui_instance_info", device=info.device, **labels) == 1
        assert value(samples, "llm_tui_instance_state", llm_tui_instance_state="ready", **labels) == 1
        assert value(samples, "llm_tui_instance_state", llm_tui_instance_state="busy", **labels) == 0
    assert value(samples, "llm_tui_instance_requests_served_total", model="tiny") == 3
    assert value(samples, "llm_tui_instance_requests_served_total", model="second") == 1
    assert value(samples, "llm_tui_instance_last_tokens_per_second", model="tiny") > 0
    for gpu in default_gpus():
        labels = {"gpu": str(gpu.index), "name": gpu.name or "", "uuid": gpu.uuid or ""}
        assert gpu.utilization_pct is not None
        assert value(samples, "llm_tui_gpu_utilization_ratio", **labels) == pytest.approx(gpu.utilization_pct / 100)
        assert value(samples, "llm_tui_gpu_memory_used_bytes", **labels) == gpu.memory_used_bytes
        assert value(samples, "llm_tui_gpu_memory_total_bytes", **labels) == gpu.memory_total_bytes
        assert value(samples, "llm_tui_gpu_temperature_celsius", **labels) == gpu.temperature_c
        assert value(samples, "llm_tui_gpu_power_watts", **labels) == gpu.power_w
    assert value(samples, "llm_tui_host_memory_total_bytes") > value(samples, "llm_tui_host_memory_used_bytes") > 0
    assert 0 <= value(samples, "llm_tui_host_cpu_utilization_ratio") <= 1
    assert value(samples, "llm_tui_process_resident_memory_bytes") > 0
    assert value(samples, "llm_tui_server_requests_in_flight") == 1  # the scrape itself
    assert value(samples, "llm_tui_server_uptime_seconds") >= 0


def test_queued_requests_show_while_they_wait() -> None:
    gate = threading.Event()
    with served({"tiny": FakeEngine(gate=gate)}) as s:
        run_id = s.run_ids["tiny"]
        handles = [s.manager.submit(run_id, [ChatMessage("user", "hi")]) for _ in range(3)]
        deadline = time.monotonic() + 5
        while s.manager.info(run_id).slots_busy != 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        samples = scrape(s)
        gate.set()
        for handle in handles:
            handle.cancel()
    assert value(samples, "llm_tui_instance_requests_running", model="tiny") == 1
    assert value(samples, "llm_tui_instance_requests_queued", model="tiny") == 2
    assert value(samples, "llm_tui_instance_state", model="tiny", llm_tui_instance_state="busy") == 1


def test_requests_through_the_server_are_counted_by_key_model_and_status() -> None:
    auth = {"Authorization": "Bearer sk-prom-test"}
    with served({"tiny": FakeEngine(), "second": FakeEngine()}, serve=ServeConfig().with_keys("sk-prom-test")) as s:

        def post(path: str, body: dict[str, object]) -> dict[str, Any]:
            reply = httpx.post(s.url + path, json=body, headers=auth, timeout=10)
            assert reply.status_code == 200, reply.text
            usage: dict[str, Any] = reply.json()["usage"]
            return usage

        chats = [post("/chat/completions", {"model": "tiny", "messages": USER}) for _ in range(2)]
        streamed = httpx.post(
            f"{s.url}/chat/completions",
            json={"model": "tiny", "messages": USER, "stream": True, "stream_options": {"include_usage": True}},
            headers=auth,
        )
        assert streamed.status_code == 200
        completion = post("/completions", {"model": "second", "prompt": "hi", "max_tokens": 3})
        embedding = post("/embeddings", {"model": "tiny", "input": "some words"})
        missing = httpx.post(f"{s.url}/chat/completions", json={"model": "nope", "messages": USER}, headers=auth)
        assert missing.status_code == 404
        text = httpx.get(s.url.removesuffix("/v1") + "/metrics", headers=auth).text
    samples = parse(text)
    key = "key-1"  # the name of the first unnamed key
    assert value(samples, "llm_tui_requests_total", key=key, model="tiny", status="200") == 4
    assert value(samples, "llm_tui_requests_total", key=key, model="second", status="200") == 1
    assert value(samples, "llm_tui_requests_total", key=key, model="other", status="404") == 1  # never served
    tiny_prompt = 3 * chats[0]["prompt_tokens"] + embedding["prompt_tokens"]
    assert value(samples, "llm_tui_prompt_tokens_total", key=key, model="tiny") == tiny_prompt
    tiny_completion = 3 * chats[0]["completion_tokens"]
    assert chats[0] == chats[1] and value(samples, "llm_tui_completion_tokens_total", model="tiny") == tiny_completion
    assert value(samples, "llm_tui_prompt_tokens_total", model="second") == completion["prompt_tokens"]
    assert value(samples, "llm_tui_completion_tokens_total", model="second") == completion["completion_tokens"]
    assert value(samples, "llm_tui_time_to_first_token_seconds_count", model="tiny") == 3  # the embedding has none
    assert value(samples, "llm_tui_request_duration_seconds_count", model="tiny") == 4


def test_request_counters_match_the_records() -> None:
    stats = ServerStats()
    metrics = PrometheusMetrics(lambda: [], None, stats, time.time())
    sent = [
        RequestRecord("POST", "/v1/chat/completions", 200, 120.0, "-", key="ci", model="tiny", prompt_tokens=7,
                      completion_tokens=5, ttft_ms=30.0),
        RequestRecord("POST", "/v1/chat/completions", 200, 2400.0, "-", key="ci", model="tiny", prompt_tokens=3,
                      completion_tokens=9, ttft_ms=700.0),
        RequestRecord("POST", "/v1/embeddings", 200, 10.0, "-", key="app", model="emb", prompt_tokens=11,
                      completion_tokens=0),
        RequestRecord("POST", "/v1/chat/completions", 503, 5.0, "-", key="ci", model="tiny"),
        RequestRecord("POST", "/v1/chat/completions", 404, 1.0, "-", key="ci", model="typo-never-served"),
        RequestRecord("GET", "/v1/models", 200, 1.0, "-"),
    ]  # fmt: skip
    for record in sent:
        stats.begin()
        stats.end(record)
    samples = parse(metrics.render().decode())
    assert value(samples, "llm_tui_requests_total", key="ci", model="tiny", status="200") == 2
    assert value(samples, "llm_tui_requests_total", key="ci", model="tiny", status="503") == 1
    assert value(samples, "llm_tui_requests_total", key="app", model="emb", status="200") == 1
    assert value(samples, "llm_tui_requests_total", key="ci", model="other", status="404") == 1  # not a label
    assert value(samples, "llm_tui_requests_total", key="", model="", status="200") == 1
    assert total(samples, "llm_tui_requests_total") == len(sent)
    assert value(samples, "llm_tui_prompt_tokens_total", key="ci", model="tiny") == 10
    assert value(samples, "llm_tui_completion_tokens_total", key="ci", model="tiny") == 14
    assert value(samples, "llm_tui_prompt_tokens_total", key="app", model="emb") == 11
    assert total(samples, "llm_tui_completion_tokens_total", key="app") == 0  # an embedding generates none
    assert value(samples, "llm_tui_time_to_first_token_seconds_count", model="tiny") == 2
    assert value(samples, "llm_tui_time_to_first_token_seconds_sum", model="tiny") == pytest.approx(0.73)
    assert value(samples, "llm_tui_time_to_first_token_seconds_bucket", model="tiny", le="0.05") == 1
    assert value(samples, "llm_tui_time_to_first_token_seconds_bucket", model="tiny", le="0.75") == 2
    assert value(samples, "llm_tui_request_duration_seconds_count", model="tiny") == 2  # the 503 is not timed
    assert value(samples, "llm_tui_request_duration_seconds_bucket", model="tiny", le="2.5") == 2
    assert value(samples, "llm_tui_request_duration_seconds_bucket", model="tiny", le="1.0") == 1
    assert value(samples, "llm_tui_request_duration_seconds_count", model="emb") == 1


def test_model_labels_are_capped() -> None:
    stats = ServerStats()
    metrics = PrometheusMetrics(lambda: [], None, stats, time.time())
    for i in range(MAX_MODELS + 5):
        stats.begin()
        stats.end(RequestRecord("POST", "/v1/embeddings", 200, 1.0, "-", model=f"m{i}"))
    samples = parse(metrics.render().decode())
    models = {s.labels["model"] for s in samples["llm_tui_requests_total"]}
    assert len(models) == MAX_MODELS + 1 and "other" in models
    assert value(samples, "llm_tui_requests_total", model="other") == 5


def test_each_server_has_its_own_registry() -> None:
    with served() as first, served() as second:
        httpx.post(f"{first.url}/chat/completions", json={"model": "tiny", "messages": USER})
        a, b = scrape(first), scrape(second)
    assert value(a, "llm_tui_instance_requests_served_total", model="tiny") == 1
    assert value(b, "llm_tui_instance_requests_served_total", model="tiny") == 0


class Capture:
    """Wraps the guard's app: the record fields the routes left in the request state, per path."""

    def __init__(self, guard: Guard) -> None:
        self.inner = guard.app
        self.seen: list[tuple[str, RecordFields]] = []
        guard.app = self

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.inner(scope, receive, send)
        self.seen.append((scope["path"], record_fields(scope.get("state", {}))))


@pytest.fixture
def captured() -> Iterator[tuple[TestClient, Capture, Callable[[], Any]]]:
    manager = EngineManager()
    manager.start(ModelSpec("tiny", format="fake", engines=("fake",)), engine=FakeEngine())
    app = create_app(ServerContext(manager, default_config(), ServeConfig()))
    assert isinstance(app, Guard)
    capture = Capture(app)
    try:
        with TestClient(app, base_url="http://127.0.0.1") as client:
            yield client, capture, manager.instances
    finally:
        manager.close()


def test_routes_leave_model_tokens_and_ttft_for_the_record(
    captured: tuple[TestClient, Capture, Callable[[], Any]],
) -> None:
    client, capture, _ = captured
    whole = client.post("/v1/chat/completions", json={"model": "tiny", "messages": USER}).json()
    streamed = client.post(
        "/v1/chat/completions",
        json={"model": "tiny", "messages": USER, "stream": True, "stream_options": {"include_usage": True}},
    )
    assert streamed.status_code == 200 and streamed.text.endswith("data: [DONE]\n\n")
    embedded = client.post("/v1/embeddings", json={"model": "tiny", "input": ["a b", "c"]}).json()
    missing = client.post("/v1/chat/completions", json={"model": "nope", "messages": USER})
    assert missing.status_code == 404
    (chat_path, chat), (_, stream), (_, embed), (_, failed) = capture.seen
    assert chat_path == "/v1/chat/completions"
    usage = whole["usage"]
    assert chat["model"] == "tiny" and chat["prompt_tokens"] == usage["prompt_tokens"]
    assert chat["completion_tokens"] == usage["completion_tokens"] > 0 and chat["ttft_ms"] >= 0
    assert stream["prompt_tokens"] == usage["prompt_tokens"] and stream["completion_tokens"] > 0
    assert stream["model"] == "tiny" and stream["ttft_ms"] >= 0
    assert embed == {"model": "tiny", "prompt_tokens": embedded["usage"]["prompt_tokens"], "completion_tokens": 0}
    assert failed == {"model": "nope"}


def test_record_fields_takes_only_well_typed_values() -> None:
    state = {"model": "m", "prompt_tokens": 3, "completion_tokens": True, "ttft_ms": 12, "error": "x"}
    assert record_fields(state) == {"model": "m", "prompt_tokens": 3, "ttft_ms": 12.0}
    assert record_fields({"model": 5, "prompt_tokens": "3"}) == {}


def test_a_scrape_is_cheap() -> None:
    """Two fake instances and two fake GPUs: the render (telemetry included) takes well under 50 ms."""
    manager = EngineManager()
    for name in ("a", "b"):
        manager.start(ModelSpec(name, format="fake", engines=("fake",)), engine=FakeEngine())
    try:
        ctx = ServerContext(manager, default_config(), ServeConfig(), snapshot=fake_snapshot())
        ctx.prometheus.render()  # warm
        rounds = 200
        started = time.perf_counter()
        for _ in range(rounds):
            text = ctx.prometheus.render()
        per_scrape_ms = (time.perf_counter() - started) * 1000 / rounds
    finally:
        manager.close()
    print(f"scrape: {per_scrape_ms:.2f} ms, {len(text)} bytes")
    assert b"llm_tui_gpu_power_watts" in text
    assert per_scrape_ms < 50
