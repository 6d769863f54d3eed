"""Will a file on the Hub fit here? Its real header, read remotely, through the same fit code as a local file.

For each model in a repo (a GGUF, a split GGUF, a safetensors set) the header is read with HTTP Range through
the same bounded parsers as local files, turned into the same fields discovery makes of a file on disk, and
checked by the same `with_fit`: a file gives the same numbers before and after it is downloaded. Headers are
read in parallel, each result handed to the caller as it lands, and kept in the cache dir by repo, commit and
file (a commit's files never change).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engines.catalog.discover import model_from_fields
from engines.catalog.fit import Resources, estimate, fit, human_bytes
from engines.catalog.listing import CatalogRow, FitInfo, row_from_model, row_shape, with_fit
from engines.catalog.local_model import Format
from engines.downloads.hf_repo import RepoListing, list_repo
from engines.downloads.transfer import DownloadAuthError, DownloadNotFound
from engines.errors import BadModelFile, DownloadError
from engines.hub.errors import HubAuthError, HubError, HubNotFound, HubRateLimited, HubUnreachable
from engines.hub.header_cache import entry_path, read_entry, write_entry
from engines.hub.model_files import ModelFile, model_files
from engines.hub.range_reader import MAX_HEADER_BYTES, Waiting
from engines.hub.remote_header import HeaderReader, error_kind

if TYPE_CHECKING:
    import httpx

__all__ = ["FileFit", "HubSource", "RepoFits", "best_that_fits", "fit_model", "fit_repo", "repo_models"]

WORKERS = 8
"""Headers read at once: enough to hide round trips, few enough to be polite to the Hub."""


@dataclass(frozen=True, slots=True)
class HubSource:
    """Where and how to ask: the endpoint (HF_ENDPOINT or a mirror), the token, and where results are kept."""

    endpoint: str
    token: str | None = None
    cache_dir: Path | None = None
    """Header results go under `<cache_dir>/hub-headers`; None keeps nothing."""
    timeout_s: float = 30.0
    max_header_bytes: int = MAX_HEADER_BYTES
    """The most read remotely for one file's header."""

    def url(self, repo: str, path: str, commit: str) -> str:
        from huggingface_hub import hf_hub_url

        return hf_hub_url(repo, path, revision=commit, endpoint=self.endpoint.rstrip("/"))

    @property
    def headers(self) -> dict[str, str]:
        from engines import __version__

        headers = {"user-agent": f"llm-tui/{__version__}"}
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        return headers


@dataclass(frozen=True, slots=True)
class FileFit:
    """One model of a repo: its header's facts and fit verdict, or why there are none."""

    model: ModelFile
    row: CatalogRow | None
    """The catalog row (source "hub") with its fit; None when the header could not be read."""
    error: str | None = None
    error_kind: str | None = None
    """What kind of failure: "auth" (gated or private: a token would help), "unreachable", "rate_limited",
    "not_found", "bad_file" (the header is malformed or past the bound), "cancelled"."""
    bytes_read: int = 0
    """Body bytes fetched to read its header(s); for a cached result, what the first read cost."""
    requests: int = 0
    cached: bool = False

    def to_json(self, repo: str, commit: str) -> dict[str, Any]:
        """`llm-tui models fit --json`: the `models list --json` fields plus commit and header_bytes_read."""
        row = self.row
        base: dict[str, Any] = (
            row.to_json()
            if row is not None
            else {"id": f"hf:{repo}/{self.model.name}", "source": "hub", "status": "broken", "error": self.error}
        )
        return base | {
            "repo": repo,
            "file": self.model.name,
            "files": [f.path for f in self.model.files],
            "kind": self.model.kind,
            "download_bytes": self.model.download_bytes,
            "commit": commit,
            "header_bytes_read": self.bytes_read,
            "header_requests": self.requests,
            "cached": self.cached,
            "error_kind": self.error_kind,
        }


