"""Time the catalog screen's filter per keystroke over 5,000 models, against refilling Textual's DataTable.

Per keystroke the screen filters the rows, hands the matches to the table and
redraws what is visible. This runs the real CatalogScreen headless (100x30),
types a query and deletes it again, and for each keystroke times the filter
handler plus drawing every visible line of the table and detail pane. The
baseline, measured in the same run, is what a DataTable-based screen would do
for the same matches: clear() and add_rows().

Usage: python bench/catalog_filter.py [--rows N] [--query TEXT]
Target: p99 < 16 ms per keystroke (a 60 Hz frame).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TARGET_MS = 16.0


def synthetic_listing(count: int) -> object:
    """`count` rows made from the built-in catalog (ids made unique), with fits against 16 GB free."""
    from engines.catalog.builtin import builtin_catalog
    from engines.catalog.fit import Resources
    from engines.catalog.listing import Listing, _entry_row, with_fit

    resources = Resources(ram_free_bytes=16 * 10**9, disk_free_bytes=500 * 10**9)
    base = [_entry_row(e) for e in builtin_catalog()]
    rows = [replace(base[i % len(base)], id=f"{base[i % len(base)].id}-{i // len(base)}") for i in range(count)]
    return Listing([with_fit(r, resources, 4096) for r in rows], [], 4096, resources)


async def measure(count: int, query: str, *, profile: object = None) -> tuple[list[float], list[float], list[int]]:
    from textual.widgets import DataTable, Input

    from engines.config.load import load_config
    from tui.app import LlmTuiApp
    from tui.runtime import Runtime
    from tui.screens.catalog import CatalogScreen
    from tui.widgets.model_detail import ModelDetail
    from tui.widgets.model_table import COLUMNS, ModelTable

    listing = synthetic_listing(count)
    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(env={"XDG_DATA_HOME": tmp}, cwd=Path(tmp))
        runtime = Runtime(config, listing=lambda _config, _n_ctx: listing)  # type: ignore[arg-type,return-value]
        app = LlmTuiApp(runtime, screen="catalog")
        ours: list[float] = []
        baseline: list[float] = []
        matches: list[int] = []
        async with app.run_test(size=(100, 30)) as pilot:
            screen = app.screen
            assert isinstance(screen, CatalogScreen)
            while screen.listing is None:
                await pilot.pause(0.05)
            table = screen.query_one(ModelTable)
            detail = screen.query_one(ModelDetail)
            filter_input = screen.query_one("#catalog-filter", Input)
            other = DataTable()
            await screen.mount(other)
            other.display = False
            for column in COLUMNS:
                other.add_column(column.title, width=column.width or 40)
            texts = [query[: i + 1] for i in range(len(query))] + [query[:i] for i in range(len(query) - 1, -1, -1)]
            for text in texts:
                if profile is not None:
                    profile.enable()  # type: ignore[attr-defined]
                start = time.perf_counter()
                filter_input.value = text  # as a keystroke leaves it
                screen._filter_changed(Input.Changed(filter_input, text))
                for y in range(table.size.height):
                    table.render_line(y)
                detail.show(table.current, screen.n_ctx or 4096, {})
                ours.append((time.perf_counter() - start) * 1000)
                if profile is not None:
                    profile.disable()  # type: ignore[attr-defined]
                matches.append(len(table.rows))
                start = time.perf_counter()
                other.clear()
                other.add_rows([tuple(c.cell(r) for c in COLUMNS) for r in table.rows])
                baseline.append((time.perf_counter() - start) * 1000)
                await pilot.pause()
        runtime.close()
        return ours, baseline, matches


def p99(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.99) - 1)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000, help="catalog size (default 5000)")
    parser.add_argument("--query", default="qwen 7b instruct q4", help="what is typed, then deleted")
    args = parser.parse_args()
    ours, baseline, matches = asyncio.run(measure(args.rows, args.query))
    typed = f"{args.query!r} typed then deleted; matches {min(matches)}–{max(matches)}"
    print(f"{args.rows} rows, {len(ours)} keystrokes ({typed})")
    print(f"catalog screen: median {statistics.median(ours):.2f} ms, p99 {p99(ours):.2f} ms, max {max(ours):.2f} ms")
    print(f"DataTable refill (same matches): median {statistics.median(baseline):.2f} ms, max {max(baseline):.2f} ms")
    print(f"ratio ours/DataTable (median): {statistics.median(ours) / statistics.median(baseline):.3f}")
    verdict = "met" if p99(ours) < TARGET_MS else "NOT met"
    print(f"target p99 < {TARGET_MS:.0f} ms per keystroke: {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
