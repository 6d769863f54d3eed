"""Will a file on the Hub fit here? Its real header, read remotely, through the same fit code as a local file.

For each model in a repo (a GGUF, a split GGUF, a safetensors set) the header is read with HTTP Range through
the same bounded parsers as local files, turned into the same fields discovery makes of a file on disk, and
checked by the same `with_fit`: a file gives the same numbers before and after it is downloaded. Headers are
read in parallel, each result handed to the caller as it lands, and kept in the cache dir by repo, commit and
file (a commit's files never change).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engines.catalog.discover import gguf_fields, gguf_split_fields, hf_model, model_from_fields
from engines.catalog.fit import Resources, estimate, fit, human_bytes
from engines.catalog.gguf_header import GgufHeader, parse_gguf_header
from engines.catalog.listing import CatalogRow, FitInfo, row_from_model, row_shape, with_fit
from engines.catalog.local_model import Format
from engines.catalog.safetensors_info import SafetensorsHeader, hf_folder_info, parse_safetensors_header
from engines.downloads.hf_repo import RepoFile, RepoListing, list_repo
from engines.downloads.transfer import DownloadAuthError, DownloadNotFound
from engines.errors import BadModelFile, DownloadError, LlmTuiError
from engines.hub.errors import HubAuthError, HubError, HubNotFound, HubRateLimited, HubUnreachable
from engines.hub.header_cache import FIELDS, entry_path, read_entry, write_entry
from engines.hub.model_files import ModelFile, expected_parts, model_files, part_number
from engines.hub.range_reader import MAX_HEADER_BYTES, MIB, RangeReader, Waiting

if TYPE_CHECKING:
    import httpx

__all__ = ["FileFit", "HubSource", "RepoFits", "best_that_fits", "fit_model", "fit_repo", "repo_models"]

MAX_JSON = 4 * MIB
"""config.json is a few KiB, tokenizer_config.json with many added tokens a few MiB."""
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
    reader = _Reader(listing, source, http, on_wait, cancel)
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


# -- reading headers remotely ---------------------------------------------------------------------


class _Reader:
    """Reads one model's headers, counting what it cost; one RangeReader per file."""

    def __init__(
        self,
        listing: RepoListing,
        source: HubSource,
        http: httpx.Client | None,
        on_wait: Waiting | None,
        cancel: threading.Event | None,
    ) -> None:
        import httpx

        self.listing = listing
        self.source = source
        self.own = http is None
        self.http = http if http is not None else httpx.Client(timeout=source.timeout_s)
        self.on_wait = on_wait
        self.cancel = cancel
        self.bytes_read = 0
        self.requests = 0

    def close(self) -> None:
        if self.own:
            self.http.close()

    def reader(self, file: RepoFile, **limits: int) -> RangeReader:
        if file.size is None:
            raise HubError(f"the Hub did not list the size of {self.listing.repo}/{file.path}")
        return RangeReader(
            self.http,
            self.source.url(self.listing.repo, file.path, self.listing.commit),
            size=file.size,
            shown=f"{self.listing.repo}/{file.path}",
            headers=self.source.headers,
            timeout_s=self.source.timeout_s,
            cancel=self.cancel,
            on_wait=self.on_wait,
            **({"max_bytes": self.source.max_header_bytes} | limits),
        )

    def count(self, reader: RangeReader) -> None:
        self.bytes_read += reader.bytes_read
        self.requests += reader.requests

    def fields(self, model: ModelFile) -> dict[str, Any]:
        if model.kind == "gguf":
            return _pick(gguf_fields(self.gguf(model.parts[0])))
        if model.kind == "gguf-split":
            return self.split_fields(model)
        return self.safetensors_fields(model)

    def gguf(self, file: RepoFile) -> GgufHeader:
        with self.reader(file) as reader:
            try:
                return parse_gguf_header(reader.read_at, reader.size, reader.shown)
            finally:
                self.count(reader)

    def split_fields(self, model: ModelFile) -> dict[str, Any]:
        count = expected_parts(model)
        problems: list[str] = []
        numbers = [part_number(p) for p in model.parts]
        missing = [no for no in range(1, count + 1) if no not in numbers]
        if missing:
            problems.append(f"the repo lacks {len(missing)} of {count} parts ({', '.join(map(str, missing))})")
        headers: dict[int, GgufHeader] = {}
        for no, part in zip(numbers, model.parts, strict=True):
            try:
                headers[no] = self.gguf(part)
            except BadModelFile as exc:
                problems.append(f"part {no}: {exc.reason}")
        return _pick(gguf_split_fields(count, headers, problems))

    def safetensors_fields(self, model: ModelFile) -> dict[str, Any]:
        problems: list[str] = []
        config: dict[str, Any] = {}
        if model.config is not None:
            try:
                config = self.json_object(model.config)
            except BadModelFile as exc:
                problems.append(f"config.json: {exc.reason}")
        headers: list[SafetensorsHeader] = []
        for shard in model.parts:
            try:
                headers.append(self.safetensors(shard))
            except BadModelFile as exc:
                problems.append(f"{shard.path}: {exc.reason}")
        info = hf_folder_info(
            Path(model.name), config, headers, problems, files=(), chat_template=self.has_chat_template(model)
        )
        local = hf_model(info, "hub", "hub", model.name)
        return {key: getattr(local, key) for key in FIELDS}

    def safetensors(self, file: RepoFile) -> SafetensorsHeader:
        with self.reader(file) as reader:
            try:
                head = reader.read_at(0, 8)
                if len(head) < 8:
                    raise BadModelFile(reader.shown, f"truncated: {reader.size} bytes, too short for a header")
                n = int.from_bytes(head[:8], "little")
                if n > reader.size - 8:
                    raise BadModelFile(reader.shown, f"corrupt: header length {n} exceeds the file ({reader.size} B)")
                raw = head[8 : 8 + n]
                if len(raw) < n:
                    raw += reader.read_at(8 + len(raw), n - len(raw))
                if len(raw) < n:
                    raise BadModelFile(reader.shown, f"truncated: the header needs {n} bytes")
                return parse_safetensors_header(raw[:n], reader.size, reader.shown)
            finally:
                self.count(reader)

    def json_object(self, file: RepoFile) -> dict[str, Any]:
        shown = f"{self.listing.repo}/{file.path}"
        if file.size is not None and file.size > MAX_JSON:
            raise BadModelFile(shown, f"{file.size:,} bytes; the limit for a JSON file is {MAX_JSON:,}")
        with self.reader(file, max_bytes=MAX_JSON, first_window=MAX_JSON, max_window=MAX_JSON) as reader:
            try:
                raw = reader.read_at(0, reader.size)
            finally:
                self.count(reader)
        try:
            doc = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise BadModelFile(shown, f"invalid JSON ({type(exc).__name__})") from None
        if not isinstance(doc, dict):
            raise BadModelFile(shown, f"a JSON {type(doc).__name__}, expected an object")
        return doc

    def has_chat_template(self, model: ModelFile) -> bool | None:
        names = {f.path.rsplit("/", 1)[-1]: f for f in model.extras}
        if "chat_template.jinja" in names or "chat_template.json" in names:
            return True
        tokenizer_config = names.get("tokenizer_config.json")
        if tokenizer_config is None:
            return False
        try:
            return bool(self.json_object(tokenizer_config).get("chat_template"))
        except (BadModelFile, HubNotFound):
            return None


def error_kind(exc: LlmTuiError) -> str:
    """FileFit.error_kind for an error."""
    kinds: tuple[tuple[type[LlmTuiError], str], ...] = (
        (HubAuthError, "auth"),
        (HubUnreachable, "unreachable"),
        (HubRateLimited, "rate_limited"),
        (HubNotFound, "not_found"),
        (BadModelFile, "bad_file"),
    )
    found = next((kind for cls, kind in kinds if isinstance(exc, cls)), None)
    return found or ("cancelled" if "cancelled" in str(exc) else "error")


def _pick(fields: dict[str, Any]) -> dict[str, Any]:
    return {key: fields[key] for key in FIELDS if key in fields}


# -- cache ------------------------------------------------------------------------------------------


def _entry(source: HubSource, listing: RepoListing, model: ModelFile) -> Path | None:
    if source.cache_dir is None:
        return None
    return entry_path(source.cache_dir, source.endpoint, source.token, listing.repo, listing.commit, model.name)
