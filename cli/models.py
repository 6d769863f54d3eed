"""`llm-tui models list|rm|pull|search|fit`: the catalog from the command line (JSON for scripts, a table for
people); `search` and `fit` (the Hub beyond the catalog) live in cli/hub.py, `pull` in cli/pull.py."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TextIO

from engines.catalog.fit import human_bytes, human_params
from engines.catalog.listing import CatalogRow, Listing, build_listing, find_row, remove_local
from engines.config.load import Config
from engines.errors import LlmTuiError


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    global_options: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Register `models list`, `models rm`, `models pull`, `models search` and `models fit` under `sub`."""
    models = sub.add_parser(
        "models", help="list the models here and in the catalog; delete local ones; search the Hub and check fits"
    )
    actions = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="every model with metadata and a fit verdict")
    listing.add_argument("--json", action="store_true", help="a JSON list on stdout (see CLI.md)")
    listing.add_argument("--local", action="store_true", help="only models on this machine and its servers")
    listing.add_argument("--n-ctx", type=int, metavar="N", help="context size the fit verdicts assume")
    rm = actions.add_parser("rm", help="delete a local model's file(s) from the models directory")
    rm.add_argument("id", metavar="ID", help="the id `models list` shows (or the catalog id of a local file)")
    rm.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    from cli.hub import add_hub_parsers
    from cli.pull import add_pull_parser

    pull = add_pull_parser(actions)
    for parser in (models, listing, rm, pull, *add_hub_parsers(actions)):
        global_options(parser)


def run_models(args: argparse.Namespace, config: Config, out: TextIO = sys.stdout) -> int:
    """Run `models list`, `models rm`, `models pull`, `models search` or `models fit`."""
    if args.models_command == "pull":
        from cli.pull import run_pull

        return run_pull(args, config)
    if args.models_command in ("search", "fit"):
        from cli.hub import run_fit, run_search

        return (run_search if args.models_command == "search" else run_fit)(args, config, out)
    if args.models_command == "list":
        listing = build_listing(config, local_only=args.local, n_ctx=args.n_ctx)
        for status in listing.statuses:
            print(f"llm-tui: {status}", file=sys.stderr)
        if args.json:
            json.dump([row.to_json() for row in listing.rows], out, indent=2)
            out.write("\n")
        else:
            write_table(listing, out)
        return 0
    listing = build_listing(config, local_only=True, include_network=False)
    row = find_row(listing, args.id)
    if row is None:
        hint = "`llm-tui models list --local` shows them"
        raise LlmTuiError(f"no local model {args.id!r} in {config.models_dir}; {hint}")
    if not args.yes:
        if not sys.stdin.isatty():
            raise LlmTuiError(f"not deleting {row.path} without confirmation: add --yes")
        answer = input(f"Delete {row.path} ({human_bytes(row.size_bytes or 0)})? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("Nothing deleted.", file=sys.stderr)
            return 1
    for path in remove_local(row, config.models_dir):
        print(f"deleted {path}", file=out)
    return 0


def write_table(listing: Listing, out: TextIO) -> None:
    """A plain, aligned table: one model per line."""
    header = ("ID", "SOURCE", "FORMAT", "SIZE", "PARAMS", "QUANT", "CTX", f"FIT @ {listing.n_ctx} ctx")
    lines = [header, *(_cells(row) for row in listing.rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    for line in lines:
        out.write("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=False)) + "  " + line[-1])
        out.write("\n")


def _cells(row: CatalogRow) -> tuple[str, ...]:
    status = f"broken: {row.error}" if row.status != "ok" else (row.fit.verdict if row.fit else "-")
    return (
        row.id,
        row.source,
        row.format,
        human_bytes(row.size_bytes) if row.size_bytes else "-",
        human_params(row.params),
        row.quantization or "-",
        str(row.context_length) if row.context_length else "-",
        status,
    )
