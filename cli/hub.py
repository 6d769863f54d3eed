"""`llm-tui models search|fit`: any model repo on the Hub, and whether each of its files fits this machine.

`fit` reads every model's real header remotely (HTTP Range, a few MB per file, kept in the cache by commit)
through the same parsers and fit check as a local file, so the numbers are those `models list` shows once the
file is downloaded. Tables for people, JSON for scripts; progress on stderr only on a terminal.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, TextIO

from engines.catalog.fit import Resources, estimate, human_bytes, human_params
from engines.config.load import Config
from engines.errors import BadRequest, LlmTuiError
from engines.hub.search import SORT_KEYS

if TYPE_CHECKING:
    from engines.downloads.hf_repo import RepoListing
    from engines.hub.model_files import ModelFile
    from engines.hub.remote_fit import FileFit, HubSource, RepoFits

MIN_CTX, MAX_CTX = 256, 1 << 20
"""The context sizes the catalog screen takes too."""
_SCALE = {"k": 1 << 10, "m": 1 << 20}
_SHOWN_NAMES = 12
"""Model names listed in the one line that says FILE is not in the repo."""


def add_hub_parsers(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> list[argparse.ArgumentParser]:
    """Register `models search` and `models fit` under the `models` actions."""
    search = actions.add_parser("search", help="search the Hugging Face Hub's model repos")
    search.add_argument("query", metavar="QUERY", nargs="+", help="words of a model or organisation name")
    search.add_argument("--json", action="store_true", help="a JSON list on stdout")
    search.add_argument("--limit", type=int, default=20, metavar="N", help="results to show (default 20, at most 1000)")
    search.add_argument("--sort", choices=SORT_KEYS, default="downloads", help="order (default: downloads)")
    fit = actions.add_parser(
        "fit", help="whether each model in a Hub repo fits here, from its header read remotely (no download)"
    )
    fit.add_argument("repo", metavar="REPO", help="a Hub repo id (org/name)")
    fit.add_argument("file", metavar="FILE", nargs="?", help="only this model: a GGUF path, a split's base name, "
                     "or a safetensors folder ('.' for the repo's root)")  # fmt: skip
    fit.add_argument("--ctx", metavar="N", help="context size the fit assumes: 4096, 8k, 32K, 1m (default: n_ctx)")
    fit.add_argument("--gpu-layers", type=int, metavar="N", help="layers to offload (-1 = all; default: best split)")
    fit.add_argument("--revision", metavar="R", help="branch, tag or commit (default: main)")
    fit.add_argument("--json", action="store_true", help="a JSON list on stdout")
    return [search, fit]


def parse_ctx(text: str) -> int:
    """A context size in tokens from "4096", "8k", "32K" or "1m" (k = 1024); BadRequest names what is wrong."""
    raw = text.strip().lower().replace(",", "").replace("_", "")
    scale = _SCALE.get(raw[-1:], 1)
    digits = raw[:-1] if scale > 1 else raw
    if not digits.isdigit():
        raise BadRequest(f"--ctx {text.strip()!r} is not a number of tokens (examples: 4096, 8k, 32K, 1m)")
    value = int(digits) * scale
    if not MIN_CTX <= value <= MAX_CTX:
        raise BadRequest(f"--ctx {text.strip()} is {value:,} tokens; a context size is {MIN_CTX:,} to {MAX_CTX:,}")
    return value


def hub_source(config: Config) -> HubSource:
    """The endpoint (config, HF_ENDPOINT, else the Hub), the token and the cache dir the header reads use."""
    from engines.downloads.queue import HF_ENDPOINT
    from engines.hub.remote_fit import HubSource

    token = config.hf_token.reveal() if config.hf_token else None
    return HubSource(config.hf_endpoint or HF_ENDPOINT, token, cache_dir=config.cache_dir)


def machine_resources(config: Config) -> Resources:
    """Free RAM and disk (where models go), and the free VRAM of each GPU telemetry can read."""
    from engines.telemetry.resources import machine_resources as sample

    return sample(config.models_dir)


@contextlib.contextmanager
def quiet_retries() -> Iterator[None]:
    """huggingface_hub's retry chatter ("'Connection refused' thrown while requesting…", "Retrying in 4s") kept
    off stderr: the command says what went wrong in one line at the end. Its records still reach handlers on its
    own logger (search_models hears of a 429 back-off there)."""
    chatty = logging.getLogger("huggingface_hub.utils._http")
    before = chatty.propagate
    chatty.propagate = False
    try:
        yield
    finally:
        chatty.propagate = before


# -- search ---------------------------------------------------------------------------------------


def run_search(args: argparse.Namespace, config: Config, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Search the Hub; a table, or with --json the `HubRepo.to_json()` list, best first."""
    from engines.hub.search import MAX_RESULTS, search_models

    if not 1 <= args.limit <= MAX_RESULTS:
        raise BadRequest(f"--limit is 1 to {MAX_RESULTS}, not {args.limit}")
    query = " ".join(args.query)
    source = hub_source(config)
    status = _Status(err)
    repos = []
    pages = search_models(
        query, endpoint=source.endpoint, token=source.token, limit=args.limit, sort=args.sort, on_wait=status.wait
    )
    with quiet_retries():
        for page in pages:
            repos += page
            status.show(f"searching: {len(repos)} found")
    status.clear()
    if args.json:
        json.dump([repo.to_json() for repo in repos], out, indent=2)
        out.write("\n")
        return 0
    if not repos:
        print(f"No model repo on {source.endpoint} matches {query!r}.", file=err)
        return 0
    header = ("ID", "DOWNLOADS", "LIKES", "MODIFIED", "FORMATS", "GATED")
    rows = [
        (
            repo.id,
            _count(repo.downloads),
            _count(repo.likes),
            repo.last_modified.date().isoformat() if isinstance(repo.last_modified, datetime) else "-",
            ",".join(repo.formats) or "-",
            repo.gated or "no",
        )
        for repo in repos
    ]
    _table(out, header, rows, right=(1, 2))
    return 0


