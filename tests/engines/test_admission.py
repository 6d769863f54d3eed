"""Memory admission: admit, refuse with the numbers, or offer the least recently used idle instances."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from engines.adapters.fake import FakeEngine
from engines.admission import (
    MARGIN_MAX_BYTES,
    MARGIN_MIN_BYTES,
    Need,
    NotEnoughMemory,
    Verdict,
    admit,
    gpu_index_of,
    margin_bytes,
)
from engines.catalog.fit import estimate
from engines.config.load import Config
from engines.errors import InsufficientMemory
from engines.launch import estimate_need, launch, unload_and_launch
from engines.manager import EngineManager
from engines.telemetry.fake import FakeGpuSource
from engines.telemetry.snapshot import HostStats, Snapshot
from engines.types import Footprint, InstanceInfo, InstanceState, LaunchOptions, ModelSpec
from tests.engines.gguf_corpus import write_gguf

MB = 10**6
GB = 10**9
TOTAL = 32 * GB  # margin: MARGIN_MAX_BYTES


def snap(ram_free: int | None, *, gpus: bool = False) -> Snapshot:
    host = HostStats(ram_available_bytes=ram_free, ram_total_bytes=TOTAL if ram_free is not None else None)
    return Snapshot(taken_at=0.0, gpus=FakeGpuSource().sample({})[0] if gpus else (), host=host)


def inst(
    run_id: str,
    ram: int | None,
    *,
    idle_s: float = 60.0,
    state: InstanceState = InstanceState.READY,
    pending: int = 0,
    vram: int | None = None,
    device: str = "cpu",
    mapped: int | None = None,
) -> InstanceInfo:
    return InstanceInfo(
        run_id=run_id,
        model_id=f"model-{run_id}",
        engine="fake",
        device=device,
        state=state,
        footprint=Footprint(ram_bytes=ram, vram_bytes=vram, mapped_bytes=mapped),
        idle_s=idle_s if state is InstanceState.READY and not pending else 0.0,
        pending_requests=pending,
    )


def test_a_launch_that_fits_is_admitted() -> None:
    decision = admit(Need("new", 2 * GB), snap(8 * GB), [])
    assert decision.verdict is Verdict.ADMIT and decision.admitted
    (ram,) = decision.checks
    assert ram.device == "RAM" and ram.needed_bytes == 2 * GB and ram.free_bytes == 8 * GB
    assert decision.reason.startswith("fits: needs 2.0 GB RAM") and "8.0 GB free" in decision.reason
    assert decision.unload_run_ids == ()


def test_the_margin_is_kept_free() -> None:
    assert margin_bytes(None) == MARGIN_MIN_BYTES
    assert margin_bytes(1 * GB) == MARGIN_MIN_BYTES
    assert margin_bytes(10 * GB) == round(10 * GB * 0.05)
    assert margin_bytes(TOTAL) == MARGIN_MAX_BYTES
    just_under = 8 * GB - MARGIN_MAX_BYTES + 1
    assert not admit(Need("new", just_under), snap(8 * GB), []).admitted
    assert admit(Need("new", just_under - 1), snap(8 * GB), []).admitted


def test_a_launch_that_does_not_fit_is_refused_with_the_numbers() -> None:
    running = [inst("r1", 400 * MB, idle_s=12 * 60)]
    decision = admit(Need("big", int(5.9 * GB)), snap(int(3.1 * GB)), running)
    assert decision.verdict is Verdict.REFUSE and not decision.admitted
    assert decision.reason == (
        "needs 5.9 GB RAM (+1.1 GB kept free), 3.1 GB free; "
        "unloading model-r1 (r1, idle 12 min, 400 MB) would not make room"
    )
    assert decision.unload_run_ids == ()  # nothing to do that would help
    assert decision.checks[0].shortfall_bytes > 0


def test_refused_with_nothing_idle_says_so_and_counts_the_busy() -> None:
    running = [inst("r1", 4 * GB, state=InstanceState.BUSY), inst("r2", 4 * GB, pending=1)]
    decision = admit(Need("big", 6 * GB), snap(3 * GB), running)
    assert decision.verdict is Verdict.REFUSE
    assert decision.reason.endswith("no idle instance to unload would make room")
    assert "2 busy or loading instances not counted" in decision.notes


def test_the_offer_is_the_oldest_idle_instances_and_skips_busy_ones() -> None:
    running = [
        inst("r1", 3 * GB, idle_s=10),
        inst("r2", 2 * GB, idle_s=600),  # least recently used
        inst("r3", 9 * GB, state=InstanceState.BUSY),  # big, but busy
        inst("r4", 1 * GB, idle_s=300),
        inst("r5", 9 * GB, pending=2),  # queued requests: not idle
        inst("r6", 4 * GB, state=InstanceState.LOADING),
    ]
    # Short by 2.5 GB (+ margin): r2 (2 GB) is not enough, r2 + r4 (3 GB) is; r1 stays.
    decision = admit(Need("new", 5 * GB), snap(int(2.5 * GB) + MARGIN_MAX_BYTES), running)
    assert decision.verdict is Verdict.UNLOAD
    assert decision.unload_run_ids == ("r2", "r4")
    assert decision.checks[0].freed_bytes == 3 * GB
    assert "unload model-r2 (r2, idle 10 min, 2.0 GB) and model-r4 (r4, idle 5 min, 1.0 GB)" in decision.reason
    assert decision.reason.startswith("needs 5.0 GB RAM")


def test_unknown_footprints_count_as_freeing_nothing() -> None:
    running = [inst("r1", None, idle_s=900), inst("r2", 2 * GB, idle_s=100)]
    decision = admit(Need("new", 2 * GB), snap(1 * GB + MARGIN_MAX_BYTES), running)
    assert decision.verdict is Verdict.UNLOAD and decision.unload_run_ids == ("r2",)
    assert "model-r1 (r1): footprint unknown, counted as freeing 0" in decision.notes


def test_unload_and_retry_then_admits() -> None:
    running = [inst("r1", 3 * GB, idle_s=500), inst("r2", 3 * GB, idle_s=50)]
    free = 3 * GB
    decision = admit(Need("new", 4 * GB), snap(free), running)
    assert decision.unload_run_ids == ("r1",)
    left = [i for i in running if i.run_id not in decision.unload_run_ids]
    retry = admit(Need("new", 4 * GB), snap(free + 3 * GB), left)
    assert retry.admitted, retry.reason


def test_model_files_mapped_by_running_instances_are_not_free() -> None:
    # 6 GB "available" counts the 3 GB of r1's mmap'd weights, which r1 needs resident.
    running = [inst("r1", 4 * GB, mapped=3 * GB, idle_s=100)]
    decision = admit(Need("new", 4 * GB), snap(6 * GB), running)
    assert decision.checks[0].free_bytes == 3 * GB
    assert any("less 3.0 GB of model files mapped" in n for n in decision.notes)
    assert decision.unload_run_ids == ("r1",)


@pytest.mark.parametrize("snapshot", [None, snap(None)])
def test_unknown_free_ram_admits_with_a_note(snapshot: Snapshot | None) -> None:
    decision = admit(Need("new", 500 * GB), snapshot, [inst("r1", GB)])
    assert decision.admitted
    assert decision.checks[0].free_bytes is None
    assert "free RAM unknown (telemetry N/A): admitted without a RAM check" in decision.notes


def test_vram_is_checked_on_the_gpu_it_goes_to() -> None:
    snapshot = snap(64 * GB, gpus=True)  # GPU 0: 10 GiB free of 24, GPU 1: 11 GiB free of 12
    need0 = Need("new", 1 * GB, vram_bytes=12 * GB, gpu_index=0)
    need1 = Need("new", 1 * GB, vram_bytes=10 * GB, gpu_index=1)
    assert not admit(need0, snapshot, []).admitted
    refused = admit(need0, snapshot, [])
    assert refused.reason.startswith("needs 12.0 GB GPU 0 (+1.1 GB kept free), 10.7 GB free")
    assert admit(need1, snapshot, []).admitted
    # VRAM held on GPU 1 does not help GPU 0; the GPU 0 instance is offered although it is newer.
    running = [
        inst("r1", GB, vram=8 * GB, device="cuda:1", idle_s=900),
        inst("r2", GB, vram=4 * GB, device="cuda:0", idle_s=60),
    ]
    decision = admit(need0, snapshot, running)
    assert decision.verdict is Verdict.UNLOAD and decision.unload_run_ids == ("r2",)
    gpu_check = next(c for c in decision.checks if c.device == "GPU 0")
    assert gpu_check.freed_bytes == 4 * GB
    assert "4.0 GB on GPU 0" in decision.reason


def test_a_gpu_telemetry_cannot_see_admits_with_a_note() -> None:
    decision = admit(Need("new", GB, vram_bytes=50 * GB, gpu_index=3), snap(64 * GB, gpus=True), [])
    assert decision.admitted
    assert "GPU 3 free memory unknown (not seen by telemetry): admitted without a VRAM check" in decision.notes


def test_gpu_index_of_device_names() -> None:
    assert [gpu_index_of(d) for d in ("cpu", "cuda", "cuda:1", "gpu:2", "auto", "mps")] == [None, 0, 1, 2, 0, None]


def test_need_from_an_estimate_of_the_real_header(gemma_path: Path) -> None:
    spec = ModelSpec(id="gemma", path=gemma_path)
    need = estimate_need(spec, LaunchOptions(n_ctx=2048))
    assert need is not None and need.vram_bytes == 0 and need.gpu_index is None
    assert 300 * MB < need.ram_bytes < 450 * MB
    gpu = estimate_need(spec, LaunchOptions(n_ctx=2048, n_gpu_layers=-1, device="cuda:1"))
    assert gpu is not None and gpu.gpu_index == 1 and gpu.vram_bytes > 0
    assert estimate_need(ModelSpec(id="x", format="hf", path=gemma_path), LaunchOptions()) is None


# -- through launch() with the fake engine ------------------------------------------------------------------------


@pytest.fixture
def manager() -> Iterator[EngineManager]:
    with EngineManager(reap_interval_s=None) as mgr:
        yield mgr


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return write_gguf(tmp_path / "tiny.gguf", chat_template="{{ messages }}")


def config(tmp_path: Path) -> Config:
    return Config(models_dir=tmp_path / "models", data_dir=tmp_path / "data", cache_dir=tmp_path / "cache")


def machine(manager: EngineManager, capacity: int) -> Snapshot:
    """A host with `capacity` bytes free before any instance, less what the manager's instances hold."""
    held = sum(i.footprint.ram_bytes or 0 for i in manager.instances())
    return snap(capacity - held)


