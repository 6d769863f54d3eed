"""Find the models this machine can use: models_dir, the Hugging Face cache, Ollama and remote endpoints.

Every source is read on its own and never raises for a bad file or an unreachable
server: a broken file becomes a LocalModel with status "broken" and the reason,
an unreachable server a status line.
"""

from __future__ import annotations

import logging
import os
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Literal

from engines.catalog.discover_net import OllamaListing, RemoteListing, list_ollama, list_remote, shorten
from engines.catalog.fit import ModelShape
from engines.catalog.gguf_header import GgufHeader, read_gguf_header
from engines.catalog.local_model import Format, LocalModel, Source, finish_models, match_catalog
from engines.catalog.safetensors_info import HfFolderInfo, is_hf_folder, read_hf_folder
from engines.config.load import Config, RemoteEndpoint
from engines.errors import BadModelFile
from engines.tune.provenance import origin_of

__all__ = [
    "Discovery",
    "LocalModel",
    "OllamaListing",
    "RemoteListing",
    "discover",
    "list_ollama",
    "list_remote",
    "match_catalog",
    "scan_hf_cache",
    "scan_models_dir",
]

log = logging.getLogger(__name__)


MAX_DEPTH = 4  # folders below models_dir that are searched
MAX_ENTRIES = 50_000  # directory entries looked at in one scan, so a huge tree cannot stall the UI
SPLIT_GGUF = re.compile(r"^(?P<base>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)
_PARAM_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMBT]?)\s*$", re.IGNORECASE)
_SCALE = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}


@dataclass(frozen=True, slots=True)
class Discovery:
    """Every model found, plus one status line per server asked or source that failed."""

    models: list[LocalModel] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)


# --- models_dir -----------------------------------------------------------------------------------


def scan_models_dir(models_dir: Path) -> list[LocalModel]:
    """GGUF files (split ones as one model) and Hugging Face folders below models_dir; never raises."""
    if not models_dir.is_dir():
        if models_dir.exists():
            log.warning("models_dir %s is not a directory", models_dir)
        return []
    ggufs, hf_dirs, problems = _walk(models_dir)
    models = _gguf_models(ggufs, models_dir, "local")
    for folder in hf_dirs:
        rel = _rel_id(folder, models_dir)
        model = hf_model(read_hf_folder(folder), rel, "local", folder.name)
        models.append(replace(model, origin=origin_of(folder)))
    return finish_models(models + problems)


def _walk(root: Path) -> tuple[list[Path], list[Path], list[LocalModel]]:
    """GGUF files, Hugging Face folders, and an error entry per unreadable folder, depth-first."""
    ggufs: list[Path] = []
    hf_dirs: list[Path] = []
    problems: list[LocalModel] = []
    seen: set[tuple[int, int]] = set()
    stack = [(root, 0)]
    budget = MAX_ENTRIES
    while stack and budget > 0:
        folder, depth = stack.pop()
        try:
            st = folder.stat()
            if (st.st_dev, st.st_ino) in seen:  # a symlink loop or a second link to the same folder
                continue
            seen.add((st.st_dev, st.st_ino))
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            reason = f"cannot list folder: {exc.strerror or exc}"
            log.warning("skipping %s: %s", folder, reason)
            rel = _rel_id(folder, root)
            problems.append(LocalModel(rel, "local", "unknown", folder.name, folder, status="broken", error=reason))
            continue
        budget -= len(entries)
        hf = is_hf_folder({e.name for e in entries})
        if hf:
            hf_dirs.append(folder)
        for entry in entries:
            if entry.name.startswith("."):  # .cache, .locks, hidden partial downloads
                continue
            try:
                is_dir = entry.is_dir()
            except OSError:
                continue
            if is_dir:
                if not hf and depth < MAX_DEPTH:
                    stack.append((Path(entry.path), depth + 1))
            elif entry.name.lower().endswith(".gguf"):  # also a dangling link: reported as broken
                ggufs.append(Path(entry.path))
    if budget <= 0:
        log.warning("stopped scanning %s after %d entries", root, MAX_ENTRIES)
    return ggufs, hf_dirs, problems


