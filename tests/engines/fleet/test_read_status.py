"""Reading status documents: this machine's and another's read by the same code; a document from elsewhere checked
field by field, its lists bounded, and nothing but FleetError raised."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engines.fleet.errors import FleetError
from engines.fleet.read_status import MAX_GPUS, MAX_INSTANCES, MAX_MODELS, MAX_TEXT, host_view_from_status, local_view
from engines.fleet.status import status_document
from engines.fleet.types import FleetMember
from tests.engines.fleet.fake_status import GIB, fake_instance, fake_snapshot

BOX = FleetMember("box", "http://box:8000")


def document() -> dict[str, Any]:
    doc = status_document([fake_instance("r1", "gemma-3-270m")], fake_snapshot(), ["qwen3-0.6b", "gemma-3-270m"])
    return json.loads(json.dumps(doc))  # as it arrives over the wire


def test_a_real_document_is_read_whole() -> None:
    view = host_view_from_status(BOX, document(), polled_at=100.0, latency_ms=3.5)
    assert view.reachable and view.error is None and not view.local
    assert (view.polled_at, view.last_seen, view.latency_ms, view.engine_kind) == (100.0, 100.0, 3.5, "llm-tui")
    assert view.version and view.hostname
    assert [g.index for g in view.gpus] == [0, 1]
    assert view.gpus[0].name == "NVIDIA RTX 4090 (fake)" and view.gpus[0].memory_free_bytes == 10 * GIB
    assert view.free_vram_bytes == 10 * GIB + 11 * GIB
    (inst,) = view.instances
    assert (inst.run_id, inst.model, inst.engine, inst.state, inst.device) == (
        "r1",
        "gemma-3-270m",
        "llama.cpp",
        "ready",
        "cuda:0",
    )
    assert (inst.vram_bytes, inst.ram_bytes, inst.tokens_per_s, inst.running, inst.queued) == (3 * GIB, GIB, 48.5, 2, 1)
    assert view.models == ("gemma-3-270m", "qwen3-0.6b")
    assert (view.cpu_pct, view.ram_used_bytes, view.ram_total_bytes) == (23.5, 20 * GIB, 64 * GIB)


def test_local_view_goes_through_the_same_document() -> None:
    view = local_view([fake_instance("r1", "gemma-3-270m")], fake_snapshot(), ["m"], now=5.0)
    remote = host_view_from_status(view.member, document(), polled_at=5.0, latency_ms=None, local=True)
    assert view.local and view.member.name == "local" and view.member.url == ""
    assert view.instances == remote.instances and view.gpus == remote.gpus
    assert view.models == ("m",) and view.last_seen == 5.0


def test_local_view_without_telemetry() -> None:
    view = local_view([], None, [])
    assert view.reachable and view.gpus == () and view.cpu_pct is None and view.free_vram_bytes is None


@pytest.mark.parametrize("doc", [None, [], "text", 3, {}, {"schema": "1"}, {"schema": 0}, {"schema": True}])
def test_not_a_document(doc: object) -> None:
    with pytest.raises(FleetError, match="host box: the answer is not an llm-tui status document"):
        host_view_from_status(BOX, doc, polled_at=1.0, latency_ms=None)


def test_wrong_types_become_none() -> None:
    doc = {
        "schema": 1,
        "llm_tui": {"version": 3, "hostname": ["x"]},
        "telemetry": {
            "gpus": [{"index": "0", "name": 5, "utilization_pct": "high", "memory_used_bytes": -1,
                      "memory_total_bytes": 1.5, "temperature_c": float("nan"), "power_w": True}, "junk"],
            "host": {"cpu_pct": None, "ram_used_bytes": "1", "ram_total_bytes": 2.0},
        },
        "instances": [{"run_id": "a", "model": None, "state": 4, "vram_bytes": "big", "queued": -2}, {"model": "x"}, 7],
        "models": ["ok", 3, None, ""],
    }  # fmt: skip
    view = host_view_from_status(BOX, doc, polled_at=1.0, latency_ms=None)
    assert view.version is None and view.hostname is None
    g0, g1 = view.gpus
    assert (g0.index, g0.name, g0.utilization_pct, g0.memory_used_bytes, g0.memory_total_bytes) == (
        0,
        None,
        None,
        None,
        None,
    )
    assert (g0.temperature_c, g0.power_w, g1.index) == (None, None, 1)
    (inst,) = view.instances  # entries without a run id are left out
    assert (inst.run_id, inst.model, inst.engine, inst.state, inst.vram_bytes, inst.queued) == (
        "a",
        "?",
        "?",
        "unknown",
        None,
        None,
    )
    assert view.models == ("ok",)
    assert (view.cpu_pct, view.ram_used_bytes, view.ram_total_bytes) == (None, None, 2)


def test_huge_documents_are_bounded() -> None:
    long = "x" * 100_000
    doc = {
        "schema": 1,
        "llm_tui": {"version": long, "hostname": long},
        "telemetry": {"gpus": [{"index": i, "name": long} for i in range(1000)]},
        "instances": [{"run_id": f"r{i}", "model": long, "error": long} for i in range(10_000)],
        "models": [f"m{i}" for i in range(100_000)],
    }
    view = host_view_from_status(BOX, doc, polled_at=1.0, latency_ms=None)
    assert len(view.gpus) == MAX_GPUS and len(view.instances) == MAX_INSTANCES and len(view.models) == MAX_MODELS
    assert len(view.version or "") == MAX_TEXT and len(view.hostname or "") == MAX_TEXT
    assert all(len(i.model) == MAX_TEXT and len(i.error or "") == MAX_TEXT for i in view.instances)
    assert all(len(g.name or "") == MAX_TEXT for g in view.gpus)


def test_a_newer_schema_is_read_and_said() -> None:
    doc = document() | {"schema": 99, "something_new": {"a": 1}}
    view = host_view_from_status(BOX, doc, polled_at=1.0, latency_ms=None)
    assert view.reachable and view.instances and view.error == "status schema 99 is newer than this llm-tui's (1)"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=40,
)
keys = st.sampled_from(["schema", "llm_tui", "telemetry", "instances", "models", "gpus", "host", "run_id", "index"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(keys, json_values, max_size=6), st.integers(min_value=1, max_value=3))
def test_any_json_gives_a_view_or_fleet_error(doc: dict[str, Any], schema: int) -> None:
    for candidate in (doc, {**doc, "schema": schema}):
        try:
            view = host_view_from_status(BOX, candidate, polled_at=1.0, latency_ms=None)
        except FleetError:
            continue
        for gpu in view.gpus:
            assert gpu.utilization_pct is None or math.isfinite(gpu.utilization_pct)
