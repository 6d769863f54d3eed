"""Start-up cost: `import tui.app` vs `import textual.app`, each in fresh interpreters.

Target: tui.app ≤ 1.5 × textual.app (llm-tui must paint its first frame without
importing torch, transformers or llama_cpp).

    python bench/import_time.py [--runs 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBE = (
    "import sys, time; t = time.perf_counter(); import {module}; d = time.perf_counter() - t; "
    "heavy = [m for m in ('torch', 'transformers', 'llama_cpp', 'pynvml', 'huggingface_hub') if m in sys.modules]; "
    "print(d, ','.join(heavy))"
)


def measure(module: str, runs: int) -> tuple[float, str]:
    """Median import time in ms over `runs` fresh interpreters, and heavy modules seen."""
    times = []
    heavy = ""
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", PROBE.format(module=module)], capture_output=True, text=True, check=True, cwd=ROOT
        ).stdout.split()
        times.append(float(out[0]) * 1000)
        heavy = out[1] if len(out) > 1 else ""
    return statistics.median(times), heavy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    base, _ = measure("textual.app", args.runs)
    ours, heavy = measure("tui.app", args.runs)
    ratio = ours / base
    print(f"import textual.app: {base:.1f} ms (median of {args.runs})")
    print(f"import tui.app:     {ours:.1f} ms; heavy libraries imported: {heavy or 'none'}")
    print(f"ratio = {ratio:.2f} (target <= 1.5: {'met' if ratio <= 1.5 else 'NOT met'})")


if __name__ == "__main__":
    main()