def _rel_id(path: Path, root: Path) -> str:
    try:
        rel = path.relative_to(root).as_posix()
    except ValueError:
        rel = path.name
    return path.name if rel in ("", ".") else rel


# --- GGUF -----------------------------------------------------------------------------------------


def _gguf_models(paths: Iterable[Path], root: Path, source: Source) -> list[LocalModel]:
    """One model per single file or per split set (name-00001-of-00003.gguf)."""
    models: list[LocalModel] = []
    splits: dict[tuple[Path, str, int], dict[int, Path]] = defaultdict(dict)
    for path in paths:
        m = SPLIT_GGUF.match(path.name)
        if m and 0 < int(m["no"]) <= int(m["count"]):
            splits[(path.parent, m["base"], int(m["count"]))][int(m["no"])] = path
        else:
            models.append(_gguf_single(path, _rel_id(path.with_name(path.name[:-5]), root), source))
    for (folder, base, count), parts in splits.items():
        models.append(_gguf_split(folder, base, count, parts, _rel_id(folder / base, root), source))
    return models


def gguf_fields(header: GgufHeader) -> dict[str, Any]:
    shape = ModelShape.from_gguf_header(header)
    return {
        "head_dim": shape.head_dim,
        "weights_bytes": shape.weights_bytes,
        "params": header.parameter_count,
        "quantization": header.quantization,
        "context_length": header.context_length,
        "architecture": header.architecture,
        "layers": header.block_count,
        "heads": header.head_count,
        "kv_heads": header.head_count_kv,
        "embedding_length": header.embedding_length,
        "has_chat_template": header.has_chat_template,
    }


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def _gguf_single(path: Path, model_id: str, source: Source) -> LocalModel:
    base = {"path": path, "size_bytes": _size(path), "files": (path,)}
    try:
        header = read_gguf_header(path)
    except BadModelFile as exc:
        return model_from_fields(model_id, source, "gguf", path.stem, {**base, "error": exc.reason})
    return model_from_fields(model_id, source, "gguf", header.name or path.stem, {**base, **gguf_fields(header)})


def _gguf_split(
    folder: Path, base: str, count: int, parts: dict[int, Path], model_id: str, source: Source
) -> LocalModel:
    files = tuple(parts[no] for no in sorted(parts))
    problems: list[str] = []
    missing = [f"{base}-{no:05d}-of-{count:05d}.gguf" for no in range(1, count + 1) if no not in parts]
    if missing:
        problems.append(f"missing {len(missing)} of {count} parts: {', '.join(missing)}")
    headers: dict[int, GgufHeader] = {}
    for no, path in sorted(parts.items()):
        try:
            headers[no] = read_gguf_header(path)
        except BadModelFile as exc:
            problems.append(f"part {no}: {exc.reason}")
    sizes = [_size(p) for p in files]
    fields: dict[str, Any] = {"path": files[0], "files": files, "parts": count}
    fields["size_bytes"] = sum(s for s in sizes if s is not None)
    fields.update(gguf_split_fields(count, headers, problems))
    first = headers.get(1)
    return model_from_fields(model_id, source, "gguf", (first.name if first else None) or base, fields)


def gguf_split_fields(count: int, headers: Mapping[int, GgufHeader], problems: list[str]) -> dict[str, Any]:
    """A split GGUF's facts from its parts' headers (part number -> header), here or on the Hub; `problems`
    (missing or unreadable parts) gains the parts that disagree on the count, and makes the totals unknown."""
    for no, header in headers.items():
        declared = header.metadata.get("split.count")
        if declared is not None and declared != count:
            problems.append(f"part {no} says the model has {declared} parts, its name says {count}")
    fields: dict[str, Any] = {}
    first = headers.get(1)
    if first is not None:
        fields.update(gguf_fields(first))
    fields["params"] = None if problems else sum(h.parameter_count for h in headers.values())
    # Every part holds some of the tensors: the fit check needs them all, not part 1's.
    fields["weights_bytes"] = None if problems else sum(t.n_bytes for h in headers.values() for t in h.tensors)
    if problems:
        fields["error"] = "; ".join(problems)
    return fields


