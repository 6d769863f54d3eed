"""Canned fleet views for the fleet screen's tests and snapshots: four hosts of every kind and state, and a poller
that hands them out instead of polling (the screen's polling of real servers is tests/fleet/)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import pytest

from engines.fleet.types import FleetInstance, FleetMember, HostView
from engines.telemetry.fake import GIB
from engines.telemetry.snapshot import GpuStats

NOW = 1_800_000_000.0
A = FleetMember("gpu-a", "http://127.0.0.1:9", key_env="GPU_A_KEY")
B = FleetMember("gpu-b", "http://127.0.0.1:9", key_env="GPU_B_KEY")
VLLM = FleetMember("vllm-1", "http://127.0.0.1:9", kind="openai")
C = FleetMember("gpu-c", "http://127.0.0.1:9")
MEMBERS = (A, B, VLLM, C)


def a100(index: int, used_gib: int) -> GpuStats:
    return GpuStats(index, "NVIDIA A100-SXM4-80GB", None, 71.0, used_gib * GIB, 80 * GIB, 64.0, 310.0)


def views() -> list[HostView]:
    """gpu-a: two A100s, two models; gpu-b: one RTX 4090, a busy model with a queue; vllm-1: a vLLM server;
    gpu-c: down for 8 s, as last seen."""
    return [
        HostView(
            A,
            True,
            NOW,
            NOW,
            12.0,
            engine_kind="llm-tui",
            version="0.1.0",
            hostname="gpu-a",
            gpus=(a100(0, 60), a100(1, 20)),
            instances=(
                FleetInstance(
                    "r1-llama.cpp", "qwen2.5-32b-q4_k_m", "llama.cpp", "ready", "cuda:0", 21 * GIB, None, 38.2, 0, 0
                ),
                FleetInstance(
                    "r2-transformers", "gemma-3-4b-it", "transformers", "busy", "cuda:1", 9 * GIB, None, 61.0, 1, 0
                ),
            ),
            models=("gemma-3-270m", "gemma-3-4b-it", "qwen2.5-32b-q4_k_m"),
            cpu_pct=22.0,
            ram_used_bytes=96 * GIB,
            ram_total_bytes=512 * GIB,
        ),
        HostView(
            B,
            True,
            NOW,
            NOW,
            31.0,
            engine_kind="llm-tui",
            version="0.1.0",
            gpus=(GpuStats(0, "NVIDIA GeForce RTX 4090", None, 97.0, 20 * GIB, 24 * GIB, 71.0, 402.0),),
            instances=(
                FleetInstance(
                    "r1-llama.cpp", "llama-3.1-8b-q8_0", "llama.cpp", "busy", "cuda:0", 9 * GIB, None, 84.5, 4, 6
                ),
            ),
            models=("llama-3.1-8b-q8_0", "mistral-7b-q4_k_m"),
        ),
        HostView(
            VLLM,
            True,
            NOW,
            NOW,
            18.0,
            engine_kind="vllm",
            instances=(
                FleetInstance(
                    "meta-llama/Llama-3.1-70B-Instruct",
                    "meta-llama/Llama-3.1-70B-Instruct",
                    "vllm",
                    "serving",
                    tokens_per_s=412.0,
                    running=12,
                    queued=3,
                    kv_cache_pct=37.0,
                    ttft_ms=182.0,
                ),
            ),
        ),
        HostView(
            C,
            False,
            NOW,
            NOW - 8,
            None,
            "timed out after 2.0 s",
            engine_kind="llm-tui",
            gpus=(GpuStats(0, "NVIDIA L4", None, 0.0, 2 * GIB, 24 * GIB),),
            instances=(FleetInstance("r3-llama.cpp", "phi-4-mini-q4_k_m", "llama.cpp", "ready", "cuda:0", 3 * GIB),),
        ),
    ]


LOCAL = HostView(
    FleetMember("local", ""),
    True,
    NOW,
    NOW,
    local=True,
    engine_kind="llm-tui",
    hostname="laptop",
    instances=(FleetInstance("r1-fake", "fake-model", "fake", "ready", "cpu", None, 120 * 1024 * 1024, 52.0, 0, 0),),
)


class CannedPoller:
    """FleetPoller's shape, answering `views()` (or what a test sets in `answers`)."""

    polls = 0
    answers: list[HostView] | None = None

    def __init__(self, members: Sequence[FleetMember], env: Mapping[str, str], **_: object) -> None:
        self.members = tuple(members)

    async def poll(self) -> list[HostView]:
        type(self).polls += 1
        chosen = type(self).answers if type(self).answers is not None else views()
        by_name = {v.member.name: v for v in chosen}
        return [by_name.get(m.name) or HostView(m, False, NOW, error="connection refused") for m in self.members]

    async def aclose(self) -> None:
        pass


def use_canned_fleet(monkeypatch: pytest.MonkeyPatch, answers: list[HostView] | None = None) -> None:
    """The fleet screen polls CannedPoller and shows LOCAL as this box."""
    import engines.fleet.poller as poller
    import tui.screens.fleet as fleet

    CannedPoller.polls = 0
    CannedPoller.answers = answers
    monkeypatch.setattr(poller, "FleetPoller", CannedPoller)
    monkeypatch.setattr(fleet.FleetScreen, "_local_view", lambda self: LOCAL)


def gone(view: HostView, error: str = "connection refused") -> HostView:
    """The same host after a failed poll: last data kept."""
    return replace(view, reachable=False, error=error)
