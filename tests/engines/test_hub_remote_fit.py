"""The fit of a file on the Hub, from its real header read remotely, against a fake Hub that behaves like the real one.

Every repo here carries real headers (GGUFs written by gguf's writer, the real Gemma file served from disk), at
real sizes: what a verdict says is what the header says, not an estimate.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from engines.catalog.fit import GpuFree, Resources, estimate
from engines.catalog.listing import build_listing, row_shape
from engines.config.load import Config
from engines.hub.errors import HubNotFound, HubRateLimited, HubUnreachable
from engines.hub.remote_fit import FileFit, HubSource, fit_repo, repo_models
from tests.engines.fake_hub import FakeHub, Fault
from tests.engines.hub_fixtures import gated_repo, gemma_repo, quant_series_repo, safetensors_repo, split_gguf_repo

GIB = 1 << 30
MINIMUM_GEMMA_READ = 4_413_497 + (6_525_120 - 6_510_743)
"""Bytes any reader must fetch of the Gemma file: its vocabulary runs to byte 4,413,497, and the keys after the
scores and token types, plus the tensor table, fill bytes 6,510,743..6,525,120 (measured with gguf's reader)."""
CPU_BOX = Resources(ram_free_bytes=16 * GIB, disk_free_bytes=500 * GIB)
GPU_BOX = Resources(ram_free_bytes=32 * GIB, gpus=(GpuFree(0, "RTX 4070", 8 * GIB),), disk_free_bytes=500 * GIB)
FACTS = (
    "params",
    "quantization",
    "context_length",
    "architecture",
    "layers",
    "heads",
    "kv_heads",
    "embedding_length",
    "head_dim",
    "weights_bytes",
    "has_chat_template",
)


@pytest.fixture
def hub() -> FakeHub:
    with FakeHub() as server:
        yield server


def source(hub: FakeHub, tmp_path: Path | None = None, **kwargs: object) -> HubSource:
    return HubSource(hub.endpoint, cache_dir=tmp_path / "cache" if tmp_path else None, **kwargs)  # type: ignore[arg-type]


def fits_of(hub: FakeHub, repo: str, resources: Resources, n_ctx: int = 8192, **kwargs: object):
    src = kwargs.pop("src", None) or source(hub)
    listing, models = repo_models(repo, src)  # type: ignore[arg-type]
    return fit_repo(listing, models, src, resources, n_ctx=n_ctx, **kwargs)  # type: ignore[arg-type]


def test_gemma_on_the_hub_fits_exactly_as_the_same_file_here(hub: FakeHub, gemma_path: Path, tmp_path: Path) -> None:
    gemma = gemma_repo(hub, gemma_path)
    result = fits_of(hub, gemma.repo, GPU_BOX, n_ctx=4096)
    (remote,) = result.fits
    assert remote.error is None and remote.row is not None and remote.row.fit is not None
    models = tmp_path / "models"
    models.mkdir()
    shutil.copyfile(gemma_path, models / gemma.gguf.path)  # discovery takes files, as a download leaves them
    config = Config(models_dir=models, data_dir=tmp_path / "data", cache_dir=tmp_path / "cache")
    listing = build_listing(config, include_network=False, n_ctx=4096, resources=GPU_BOX, catalog=())
    (local,) = [r for r in listing.rows if r.source == "local"]
    assert local.fit is not None
    for name in FACTS:
        assert getattr(remote.row, name) == getattr(local, name), name
    assert (remote.row.fit.ram_bytes, remote.row.fit.vram_bytes) == (local.fit.ram_bytes, local.fit.vram_bytes)
    assert remote.row.fit.verdict == local.fit.verdict == "fits on GPU 0"
    assert remote.row.size_bytes == local.size_bytes == 253_113_024
    # What it cost: at most one window (512 KiB) past what the header needs, and never the weights.
    assert MINIMUM_GEMMA_READ <= remote.bytes_read <= MINIMUM_GEMMA_READ + (512 << 10) + (128 << 10)
    assert hub.repos[gemma.repo].sent_bytes(gemma.gguf.path) == remote.bytes_read
    print(f"gemma header: {remote.bytes_read:,} bytes in {remote.requests} requests (minimum {MINIMUM_GEMMA_READ:,})")


def test_twenty_quantizations_get_verdicts_and_the_best_that_fits(hub: FakeHub) -> None:
    series = quant_series_repo(hub)
    seen: list[int] = []
    result = fits_of(hub, series.repo, GPU_BOX, on_result=lambda i, f: seen.append(i))
    assert len(result.fits) == 20 and sorted(seen) == list(range(20))
    assert all(f.error is None and f.row is not None and f.row.fit is not None for f in result.fits)
    by_quant = {f.row.quantization: f for f in result.fits if f.row}
    assert set(by_quant) == set(series.ggufs)
    for quant, gguf in series.ggufs.items():
        row = by_quant[quant].row
        assert row is not None
        assert (row.layers, row.heads, row.kv_heads, row.context_length) == (32, 32, 8, 8192)
        assert row.size_bytes == gguf.size  # the model file, as it will list here; the projector is in download_bytes
        assert by_quant[quant].model.download_bytes == gguf.size + series.mmproj.size
        assert row.params is not None and abs(row.params - 8_030_261_248) < 1_000_000
    # The best: the largest whose every layer and KV cache fit in the GPU's 8 GiB at 8k context.
    need = {
        i: estimate(row_shape(f.row), n_ctx=8192, n_gpu_layers=-1).vram_bytes  # type: ignore[arg-type]
        for i, f in enumerate(result.fits)
    }
    whole = [i for i in need if need[i] <= 8 * GIB]
    assert result.best == max(whole, key=lambda i: result.fits[i].row.weights_bytes)  # type: ignore[union-attr]
    assert result.fits[result.best].row.fit.verdict == "fits on GPU 0"  # type: ignore[union-attr]
    next_up = min((i for i in need if need[i] > 8 * GIB), key=lambda i: need[i])
    quant = result.fits[next_up].model.quantization_hint
    assert result.why_not_next is not None and result.why_not_next.startswith(f"{quant} needs ")
    assert "VRAM, 8.6 GB free" in result.why_not_next


def test_without_a_gpu_the_best_is_what_fits_in_ram(hub: FakeHub) -> None:
    series = quant_series_repo(hub, quants=["Q4_K_M", "Q8_0", "F16"])
    result = fits_of(hub, series.repo, CPU_BOX)
    assert [f.row.quantization for f in result.fits] == ["Q4_K_M", "Q8_0", "F16"]  # type: ignore[union-attr]
    assert result.best == 1 and result.fits[1].row.fit.verdict == "fits in RAM"  # type: ignore[union-attr]
    assert result.why_not_next is not None and result.why_not_next.startswith("F16 needs ")
    assert result.why_not_next.endswith("RAM, 17.2 GB free")


def test_a_split_gguf_is_one_model_with_every_parts_tensors(hub: FakeHub) -> None:
    split = split_gguf_repo(hub)
    (fit,) = fits_of(hub, split.repo, GPU_BOX).fits
    assert fit.model.kind == "gguf-split" and len(fit.model.parts) == 3
    row = fit.row
    assert fit.error is None and row is not None
    assert row.params == split.params and row.layers == 80 and row.quantization == "Q4_K_M"
    assert row.weights_bytes is not None and row.weights_bytes < split.size < row.weights_bytes * 1.01
    assert row.fit is not None and row.fit.verdict == "does not fit"  # 42.5 GB: 8 GiB on the GPU, 37 GB left > RAM
    assert fit.requests >= 3  # every part's header: each holds some of the tensors


def test_a_safetensors_repo_is_read_from_config_and_shard_headers(hub: FakeHub) -> None:
    repo = safetensors_repo(hub)
    result = fits_of(hub, repo.repo, GPU_BOX)
    (fit,) = result.fits
    assert result.best is None and result.why_not_next is not None
    assert result.why_not_next.startswith("Llama-3-8B-Instruct needs ")  # the repo's name, not the root folder "."
    row = fit.row
    assert fit.error is None and row is not None
    assert row.format == "hf" and row.params == repo.params and row.layers == 32 and row.kv_heads == 8
    assert row.has_chat_template is True
    assert row.fit is not None and row.fit.verdict.startswith("partial offload")  # 16 GB of BF16 in 8 GiB
    assert fit.bytes_read < 1 << 20  # two shard headers, config.json and tokenizer_config.json


def test_a_gated_repo_says_how_to_set_a_token_and_works_with_one(hub: FakeHub) -> None:
    gated = gated_repo(hub)
    (fit,) = fits_of(hub, gated.repo, GPU_BOX).fits
    assert fit.row is None and fit.error is not None
    assert "gated" in fit.error and "hf_token" in fit.error and "HF_TOKEN" in fit.error
    assert fit.error_kind == "auth"
    (fit,) = fits_of(hub, gated.repo, GPU_BOX, src=source(hub, token="hf_someone_else")).fits
    assert fit.error is not None and "your hf_token has no access" in fit.error
    (fit,) = fits_of(hub, gated.repo, GPU_BOX, src=source(hub, token=gated.token)).fits
    assert fit.error is None and fit.row is not None and fit.row.quantization == "Q4_K_M"


def test_facts_read_with_a_token_are_not_cached_for_a_run_without_it(hub: FakeHub, tmp_path: Path) -> None:
    gated = gated_repo(hub)
    (fit,) = fits_of(hub, gated.repo, GPU_BOX, src=source(hub, tmp_path, token=gated.token)).fits
    assert fit.row is not None
    (fit,) = fits_of(hub, gated.repo, GPU_BOX, src=source(hub, tmp_path)).fits
    assert fit.row is None and fit.error_kind == "auth" and not fit.cached


def test_listing_errors_keep_their_kind(hub: FakeHub) -> None:
    with pytest.raises(HubNotFound, match="not on"):
        repo_models("org/missing", source(hub))
    with pytest.raises(HubUnreachable, match="HF_ENDPOINT"):
        repo_models("org/any", HubSource("http://127.0.0.1:9"))
    quant_series_repo(hub, quants=["Q4_K_M"], faults=(Fault(status=429, headers={"Retry-After": "12"}),))
    with pytest.raises(HubRateLimited, match="try again in 12 s"):
        repo_models("org/Llama-3-8B-Instruct-GGUF", source(hub))


def test_a_cdn_redirect_is_followed_without_the_token(hub: FakeHub) -> None:
    with FakeHub() as cdn:
        series = quant_series_repo(hub, quants=["Q4_K_M"], cdn=cdn)
        (fit,) = fits_of(hub, series.repo, GPU_BOX, src=source(hub, token="hf_secret")).fits
        assert fit.error is None and fit.row is not None
        assert cdn.requests and all("authorization" not in r.headers for r in cdn.requests)
        assert any("authorization" in r.headers for r in hub.requests)
        # later ranges went straight to the CDN: the Hub answered one redirect per file read
        resolves = [r for r in hub.requests if "/resolve/" in r.path]
        assert len(resolves) == 1 and fit.requests == len(cdn.requests)


def test_a_server_that_ignores_range_is_still_read_within_the_bound(hub: FakeHub) -> None:
    series = quant_series_repo(hub, quants=["Q4_K_M"])
    path = series.ggufs["Q4_K_M"].path
    for served in hub.repos[series.repo].served[path]:
        served.default = Fault(ignore_range=True)
    (fit,) = fits_of(hub, series.repo, GPU_BOX).fits
    assert fit.error is None and fit.row is not None and fit.row.layers == 32
    assert fit.requests == 1 and fit.bytes_read < series.ggufs["Q4_K_M"].data_offset + (1 << 20)


def test_a_header_past_the_bound_is_refused_without_reading_on(hub: FakeHub) -> None:
    series = quant_series_repo(hub, quants=["Q4_K_M"])  # the whole 128k vocabulary: a 2.1 MB header
    (fit,) = fits_of(hub, series.repo, GPU_BOX, src=source(hub, max_header_bytes=1 << 20)).fits
    assert fit.row is None and fit.error is not None and "1 MiB" in fit.error and "download it" in fit.error
    assert fit.bytes_read <= 1 << 20


def test_a_dropped_connection_is_an_error_on_that_row_only(hub: FakeHub) -> None:
    series = quant_series_repo(hub, quants=["Q4_K_M", "Q8_0"])
    path = series.ggufs["Q8_0"].path
    for served in hub.repos[series.repo].served[path]:
        served.default = Fault(drop_after=1000)
    result = fits_of(hub, series.repo, GPU_BOX)
    errors = {f.model.name: f.error for f in result.fits}
    assert errors[series.ggufs["Q4_K_M"].path] is None
    assert errors[path] is not None and "org/Llama-3-8B-Instruct-GGUF" in errors[path]


def test_results_are_cached_by_commit_and_give_the_same_numbers(hub: FakeHub, tmp_path: Path) -> None:
    series = quant_series_repo(hub, quants=["Q4_K_M", "Q6_K"])
    src = source(hub, tmp_path)
    first = fits_of(hub, series.repo, GPU_BOX, src=src)
    before = len(hub.requests)
    second = fits_of(hub, series.repo, GPU_BOX, src=src)
    ranged = [r for r in hub.requests[before:] if "range" in r.headers]
    assert ranged == []  # only the listing was asked again
    assert [f.cached for f in second.fits] == [True, True]
    assert [strip(f) for f in first.fits] == [strip(f) for f in second.fits]
    assert [f.bytes_read for f in second.fits] == [f.bytes_read for f in first.fits]
    # another context size: new verdicts from the cached facts
    third = fits_of(hub, series.repo, GPU_BOX, n_ctx=65536, src=src)
    assert third.fits[0].row.fit.ram_bytes != first.fits[0].row.fit.ram_bytes  # type: ignore[union-attr]


def test_a_fixed_gpu_layer_count_is_checked_as_asked(hub: FakeHub) -> None:
    series = quant_series_repo(hub, quants=["Q8_0"])
    (fit,) = fits_of(hub, series.repo, GPU_BOX, n_gpu_layers=20).fits
    assert fit.row is not None and fit.row.fit is not None
    assert fit.row.fit.verdict == "20 of 32 layers on GPU 0"
    (fit,) = fits_of(hub, series.repo, GPU_BOX, n_gpu_layers=-1).fits
    assert fit.row.fit.verdict.startswith("does not fit: needs ")  # type: ignore[union-attr]


def strip(fit: FileFit) -> object:
    return replace(fit, cached=False)


def test_a_stalled_read_ends_at_the_timeout_with_the_file_named(hub: FakeHub) -> None:
    series = quant_series_repo(hub, quants=["Q4_K_M"])
    path = series.ggufs["Q4_K_M"].path
    for served in hub.repos[series.repo].served[path]:
        served.default = Fault(stall_after=1000)
    (fit,) = fits_of(hub, series.repo, GPU_BOX, src=source(hub, timeout_s=0.5)).fits
    assert fit.row is None and fit.error is not None
    assert fit.error.startswith(f"{series.repo}/{path}: no answer within")