def hf_model(info: HfFolderInfo, model_id: str, source: Source, name: str) -> LocalModel:
    fields = asdict(info)
    fields["parts"] = max(1, len(info.files))
    return model_from_fields(model_id, source, "hf", name, fields)


def model_from_fields(model_id: str, source: Source, fmt: Format, name: str, fields: Mapping[str, Any]) -> LocalModel:
    status: Literal["ok", "broken"] = "broken" if fields.get("error") else "ok"
    return LocalModel(id=model_id, source=source, format=fmt, name=name, status=status, **fields)


# --- Hugging Face cache ---------------------------------------------------------------------------


def scan_hf_cache(cache_dir: Path | None = None) -> list[LocalModel]:
    """Model repos in the Hugging Face cache (default: huggingface_hub's own); missing cache → []."""
    try:
        from huggingface_hub import scan_cache_dir
        from huggingface_hub.errors import CacheNotFound
    except ImportError:
        log.info("huggingface_hub not installed: the Hugging Face cache is not scanned")
        return []
    try:
        info = scan_cache_dir(cache_dir)
    except CacheNotFound:
        return []
    except (OSError, ValueError) as exc:
        log.warning("cannot scan the Hugging Face cache %s: %s", cache_dir or "(default)", exc)
        return []
    for warning in info.warnings:
        log.info("Hugging Face cache: %s", warning)
    models: list[LocalModel] = []
    for repo in sorted(info.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model" or not repo.revisions:
            continue
        rev = max(repo.revisions, key=lambda r: ("main" in r.refs, r.last_modified))
        snapshot, prefix = rev.snapshot_path, f"hf:{repo.repo_id}"
        repo_id, revision = repo.repo_id, rev.commit_hash
        ggufs = [f.file_path for f in rev.files if f.file_name.lower().endswith(".gguf")]
        for model in _gguf_models(ggufs, snapshot, "hf-cache"):
            models.append(replace(model, id=f"{prefix}/{model.id}", repo_id=repo_id, revision=revision))
        if is_hf_folder({p.name for p in _children(snapshot)}):
            models.append(
                replace(
                    hf_model(read_hf_folder(snapshot), prefix, "hf-cache", repo.repo_id),
                    repo_id=repo_id,
                    revision=revision,
                )
            )
    return finish_models(models)


def _children(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError:
        return []


# --- catalog matching -----------------------------------------------------------------------------


# --- everything together --------------------------------------------------------------------------


def discover(
    config: Config,
    *,
    include_network: bool = True,
    hf_cache_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Discovery:
    """Models from every source; each source runs on its own, and one failing never stops the others."""
    jobs: list[tuple[str, Callable[[], tuple[list[LocalModel], str | None]]]] = [
        ("models_dir", lambda: (scan_models_dir(config.models_dir), None)),
        ("Hugging Face cache", lambda: (scan_hf_cache(hf_cache_dir), None)),
    ]
    if include_network:
        jobs.append(("Ollama", lambda: _listing(list_ollama(config.ollama_host))))
        for endpoint in config.remote_endpoints:
            jobs.append((endpoint.name, partial(_remote_job, endpoint, env)))

    def run(label: str, job: Callable[[], tuple[list[LocalModel], str | None]]) -> tuple[list[LocalModel], str | None]:
        try:
            return job()
        except Exception as exc:  # a bug in one source must not hide the others
            log.exception("scanning %s failed", label)
            return [], f"scanning {label} failed: {shorten(str(exc) or type(exc).__name__)}"

    with ThreadPoolExecutor(max_workers=min(8, len(jobs)), thread_name_prefix="discover") as pool:
        results = list(pool.map(lambda j: run(*j), jobs))
    out = Discovery()
    for models, status in results:
        out.models.extend(models)
        if status:
            out.statuses.append(status)
    return out


def _remote_job(endpoint: RemoteEndpoint, env: Mapping[str, str] | None) -> tuple[list[LocalModel], str | None]:
    return _listing(list_remote(endpoint, env=env))


def _listing(listing: OllamaListing | RemoteListing) -> tuple[list[LocalModel], str | None]:
    return listing.models, listing.status
