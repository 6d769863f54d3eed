"""Will it fit? Memory for weights + KV cache + overhead, against free VRAM, RAM and disk."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from engines.errors import BadRequest

if TYPE_CHECKING:
    from engines.catalog.gguf_info import GgufHeader

MIB = 1 << 20

OVERHEAD_BYTES = 96 * MIB
"""RAM held by a loaded llama.cpp model beyond weights and KV cache (compute buffers, backend state).

Measured with llama-cpp-python 0.3.36 on CPU, Gemma 3 270M Q4_K_M (weights 246.6 MB, KV 18 432 B/token):
RSS after load minus weights minus KV was 63.5 / 64.4 / 64.7 MB at n_ctx 512 / 2048 / 8192, and the
compute buffer pages touched by a 900-token prompt add 33 MB more (RSS delta 348.9 MB after load,
382.3 MB after the prompt at n_ctx 2048). 96 MiB covers the post-prompt figure.
"""

GPU_OVERHEAD_BYTES = 512 * MIB
"""VRAM allowance per GPU used (CUDA context, cuBLAS workspace, compute buffer); not measured here."""

CACHE_TYPE_BYTES: dict[str, float] = {
    "f32": 4.0,
    "f16": 2.0,
    "bf16": 2.0,
    "q8_0": 34 / 32,
    "q5_1": 24 / 32,
    "q5_0": 22 / 32,
    "q4_1": 20 / 32,
    "q4_0": 18 / 32,
    "iq4_nl": 18 / 32,
}
"""Bytes per KV cache element for llama.cpp's --cache-type-k/v values (ggml block size / 32)."""

# (upper bound on params, layers, embedding, heads, kv heads, head dim): typical 2024 GQA shapes
# (Qwen 2.5 0.5B, Llama 3.2 1B / 3B, Llama 3.1 8B, Qwen 2.5 14B / 32B, Llama 3.1 70B).
_TYPICAL_SHAPES = (
    (700_000_000, 24, 896, 14, 2, 64),
    (2_000_000_000, 16, 2048, 32, 8, 64),
    (5_000_000_000, 28, 3072, 24, 8, 128),
    (11_000_000_000, 32, 4096, 32, 8, 128),
    (20_000_000_000, 48, 5120, 40, 8, 128),
    (45_000_000_000, 64, 5120, 40, 8, 128),
    (None, 80, 8192, 64, 8, 128),
)


@dataclass(frozen=True, slots=True)
class ModelShape:
    """What memory use depends on: weight bytes and the attention shape."""

    weights_bytes: int
    n_layers: int | None = None
    n_kv_heads: int | None = None
    head_dim: int | None = None
    embedding_length: int | None = None
    n_heads: int | None = None

    @classmethod
    def from_gguf_header(cls, header: GgufHeader) -> ModelShape:
        """The exact shape of a GGUF file: tensor bytes and the attention metadata."""
        n_heads = header.head_count
        embedding = header.embedding_length
        head_dim = header.key_length
        if head_dim is None and n_heads and embedding:
            head_dim = embedding // n_heads
        return cls(
            weights_bytes=sum(t.n_bytes for t in header.tensors),
            n_layers=header.block_count,
            n_kv_heads=header.head_count_kv or n_heads,
            head_dim=head_dim,
            embedding_length=embedding,
            n_heads=n_heads,
        )

    @classmethod
    def from_params(
        cls,
        params: int,
        bits_per_weight: float,
        *,
        n_layers: int | None = None,
        n_kv_heads: int | None = None,
        head_dim: int | None = None,
        embedding_length: int | None = None,
        n_heads: int | None = None,
    ) -> ModelShape:
        """An estimate for a model not yet downloaded; unknown shape fields come from a typical model of that size."""
        if params <= 0 or bits_per_weight <= 0:
            raise BadRequest(f"params ({params}) and bits per weight ({bits_per_weight}) must be positive")
        _, layers, embed, heads, kv_heads, dim = next(s for s in _TYPICAL_SHAPES if s[0] is None or params <= s[0])
        return cls(
            weights_bytes=round(params * bits_per_weight / 8),
            n_layers=n_layers or layers,
            n_kv_heads=n_kv_heads or kv_heads,
            head_dim=head_dim or dim,
            embedding_length=embedding_length or embed,
            n_heads=n_heads or heads,
        )

    def kv_bytes_per_token(self, cache_type: str = "f16") -> int:
        """K and V bytes one token of context costs over all layers (0 when the shape is unknown)."""
        if not (self.n_layers and self.n_kv_heads and self.head_dim):
            return 0
        return round(2 * self.n_layers * self.n_kv_heads * self.head_dim * cache_bytes(cache_type))


