"""The status document (GET /v1/llm-tui/status), the JSON counts (GET /v1/llm-tui/metrics) and the admin routes
that list, launch and stop instances, over the fake engine and fake GPUs."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from engines.adapters.fake import FakeEngine
from engines.config.load import default_config
from engines.config.serve import ServeConfig
from engines.fleet.status import INSTANCES_PATH, METRICS_JSON_PATH, SCHEMA, STATUS_PATH
from engines.manager import EngineManager
from engines.server.app import ServerContext
from engines.server.status_routes import status_of
from engines.telemetry.fake import FakeGpuSource, default_gpus
from engines.telemetry.poller import take_snapshot
from engines.telemetry.snapshot import HostStats, Snapshot
from engines.telemetry.sources import PsutilSource
from engines.types import ModelSpec
from tests.engines.gguf_corpus import write_gguf
from tests.engines.server_fixture import Served, served

USER = [{"role": "user", "content": "hi"}]
GIB = 1 << 30


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    """A models folder with one small GGUF (listed as "little"), and a GGUF outside it."""
    write_gguf(tmp_path / "models" / "little.gguf", name="little")
    write_gguf(tmp_path / "outside" / "stranger.gguf", name="stranger")
    return tmp_path / "models"


def fake_snapshot() -> Snapshot:
    return take_snapshot(FakeGpuSource(), PsutilSource(None))


def root(s: Served) -> str:
    return s.url.removesuffix("/v1")


def test_status_document_has_instances_gpus_models_and_counts(models_dir: Path) -> None:
    models = {"tiny": FakeEngine(), "other": FakeEngine()}
    with served(models, models_dir=models_dir, snapshot=fake_snapshot) as s:
        httpx.post(f"{s.url}/chat/completions", json={"model": "tiny", "messages": USER})
        reply = httpx.get(root(s) + STATUS_PATH)
        expected = {i.run_id: i for i in s.manager.instances()}
    assert reply.status_code == 200
    doc = reply.json()
    assert doc["schema"] == SCHEMA
    assert doc["llm_tui"]["uptime_s"] >= 0 and doc["llm_tui"]["pid"] > 0
    assert doc["models"] == ["little"]
    rows = {row["run_id"]: row for row in doc["instances"]}
    assert set(rows) == set(expected)
    for run_id, info in expected.items():
        row = rows[run_id]
        assert (row["model"], row["engine"], row["state"]) == (info.model_id, "fake", "ready")
        assert row["requests_served"] == info.requests_served
    assert rows[s.run_ids["tiny"]]["requests_served"] == 1
    gpus = doc["telemetry"]["gpus"]
    assert [(g["index"], g["name"], g["memory_total_bytes"]) for g in gpus] == [
        (g.index, g.name, g.memory_total_bytes) for g in default_gpus()
    ]
    assert doc["server"]["requests"] == 1 and doc["server"]["in_flight"] == 1  # the chat, then this request


def test_status_without_telemetry_says_null() -> None:
    with served() as s:
        doc = httpx.get(root(s) + STATUS_PATH).json()
    assert doc["telemetry"] is None and doc["instances"][0]["model"] == "tiny"


def test_metrics_json_moved_to_its_own_path() -> None:
    with served(snapshot=fake_snapshot) as s:
        httpx.post(f"{s.url}/chat/completions", json={"model": "tiny", "messages": USER})
        body = httpx.get(root(s) + METRICS_JSON_PATH).json()
    assert body["instances"][0]["requests_served"] == 1 and body["server"]["requests"] == 1
    assert len(body["telemetry"]["gpus"]) == 2


def test_status_is_cheap(isolated_dirs: Path, models_dir: Path) -> None:
    """Two fake instances, two fake GPUs, the models listing cached (it is read again every 10 s): well under 50 ms
    a document."""
    manager = EngineManager()
    for name in ("a", "b"):
        manager.start(ModelSpec(name, format="fake", engines=("fake",)), engine=FakeEngine())
    gpu, host = FakeGpuSource(), PsutilSource(None)
    try:
        config = replace(default_config(), models_dir=models_dir)
        ctx = ServerContext(manager, config, ServeConfig(), snapshot=lambda: take_snapshot(gpu, host))
        started = time.perf_counter()
        status_of(ctx)  # lists the models folder
        first_ms = (time.perf_counter() - started) * 1000
        rounds = 200
        started = time.perf_counter()
        for _ in range(rounds):
            doc = status_of(ctx)
        per_doc_ms = (time.perf_counter() - started) * 1000 / rounds
    finally:
        manager.close()
    print(f"status: {per_doc_ms:.2f} ms ({first_ms:.1f} ms with the listing)")
    assert len(doc["instances"]) == 2 and doc["models"] == ["little"]  # type: ignore[arg-type]
    assert per_doc_ms < 50


def test_admin_lists_launches_and_stops(models_dir: Path) -> None:
    # Launch-on-demand stays off: the admin route launches regardless (the guard keeps it to admin keys).
    with served({}, models_dir=models_dir, manager=EngineManager()) as s:
        base = root(s) + INSTANCES_PATH
        assert httpx.get(base).json() == {"object": "list", "data": []}
        launched = httpx.post(base, json={"model": "little", "engine": "fake", "n_ctx": 512}, timeout=30)
        assert launched.status_code == 201, launched.text
        row = launched.json()["instance"]
        assert (row["model"], row["engine"], row["state"]) == ("little", "fake", "ready")
        run_id = row["run_id"]
        assert s.manager.info(run_id).options.n_ctx == 512
        listed = httpx.get(base).json()["data"]
        assert [r["run_id"] for r in listed] == [run_id]
        chat = httpx.post(f"{s.url}/chat/completions", json={"model": run_id, "messages": USER}, timeout=30)
        assert chat.status_code == 200
        by_file = httpx.post(base, json={"model": "little.gguf", "engine": "fake"}, timeout=30)
        assert by_file.status_code == 201 and by_file.json()["instance"]["run_id"] != run_id
        stopped = httpx.delete(f"{base}/{run_id}")
        assert stopped.status_code == 200 and stopped.json() == {"run_id": run_id, "stopped": True}
        assert run_id not in {i.run_id for i in s.manager.instances()}
        again = httpx.delete(f"{base}/{run_id}")
        assert again.status_code == 404 and again.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"model": "no-such-model"}, 404, "model"),
        ({"model": "../outside/stranger.gguf", "engine": "fake"}, 404, "model"),
        ({"model": "little", "engine": "no-such-engine"}, 400, "engine"),
        ({"model": "little", "n_ctx": 0}, 400, "n_ctx"),
        ({"model": "little", "n_ctx": 1_048_577}, 400, "n_ctx"),
        ({"model": "m" * 513}, 400, "model"),
        ({"model": "little", "ctx": 512}, 400, "ctx"),
    ],
)
def test_admin_launch_refusals(models_dir: Path, body: dict[str, object], status: int, param: str) -> None:
    with served({}, models_dir=models_dir, manager=EngineManager()) as s:
        reply = httpx.post(root(s) + INSTANCES_PATH, json=body, timeout=30)
        left = s.manager.instances()
    assert reply.status_code == status, reply.text
    assert param in str(reply.json()["error"]["param"])
    assert left == []


def test_admin_launch_checks_memory(models_dir: Path) -> None:
    tiny_host = Snapshot(time.time(), host=HostStats(ram_total_bytes=GIB, ram_available_bytes=1 << 10))
    with served({}, models_dir=models_dir, manager=EngineManager(), snapshot=lambda: tiny_host) as s:
        reply = httpx.post(root(s) + INSTANCES_PATH, json={"model": "little", "engine": "fake"}, timeout=30)
        left = s.manager.instances()
    assert reply.status_code == 503, reply.text
    assert reply.json()["error"]["code"] == "insufficient_memory" and left == []