@dataclass(frozen=True, slots=True)
class RepoFits:
    """Every model of a repo at one commit, checked against this machine at one context size."""

    repo: str
    commit: str
    n_ctx: int
    fits: tuple[FileFit, ...]
    best: int | None
    """Index into `fits` of the largest model that fits entirely in VRAM (RAM without a GPU)."""
    why_not_next: str | None
    """Why the next larger one does not ("needs 9.1 GB VRAM, 7.8 GB free")."""


def repo_models(repo: str, source: HubSource, *, revision: str | None = None) -> tuple[RepoListing, list[ModelFile]]:
    """The repo's listing pinned to a commit, and the models in it. Raises HubError."""
    try:
        listing = list_repo(repo, revision=revision, endpoint=source.endpoint, token=source.token)
    except DownloadAuthError as exc:
        raise HubAuthError(str(exc)) from None
    except DownloadNotFound as exc:
        raise HubNotFound(str(exc)) from None
    except DownloadError as exc:
        text = str(exc)
        if "HTTP 429" in text:
            raise HubRateLimited(text, 60.0) from None
        raise (HubUnreachable if "cannot reach" in text else HubError)(text) from None
    return listing, model_files(listing)


def fit_repo(
    listing: RepoListing,
    models: Sequence[ModelFile],
    source: HubSource,
    resources: Resources,
    *,
    n_ctx: int,
    n_gpu_layers: int | None = None,
    on_result: Callable[[int, FileFit], None] | None = None,
    on_wait: Waiting | None = None,
    cancel: threading.Event | None = None,
    workers: int = WORKERS,
) -> RepoFits:
    """Read every model's header (in parallel) and check it; `on_result(index, fit)` hears each as it lands."""
    import httpx

    results: list[FileFit | None] = [None] * len(models)
    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    with httpx.Client(limits=limits, timeout=source.timeout_s) as http:

        def one(index: int) -> None:
            if cancel is not None and cancel.is_set():
                return
            result = fit_model(
                listing, models[index], source, resources, n_ctx=n_ctx, n_gpu_layers=n_gpu_layers, http=http,
                on_wait=on_wait, cancel=cancel,
            )  # fmt: skip
            results[index] = result
            if on_result is not None:
                on_result(index, result)

        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="hub-header") as pool:
            list(pool.map(one, range(len(models))))
    fits = tuple(
        r if r is not None else FileFit(m, None, "cancelled", "cancelled") for r, m in zip(results, models, strict=True)
    )
    best, why = best_that_fits(fits, resources, n_ctx)
    return RepoFits(listing.repo, listing.commit, n_ctx, fits, best, why)


def fit_model(
    listing: RepoListing,
    model: ModelFile,
    source: HubSource,
    resources: Resources,
    *,
    n_ctx: int,
    n_gpu_layers: int | None = None,
    http: httpx.Client | None = None,
    on_wait: Waiting | None = None,
    cancel: threading.Event | None = None,
) -> FileFit:
    """One model's header facts (from the cache, or read remotely) and its fit; never raises for a bad file."""
    entry = _entry(source, listing, model)
    cached = read_entry(entry) if entry is not None else None
    if cached is not None:
        fields, bytes_read, requests = cached
        return _with_fit(listing, model, fields, resources, n_ctx, n_gpu_layers, bytes_read, requests, cached=True)
    reader = HeaderReader(listing, source, http, on_wait, cancel)
    try:
        fields = reader.fields(model)
    except (BadModelFile, HubError) as exc:
        reason = exc.reason if isinstance(exc, BadModelFile) else str(exc)
        return FileFit(model, None, reason, error_kind(exc), reader.bytes_read, reader.requests)
    finally:
        reader.close()
    if entry is not None:
        what = {"repo": listing.repo, "commit": listing.commit, "file": model.name}
        write_entry(entry, what, fields, reader.bytes_read, reader.requests)
    return _with_fit(listing, model, fields, resources, n_ctx, n_gpu_layers, reader.bytes_read, reader.requests)


