"""A fleet member for the tests: the real `llm-tui serve` (cli.main) in this process, with fake GPUs of the sizes
given and models loaded on the fake engine, so several members with different hardware run on one small machine.

    python -m tests.fleet.fleet_member --gpus 24,12 -- serve --port 0 --model M.gguf --engine fake ...

Only the GPU source is replaced (NVML is not here); the server, its routes, keys and the manager are the real ones.
"""

from __future__ import annotations

import argparse
import sys

from engines.telemetry.fake import GIB, FakeGpuSource
from engines.telemetry.snapshot import GpuStats


def fake_gpus(sizes_gib: list[int], name: str) -> FakeGpuSource:
    """GPUs of these sizes, each a quarter used."""
    return FakeGpuSource(
        [
            GpuStats(
                index=i,
                name=f"NVIDIA {name} (fake)",
                uuid=f"GPU-{name}-{i}",
                utilization_pct=10.0 * (i + 1),
                memory_used_bytes=size * GIB // 4,
                memory_total_bytes=size * GIB,
                temperature_c=50.0,
                power_w=100.0,
            )
            for i, size in enumerate(sizes_gib)
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gpus", default="", help="GPU sizes in GiB, comma-separated ('' = none)")
    parser.add_argument("--gpu-name", default="A100")
    parser.add_argument("rest", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    sizes = [int(s) for s in args.gpus.split(",") if s]
    source = fake_gpus(sizes, args.gpu_name)

    import engines.telemetry.nvml as nvml

    nvml.open_gpu_source = lambda: source  # type: ignore[assignment]  # cli.serve opens it by this name
    from cli.main import main as llm_tui

    rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
    return llm_tui(rest)


if __name__ == "__main__":
    sys.exit(main())
