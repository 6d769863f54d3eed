"""The app pointed at a fake Hub, for the Hub search and files screens' tests, snapshots and sweep states.

The repos are the builders' (tests/engines/hub_fixtures.py): an 8B Llama GGUF in every quantization, a 70B split
in three parts, an 8B safetensors set, a gated repo; their search numbers and dates are fixed, and so is the free
memory the fits are checked against (an 8 GB GPU, 16 GB of RAM), so screens draw the same on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from engines.catalog.fit import GpuFree, Resources
from engines.secret import Secret
from tests.engines.fake_hub import FakeHub
from tests.engines.hub_fixtures import (
    GatedRepo,
    QuantSeries,
    SafetensorsRepo,
    SplitRepo,
    gated_repo,
    quant_series_repo,
    safetensors_repo,
    split_gguf_repo,
)
from tui.app import LlmTuiApp

GB = 10**9
RESOURCES = Resources(ram_free_bytes=16 * GB, gpus=(GpuFree(0, "GPU 0", 8 * GB),), disk_free_bytes=50 * GB)
"""An 8 GB GPU and 16 GB of RAM: the 8B's small quantizations fit on the GPU, Q8_0 and F16 offload in part, and
the 70B fits nowhere."""
QUANTS = ("Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0", "F16")
"""The quantizations the screens' tests and snapshots list (the fit tests take all twenty)."""


@dataclass(frozen=True)
class HubRepos:
    """What `add_repos` served: a test asserts against these."""

    series: QuantSeries
    split: SplitRepo
    safetensors: SafetensorsRepo
    gated: GatedRepo


def add_repos(hub: FakeHub, quants: tuple[str, ...] = QUANTS) -> HubRepos:
    """The four kinds of repo, with distinct downloads, likes and dates, all with "llama" in their names."""
    return HubRepos(
        quant_series_repo(hub, quants=quants, downloads=412_345, likes=1_234, last_modified="2025-06-02T10:00:00.000Z"),
        split_gguf_repo(hub, downloads=98_765, likes=3_456, last_modified="2025-03-15T10:00:00.000Z"),
        safetensors_repo(hub, downloads=2_345_678, likes=987, last_modified="2024-11-30T10:00:00.000Z"),
        gated_repo(hub, downloads=56_789, likes=5_678, last_modified="2025-08-20T10:00:00.000Z"),
    )


def on_hub(app: LlmTuiApp, endpoint: str, *, token: str | None = None) -> LlmTuiApp:
    """Point the app's Hub search, header reads and downloads at `endpoint`, with fixed free memory."""
    runtime = app.runtime
    config = replace(runtime.config, hf_endpoint=endpoint, hf_token=Secret(token) if token else None)
    runtime.apply_config(config)
    runtime.resources = lambda: RESOURCES  # type: ignore[method-assign]
    return app