def _with_fit(
    listing: RepoListing,
    model: ModelFile,
    fields: dict[str, Any],
    resources: Resources,
    n_ctx: int,
    n_gpu_layers: int | None,
    bytes_read: int,
    requests: int,
    *,
    cached: bool = False,
) -> FileFit:
    fmt: Format = "hf" if model.kind == "safetensors" else "gguf"
    name = model.name.rsplit("/", 1)[-1] if model.name != "." else listing.repo.rsplit("/", 1)[-1]
    local = model_from_fields(
        f"hf:{listing.repo}/{model.name}",
        "hub",
        fmt,
        name.removesuffix(".gguf"),
        {
            **fields,
            "size_bytes": model.size_bytes,  # the model files, as a local file lists; the JSON adds download_bytes
            "repo_id": listing.repo,
            "revision": listing.commit,
            "parts": len(model.parts),
        },
    )
    row = replace(row_from_model(local, None), file=model.name)
    if n_gpu_layers is None:
        row = with_fit(row, resources, n_ctx)
    else:
        row = _fit_at_layers(row, resources, n_ctx, n_gpu_layers)
    return FileFit(model, row, row.error, "bad_file" if row.error else None, bytes_read, requests, cached)


def _fit_at_layers(row: CatalogRow, resources: Resources, n_ctx: int, n_gpu_layers: int) -> CatalogRow:

    shape = row_shape(row)
    if shape is None:
        return row
    result = fit(shape, resources, n_ctx=n_ctx, download_bytes=row.size_bytes, n_gpu_layers=n_gpu_layers)
    return replace(row, fit=FitInfo.from_fit(result))


def best_that_fits(fits: Sequence[FileFit], resources: Resources, n_ctx: int) -> tuple[int | None, str | None]:
    """The largest model that fits entirely in VRAM (or RAM when there is no GPU), and why the next one up does
    not; (None, why the smallest does not) when none fits."""
    on_gpu = bool(resources.gpus)
    sized = sorted(
        (i for i, f in enumerate(fits) if f.row is not None and f.row.fit is not None and row_shape(f.row)),
        key=lambda i: _weights(fits[i]),
    )
    whole = [i for i in sized if _whole(fits[i], on_gpu)]
    best = whole[-1] if whole else None
    above = [i for i in sized if best is None or _weights(fits[i]) > _weights(fits[best])]
    above = [i for i in above if not _whole(fits[i], on_gpu)]
    if not above:
        return best, None
    return best, _why_not(fits[above[0]], resources, n_ctx)


def _weights(fit: FileFit) -> int:
    row = fit.row
    return (row.weights_bytes or row.size_bytes or 0) if row is not None else 0


def _whole(fit: FileFit, on_gpu: bool) -> bool:
    verdict = fit.row.fit.verdict if fit.row is not None and fit.row.fit is not None else ""
    return verdict.startswith("fits on GPU") if on_gpu else verdict.startswith("fits in RAM")


def _why_not(fit: FileFit, resources: Resources, n_ctx: int) -> str:
    assert fit.row is not None
    shape = row_shape(fit.row)
    assert shape is not None
    name = fit.model.quantization_hint or fit.row.quantization or fit.row.name
    if resources.gpus:
        need = estimate(shape, n_ctx=n_ctx, n_gpu_layers=-1).vram_bytes
        free = max(g.free_bytes for g in resources.gpus)
        return f"{name} needs {human_bytes(need)} VRAM, {human_bytes(free)} free"
    need = estimate(shape, n_ctx=n_ctx).ram_bytes
    return f"{name} needs {human_bytes(need)} RAM, {human_bytes(resources.ram_free_bytes)} free"


# -- cache ------------------------------------------------------------------------------------------


def _entry(source: HubSource, listing: RepoListing, model: ModelFile) -> Path | None:
    if source.cache_dir is None:
        return None
    return entry_path(source.cache_dir, source.endpoint, source.token, listing.repo, listing.commit, model.name)