@dataclass(frozen=True, slots=True)
class Estimate:
    """Memory a launch needs, and how it splits between RAM and VRAM."""

    weights_bytes: int
    kv_cache_bytes: int
    overhead_bytes: int
    total_bytes: int
    ram_bytes: int
    vram_bytes: int
    gpu_layers: int
    """Layers placed on the GPU (0: CPU only, -1: all of a model whose layer count is unknown)."""


@dataclass(frozen=True, slots=True)
class GpuFree:
    """Free memory on one GPU."""

    index: int
    name: str
    free_bytes: int


@dataclass(frozen=True, slots=True)
class Resources:
    """Free RAM, free VRAM per GPU and free disk where models go."""

    ram_free_bytes: int
    gpus: tuple[GpuFree, ...] = ()
    disk_free_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class Fit:
    """The verdict on one launch: where it goes, the numbers, and a one-line summary."""

    verdict: str
    fits: bool
    """Memory suffices and, when a download is needed, the disk too."""
    estimate: Estimate
    resources: Resources
    gpu_index: int | None
    download_bytes: int | None
    disk_ok: bool
    summary: str


def cache_bytes(cache_type: str) -> float:
    """Bytes per element of a KV cache type; BadRequest names the types known."""
    try:
        return CACHE_TYPE_BYTES[cache_type.lower()]
    except KeyError:
        raise BadRequest(f"unknown KV cache type {cache_type!r}; use one of {', '.join(CACHE_TYPE_BYTES)}") from None


def estimate(
    shape: ModelShape, *, n_ctx: int, cache_type: str = "f16", n_gpu_layers: int = 0, slots: int = 1
) -> Estimate:
    """Weights + KV cache for n_ctx in each of `slots` + overhead; offloaded layers take their share to VRAM
    (-1: all)."""
    if n_ctx <= 0:
        raise BadRequest(f"n_ctx must be positive, not {n_ctx}")
    kv = shape.kv_bytes_per_token(cache_type) * n_ctx * max(1, slots)
    layers = shape.n_layers
    if n_gpu_layers < 0 or (n_gpu_layers > 0 and (layers is None or n_gpu_layers >= layers)):
        gpu_layers, share = (layers if layers else -1), 1.0
    else:
        gpu_layers = n_gpu_layers
        share = n_gpu_layers / layers if layers else 0.0
    gpu_overhead = GPU_OVERHEAD_BYTES if share > 0 else 0
    vram = round((shape.weights_bytes + kv) * share) + gpu_overhead
    ram = shape.weights_bytes + kv + OVERHEAD_BYTES - (vram - gpu_overhead)
    return Estimate(
        weights_bytes=shape.weights_bytes,
        kv_cache_bytes=kv,
        overhead_bytes=OVERHEAD_BYTES + gpu_overhead,
        total_bytes=ram + vram,
        ram_bytes=ram,
        vram_bytes=vram,
        gpu_layers=gpu_layers if share > 0 else 0,
    )


def current_resources(models_dir: Path) -> Resources:
    """Free RAM and free disk under models_dir (or its nearest existing parent); GPUs come from telemetry."""
    import psutil

    target = models_dir.expanduser().absolute()
    while not target.exists() and target != target.parent:
        target = target.parent
    try:
        disk: int | None = int(psutil.disk_usage(str(target)).free)
    except OSError:
        disk = None
    return Resources(ram_free_bytes=int(psutil.virtual_memory().available), gpus=(), disk_free_bytes=disk)