def _count(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


# -- fit ------------------------------------------------------------------------------------------


def run_fit(args: argparse.Namespace, config: Config, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Check every model of a repo (or FILE) against this machine; a table with the best marked, or JSON."""
    from engines.hub.remote_fit import repo_models

    n_ctx = parse_ctx(args.ctx) if args.ctx is not None else config.n_ctx
    if args.gpu_layers is not None and args.gpu_layers < -1:
        raise BadRequest(f"--gpu-layers is -1 (all) or a number of layers, not {args.gpu_layers}")
    source = hub_source(config)
    status = _Status(err)
    status.show(f"listing {args.repo}")
    with quiet_retries():
        listing, models = repo_models(args.repo, source, revision=args.revision)
    at = f"at commit {listing.commit[:12]}"
    if not models:
        raise LlmTuiError(f"{args.repo} has no GGUF or safetensors model {at}")
    if args.file is not None:
        models = _only(args.file, models, args.repo, at)
    resources = machine_resources(config)
    fits = _fit_all(listing, models, source, resources, n_ctx, args.gpu_layers, status)
    status.clear()
    if args.gpu_layers is not None:  # "the largest that fits whole" is about the best placement, not this split
        fits = replace(fits, best=None, why_not_next=None)
    read = [f for f in fits.fits if f.row is not None]
    if not read:  # nothing to show: a gated repo, a refused token, the Hub unreachable or rate limiting
        raise LlmTuiError(fits.fits[0].error or f"no header of {args.repo} could be read")
    if args.json:
        json.dump([_fit_json(fits, i) for i in range(len(fits.fits))], out, indent=2)
        out.write("\n")
    else:
        _fit_table(fits, out)
        if fits.best is not None:
            out.write(f"get it: {pull_command(args.repo, fits.fits[fits.best].model, listing.commit)}\n")
    return 0


def pull_command(repo: str, model: ModelFile, commit: str) -> str:
    """The `llm-tui models pull` line that fetches exactly this model's files at this commit."""
    import glob
    import shlex

    files = " ".join(f"--file {shlex.quote(glob.escape(f.path))}" for f in model.files)
    return f"llm-tui models pull {shlex.quote(repo)} {files} --revision {commit}"


def _only(name: str, models: Sequence[ModelFile], repo: str, at: str) -> list[ModelFile]:
    """The model FILE names: its name as listed, or (for a split) the path of one of its parts."""
    wanted = name.strip().strip("/") or "."
    for model in models:
        if wanted == model.name or any(wanted == part.path for part in model.parts):
            return [model]
    names = [m.name for m in models]
    shown = ", ".join(names[:_SHOWN_NAMES]) + (
        f" and {len(names) - _SHOWN_NAMES} more" if len(names) > _SHOWN_NAMES else ""
    )
    raise BadRequest(f"{repo} has no model {name!r} {at}; it has: {shown}")


def _fit_all(
    listing: RepoListing, models: Sequence[ModelFile], source: HubSource, resources: Resources,
    n_ctx: int, n_gpu_layers: int | None, status: _Status,
) -> RepoFits:  # fmt: skip
    """fit_repo in a thread of its own, so Ctrl+C cancels the header reads instead of waiting for them."""
    from engines.hub.remote_fit import fit_repo

    cancel = threading.Event()
    done: list[RepoFits] = []
    failed: list[BaseException] = []
    lock = threading.Lock()
    landed = [0]

    def heard(_index: int, _fit: FileFit) -> None:
        with lock:
            landed[0] += 1
            status.show(f"reading headers {landed[0]}/{len(models)}")

    def work() -> None:
        try:
            fits = fit_repo(
                listing, models, source, resources, n_ctx=n_ctx, n_gpu_layers=n_gpu_layers, on_result=heard,
                on_wait=status.wait, cancel=cancel,
            )  # fmt: skip
            done.append(fits)
        except BaseException as exc:  # handed to the main thread, which raises it
            failed.append(exc)

    status.show(f"reading headers 0/{len(models)}")
    thread = threading.Thread(target=work, name="hub-fit", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.1)
    except KeyboardInterrupt:
        cancel.set()
        raise
    if failed:
        raise failed[0]
    return done[0]


def _fit_json(fits: RepoFits, index: int) -> dict[str, object]:
    """`FileFit.to_json`, with the shape behind the verdict (what the table shows) and whether it is the best."""
    fit = fits.fits[index]
    row = fit.row
    shape = {
        "layers": row.layers if row else None,
        "weights_bytes": row.weights_bytes if row else None,
        "kv_cache_bytes": _kv_bytes(fit, fits.n_ctx),
        "n_ctx": fits.n_ctx,
    }
    return fit.to_json(fits.repo, fits.commit) | shape | {"best": index == fits.best}


def _kv_bytes(fit: FileFit, n_ctx: int) -> int | None:
    """The KV cache `n_ctx` tokens take (f16), as the fit check counts it; None when the shape is unknown."""
    from engines.catalog.listing import row_shape

    shape = row_shape(fit.row) if fit.row is not None else None
    kv = estimate(shape, n_ctx=n_ctx).kv_cache_bytes if shape is not None else 0
    return kv or None


def _fit_table(fits: RepoFits, out: TextIO) -> None:
    header = ("", "FILE", "QUANT", "SIZE", "PARAMS", "CTX", f"KV @ {fits.n_ctx}", "VERDICT")
    rows = []
    for index, fit in enumerate(fits.fits):
        row = fit.row
        if row is None:
            rows.append(("", fit.model.label, fit.model.quantization_hint or "-", _size(fit.model.download_bytes),
                         "-", "-", "-", f"unreadable: {fit.error}"))  # fmt: skip
            continue
        verdict = f"broken: {row.error}" if row.status != "ok" else (row.fit.verdict if row.fit else "-")
        rows.append(
            (
                "★" if index == fits.best else "",
                fit.model.label,
                row.quantization or fit.model.quantization_hint or "-",
                _size(row.size_bytes),
                human_params(row.params),
                f"{row.context_length:,}" if row.context_length else "-",
                _size(_kv_bytes(fit, fits.n_ctx)),
                verdict,
            )
        )
    _table(out, header, rows, right=(3, 4, 5, 6))
    if fits.best is not None:
        best = fits.fits[fits.best]
        name = best.model.quantization_hint or best.model.label
        tail = f"; the next one up does not: {fits.why_not_next}" if fits.why_not_next else ""
        out.write(f"★ {name} is the largest that fits whole{tail}\n")
    elif fits.why_not_next:
        out.write(f"None fits whole: {fits.why_not_next}\n")


def _size(n: int | None) -> str:
    return human_bytes(n) if n else "-"


# -- output ---------------------------------------------------------------------------------------


def _table(out: TextIO, header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> None:
    """A plain, aligned table; the last column is not padded."""
    lines = [tuple(header), *(tuple(r) for r in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    for line in lines:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths, strict=False))]
        out.write("  ".join([*cells, line[-1]]).rstrip() + "\n")


class _Status:
    """One line of progress on stderr, redrawn in place; nothing at all when stderr is not a terminal."""

    def __init__(self, err: TextIO) -> None:
        self.err = err
        self.live = err.isatty()
        self.width = 0
        self.lock = threading.Lock()

    def show(self, text: str) -> None:
        if not self.live:
            return
        with self.lock:
            self.err.write("\r" + text.ljust(self.width))
            self.err.flush()
            self.width = len(text)

    def wait(self, seconds: float, why: str) -> None:
        self.show(f"waiting {seconds:.0f} s: {why}")

    def clear(self) -> None:
        if self.live and self.width:
            with self.lock:
                self.err.write("\r" + " " * self.width + "\r")
                self.err.flush()
                self.width = 0
