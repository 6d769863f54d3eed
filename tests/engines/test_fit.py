"""Fit check: memory arithmetic, verdicts against fake resources, and the overhead measured on a real model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engines.catalog.fit import (
    GPU_OVERHEAD_BYTES,
    OVERHEAD_BYTES,
    GpuFree,
    ModelShape,
    Resources,
    current_resources,
    estimate,
    fit,
    human_bytes,
)
from engines.catalog.gguf_header import read_gguf_header
from engines.errors import BadRequest

GB = 10**9
# Llama 3.1 8B's shape at roughly Q4_K_M.
LLAMA8 = ModelShape(weights_bytes=4_900_000_000, n_layers=32, n_kv_heads=8, head_dim=128, embedding_length=4096)


def test_kv_cache_is_two_times_layers_ctx_kv_heads_head_dim_bytes() -> None:
    est = estimate(LLAMA8, n_ctx=8192)
    assert est.kv_cache_bytes == 2 * 32 * 8192 * 8 * 128 * 2 == 1_073_741_824
    assert estimate(LLAMA8, n_ctx=8192, cache_type="q8_0").kv_cache_bytes == 2 * 32 * 8192 * 8 * 128 * 34 // 32
    assert estimate(LLAMA8, n_ctx=8192, cache_type="F32").kv_cache_bytes == 2 * est.kv_cache_bytes
    assert est.overhead_bytes == OVERHEAD_BYTES
    assert est.total_bytes == est.weights_bytes + est.kv_cache_bytes + est.overhead_bytes == est.ram_bytes
    assert est.vram_bytes == 0 and est.gpu_layers == 0


def test_unknown_shape_counts_no_kv_and_bad_inputs_are_refused() -> None:
    assert estimate(ModelShape(weights_bytes=1000), n_ctx=4096).kv_cache_bytes == 0
    with pytest.raises(BadRequest, match=r"unknown KV cache type 'q3'.*f16"):
        estimate(LLAMA8, n_ctx=10, cache_type="q3")
    with pytest.raises(BadRequest, match="n_ctx"):
        estimate(LLAMA8, n_ctx=0)
    with pytest.raises(BadRequest, match="positive"):
        ModelShape.from_params(0, 4.5)


def test_offloaded_layers_take_their_share_to_vram() -> None:
    full = estimate(LLAMA8, n_ctx=4096, n_gpu_layers=-1)
    assert full.gpu_layers == 32 and full.ram_bytes == OVERHEAD_BYTES
    assert full.vram_bytes == LLAMA8.weights_bytes + full.kv_cache_bytes + GPU_OVERHEAD_BYTES
    assert estimate(LLAMA8, n_ctx=4096, n_gpu_layers=99) == full
    half = estimate(LLAMA8, n_ctx=4096, n_gpu_layers=16)
    layer_half = (LLAMA8.weights_bytes + half.kv_cache_bytes) // 2
    assert half.gpu_layers == 16 and half.vram_bytes == layer_half + GPU_OVERHEAD_BYTES
    assert half.ram_bytes == layer_half + OVERHEAD_BYTES
    assert half.total_bytes == half.ram_bytes + half.vram_bytes


def test_from_params_derives_a_plausible_shape() -> None:
    shape = ModelShape.from_params(8_030_261_248, 4.9)
    assert shape.weights_bytes == round(8_030_261_248 * 4.9 / 8)
    assert (shape.n_layers, shape.n_kv_heads, shape.head_dim) == (32, 8, 128)
    assert ModelShape.from_params(70_000_000_000, 4.9).n_layers == 80
    assert ModelShape.from_params(500_000_000, 8.5, n_layers=7).n_layers == 7


def test_from_gguf_header_reads_the_real_gemma(gemma_path: Path) -> None:
    shape = ModelShape.from_gguf_header(read_gguf_header(gemma_path))
    assert (shape.n_layers, shape.n_heads, shape.n_kv_heads, shape.head_dim, shape.embedding_length) == (
        18,
        4,
        1,
        256,
        640,
    )
    assert 240_000_000 < shape.weights_bytes < gemma_path.stat().st_size


def test_verdict_fits_on_the_gpu_with_room() -> None:
    res = Resources(ram_free_bytes=16 * GB, gpus=(GpuFree(0, "small", 4 * GB), GpuFree(1, "big", 24 * GB)))
    result = fit(LLAMA8, res, n_ctx=8192)
    assert result.verdict == "fits on GPU 1" and result.fits and result.gpu_index == 1
    assert "GPU 1 free 24.0 GB" in result.summary and "GPU 0" not in result.summary


def test_verdict_fits_in_ram_without_gpus() -> None:
    result = fit(LLAMA8, Resources(ram_free_bytes=20_100_000_000), n_ctx=8192)
    assert result.verdict == "fits in RAM" and result.fits and result.gpu_index is None
    assert result.summary == "weights 4.9 GB + KV 1.1 GB + overhead 101 MB = 6.1 GB; RAM free 20.1 GB"


def test_verdict_partial_offload_uses_the_most_layers_that_fit() -> None:
    res = Resources(ram_free_bytes=16 * GB, gpus=(GpuFree(0, "small", 3 * GB),))
    result = fit(LLAMA8, res, n_ctx=8192)
    est = result.estimate
    assert result.verdict == f"partial offload: {est.gpu_layers} of 32 layers on GPU 0" and result.fits
    assert 0 < est.gpu_layers < 32 and est.vram_bytes <= 3 * GB
    one_more = estimate(LLAMA8, n_ctx=8192, n_gpu_layers=est.gpu_layers + 1)
    assert one_more.vram_bytes > 3 * GB


def test_verdict_does_not_fit() -> None:
    result = fit(LLAMA8, Resources(ram_free_bytes=2 * GB, gpus=(GpuFree(0, "tiny", 1 * GB),)), n_ctx=8192)
    assert result.verdict == "does not fit" and not result.fits
    assert fit(LLAMA8, Resources(ram_free_bytes=2 * GB), n_ctx=8192).verdict == "does not fit"


def test_download_larger_than_free_disk_is_named() -> None:
    res = Resources(ram_free_bytes=16 * GB, disk_free_bytes=2 * GB)
    result = fit(LLAMA8, res, n_ctx=4096, download_bytes=4_900_000_000)
    assert result.verdict == "fits in RAM; download 4.9 GB exceeds free disk"
    assert not result.fits and not result.disk_ok
    assert result.summary.endswith("download 4.9 GB, disk free 2.0 GB")
    ok = fit(LLAMA8, Resources(ram_free_bytes=16 * GB, disk_free_bytes=None), n_ctx=4096, download_bytes=10)
    assert ok.fits and ok.disk_ok and ok.summary.endswith("disk free ?")


def test_human_bytes() -> None:
    assert [human_bytes(n) for n in (12, 1500, 253_113_024, 20_100_000_000, 3 * 10**12)] == [
        "12 B",
        "2 KB",
        "253 MB",
        "20.1 GB",
        "3.0 TB",
    ]


def test_current_resources_are_real(tmp_path: Path) -> None:
    res = current_resources(tmp_path / "not" / "yet")
    assert res.ram_free_bytes > 0 and res.disk_free_bytes is not None and res.disk_free_bytes > 0
    assert res.gpus == ()


_MEASURE = """
import json, sys, psutil, llama_cpp
proc = psutil.Process()
before = proc.memory_info().rss
llm = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=int(sys.argv[2]), n_threads=2, verbose=False)
loaded = proc.memory_info().rss
print(json.dumps({"before": before, "loaded": loaded}))
"""


@pytest.mark.real_model
def test_estimate_matches_measured_llama_cpp_footprint(gemma_path: Path) -> None:
    n_ctx = 2048
    run = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(gemma_path), str(n_ctx)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    rss = json.loads(run.stdout.strip().splitlines()[-1])
    measured = rss["loaded"] - rss["before"]
    est = estimate(ModelShape.from_gguf_header(read_gguf_header(gemma_path)), n_ctx=n_ctx)
    print(
        f"\nmeasured RSS delta {measured / 1e6:.1f} MB; estimate {est.total_bytes / 1e6:.1f} MB"
        f" (weights {est.weights_bytes / 1e6:.1f} + KV {est.kv_cache_bytes / 1e6:.1f}"
        f" + overhead {est.overhead_bytes / 1e6:.1f}); ratio {est.total_bytes / measured:.2f}"
    )
    assert 0.65 * measured <= est.total_bytes <= 1.35 * measured