def test_launch_without_a_snapshot_does_not_check(manager: EngineManager, tiny: Path, tmp_path: Path) -> None:
    launched = launch(manager, str(tiny), config(tmp_path), engine=FakeEngine())
    assert launched.admission is None


def test_launch_refuses_then_unloads_the_offer_and_admits(manager: EngineManager, tiny: Path, tmp_path: Path) -> None:
    cfg = config(tmp_path)
    options = LaunchOptions(n_ctx=512)
    need = estimate_need(ModelSpec(id="tiny", path=tiny), options)
    assert need is not None
    capacity = need.ram_bytes + MARGIN_MAX_BYTES + 500 * MB
    old = manager.start(ModelSpec(id="old", format="fake"), engine=FakeEngine(ram_bytes=700 * MB))
    manager.submit(old, []).result()  # used once, then idle

    def snapshot() -> Snapshot:
        return machine(manager, capacity)

    with pytest.raises(NotEnoughMemory) as refused:
        launch(manager, str(tiny), cfg, engine=FakeEngine(), options=options, snapshot=snapshot)
    assert isinstance(refused.value, InsufficientMemory)
    decision = refused.value.admission
    assert decision.verdict is Verdict.UNLOAD and decision.unload_run_ids == (old,)
    assert f"unload old ({old}" in str(refused.value)
    launched = unload_and_launch(
        manager, str(tiny), cfg, decision.unload_run_ids, engine=FakeEngine(), options=options, snapshot=snapshot
    )
    assert launched.admission is not None and launched.admission.admitted
    assert [i.run_id for i in manager.instances()] == [launched.run_id]
    (gone,) = manager.stopped()
    assert gone.run_id == old and gone.stop_reason == f"unloaded to make room for {tiny}"