def fit(
    shape: ModelShape,
    resources: Resources,
    *,
    n_ctx: int,
    cache_type: str = "f16",
    download_bytes: int | None = None,
    n_gpu_layers: int | None = None,
    slots: int = 1,
) -> Fit:
    """Where the model goes: all on one GPU, in RAM, split across a GPU and RAM, or nowhere.

    With `n_gpu_layers` the split is the caller's (0: CPU only, -1: all layers) and the verdict says whether
    that split fits, on the GPU with the most free memory. `slots` requests decoded at once each get `n_ctx`.
    """
    gpus = sorted(resources.gpus, key=lambda g: -g.free_bytes)
    cpu = estimate(shape, n_ctx=n_ctx, cache_type=cache_type, slots=slots)
    chosen, verdict, gpu = cpu, "does not fit", None
    full = estimate(shape, n_ctx=n_ctx, cache_type=cache_type, n_gpu_layers=-1, slots=slots)
    on_gpu = next((g for g in gpus if full.vram_bytes <= g.free_bytes), None)
    if n_gpu_layers is not None and n_gpu_layers != 0:
        chosen = estimate(shape, n_ctx=n_ctx, cache_type=cache_type, n_gpu_layers=n_gpu_layers, slots=slots)
        gpu = gpus[0].index if gpus else None
        if not gpus:
            verdict = "does not fit: no GPU to offload layers to"
        elif chosen.vram_bytes > gpus[0].free_bytes:
            verdict = (
                f"does not fit: needs {human_bytes(chosen.vram_bytes)} VRAM, {human_bytes(gpus[0].free_bytes)} free"
            )
        elif chosen.ram_bytes > resources.ram_free_bytes:
            ram, free = human_bytes(chosen.ram_bytes), human_bytes(resources.ram_free_bytes)
            verdict = f"does not fit: needs {ram} RAM, {free} free"
        else:
            verdict = f"{chosen.gpu_layers} of {shape.n_layers or '?'} layers on GPU {gpu}"
    elif n_gpu_layers == 0:
        if cpu.ram_bytes <= resources.ram_free_bytes:
            verdict = "fits in RAM"
    elif on_gpu is not None and full.ram_bytes <= resources.ram_free_bytes:
        chosen, verdict, gpu = full, f"fits on GPU {on_gpu.index}", on_gpu.index
    elif gpus and (partial := _partial(shape, gpus[0], resources, n_ctx, cache_type, slots)) is not None:
        chosen, gpu = partial, gpus[0].index
        verdict = f"partial offload: {partial.gpu_layers} of {shape.n_layers} layers on GPU {gpu}"
    elif cpu.ram_bytes <= resources.ram_free_bytes:
        verdict = "fits in RAM"
    memory_ok = not verdict.startswith("does not fit")
    disk_ok = download_bytes is None or resources.disk_free_bytes is None or download_bytes <= resources.disk_free_bytes
    if not disk_ok:
        verdict += f"; download {human_bytes(download_bytes or 0)} exceeds free disk"
    return Fit(
        verdict=verdict,
        fits=memory_ok and disk_ok,
        estimate=chosen,
        resources=resources,
        gpu_index=gpu,
        download_bytes=download_bytes,
        disk_ok=disk_ok,
        summary=_summary(chosen, resources, gpu, download_bytes),
    )


def _partial(
    shape: ModelShape, gpu: GpuFree, resources: Resources, n_ctx: int, cache_type: str, slots: int
) -> Estimate | None:
    """The estimate with the most layers on this GPU whose rest fits in RAM, or None."""
    if not shape.n_layers:
        return None
    for layers in range(shape.n_layers - 1, 0, -1):
        est = estimate(shape, n_ctx=n_ctx, cache_type=cache_type, n_gpu_layers=layers, slots=slots)
        if est.vram_bytes <= gpu.free_bytes:
            return est if est.ram_bytes <= resources.ram_free_bytes else None
    return None


def _summary(est: Estimate, resources: Resources, gpu: int | None, download_bytes: int | None) -> str:
    parts = [
        f"weights {human_bytes(est.weights_bytes)} + KV {human_bytes(est.kv_cache_bytes)}"
        f" + overhead {human_bytes(est.overhead_bytes)} = {human_bytes(est.total_bytes)}"
    ]
    if est.vram_bytes:
        parts.append(f"VRAM {human_bytes(est.vram_bytes)} + RAM {human_bytes(est.ram_bytes)}")
    parts.append(f"RAM free {human_bytes(resources.ram_free_bytes)}")
    for g in resources.gpus:
        if g.index == gpu or gpu is None:
            parts.append(f"GPU {g.index} free {human_bytes(g.free_bytes)}")
    if download_bytes is not None:
        disk = resources.disk_free_bytes
        parts.append(f"download {human_bytes(download_bytes)}, disk free {'?' if disk is None else human_bytes(disk)}")
    return "; ".join(parts)


def human_bytes(n: int) -> str:
    """Decimal units as people read them: 253 MB, 20.1 GB."""
    for unit, scale in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if abs(n) >= scale:
            value = n / scale
            return f"{value:.1f} {unit}" if unit in ("TB", "GB") else f"{value:.0f} {unit}"
    return f"{n} B"


def human_duration(seconds: float) -> str:
    """42 s, 12 min, 2.5 h: an idle time or an ETA as people say it."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def human_params(params: int | None) -> str:
    """268098176 -> "268M", 7_615_616_512 -> "7.6B"."""
    if not params:
        return "-"
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if params >= scale:
            value = params / scale
            return f"{value:.1f}{suffix}" if value < 10 else f"{value:.0f}{suffix}"
    return str(params)