def test_unload_and_launch_keeps_an_instance_that_became_busy(
    manager: EngineManager, tiny: Path, tmp_path: Path
) -> None:
    gate = threading.Event()
    engine = FakeEngine(gate=gate)
    busy = manager.start(ModelSpec(id="busy", format="fake"), engine=engine)
    handle = manager.submit(busy, [])
    assert engine.started.wait(10)

    def tight() -> Snapshot:
        return snap(1 * MB)

    with pytest.raises(NotEnoughMemory, match="no idle instance"):
        unload_and_launch(manager, str(tiny), config(tmp_path), [busy], engine=FakeEngine(), snapshot=tight)
    gate.set()
    assert handle.result().done is not None
    assert manager.info(busy).state is InstanceState.READY


def test_estimate_matches_the_need(gemma_path: Path) -> None:
    from engines.catalog.fit import ModelShape
    from engines.catalog.gguf_header import read_gguf_header

    est = estimate(ModelShape.from_gguf_header(read_gguf_header(gemma_path)), n_ctx=1024)
    need = estimate_need(ModelSpec(id="g", path=gemma_path), LaunchOptions(n_ctx=1024))
    assert need == Need.from_estimate("g", est, None)


def test_the_gpu_memory_fraction_keeps_the_rest_of_the_gpu_free() -> None:
    gpus = FakeGpuSource().sample({})[0]
    gpu = gpus[0]
    assert gpu.memory_total_bytes is not None and gpu.memory_free_bytes is not None
    total, free = gpu.memory_total_bytes, gpu.memory_free_bytes
    snapshot = Snapshot(taken_at=0.0, gpus=gpus, host=HostStats(ram_available_bytes=64 * GB, ram_total_bytes=TOTAL))
    fits_with_margin = free - margin_bytes(total) - 1
    need = Need("big", 100 * MB, fits_with_margin, gpu.index)
    assert admit(need, snapshot, []).verdict is Verdict.ADMIT  # the whole GPU may be used: only the margin is kept
    refused = admit(need, snapshot, [], gpu_fraction=0.5)
    assert refused.verdict is Verdict.REFUSE
    check = next(c for c in refused.checks if c.device == f"GPU {gpu.index}")
    assert check.margin_bytes == round(total * 0.5)  # half of the GPU kept free, not just the margin


def test_launch_reads_the_fraction_from_the_config(manager: EngineManager, tiny: Path, tmp_path: Path) -> None:
    from dataclasses import replace

    spec = ModelSpec(id="tiny", path=tiny)
    options = LaunchOptions(n_gpu_layers=-1, device="cuda:0")
    gpus = FakeGpuSource().sample({})[0]
    total = gpus[0].memory_total_bytes
    assert total is not None
    gpu = replace(gpus[0], memory_used_bytes=10 * MB)  # almost the whole GPU free
    snapshot = Snapshot(taken_at=0.0, gpus=(gpu,), host=HostStats(ram_available_bytes=64 * GB, ram_total_bytes=TOTAL))
    usual = config(tmp_path)  # gpu_memory_fraction 0.9
    strict = replace(usual, gpu_memory_fraction=0.000001)
    with pytest.raises(NotEnoughMemory, match="GPU 0"):
        launch(manager, spec, strict, engine=FakeEngine(), options=options, snapshot=lambda: snapshot)
    launched = launch(manager, spec, usual, engine=FakeEngine(), options=options, snapshot=lambda: snapshot)
    assert launched.admission is not None and launched.admission.admitted
