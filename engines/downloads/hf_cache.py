"""Where a Hub file goes in the Hugging Face cache, so huggingface_hub, transformers and our discovery find it.

The layout is huggingface_hub's own (model repos only: `models--org--name`):

    <cache>/models--org--name/blobs/<etag>                  the bytes; etag = LFS sha256, or the git blob id
    <cache>/models--org--name/snapshots/<commit>/<path>     a relative symlink to the blob
    <cache>/models--org--name/refs/<branch>                 the commit the branch (or tag) pointed to

Our resumable transfer writes the blob (its `.part` sits beside it in `blobs/`); once the blob is complete and
verified, `link_into_snapshot` adds the snapshot pointer and the ref, each atomically, so a reader never sees a
half-made entry. Repo ids, commits, etags, revisions and paths are all checked so nothing lands outside the repo's
folder.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engines.downloads.hf_repo import check_repo_id, check_repo_path
from engines.errors import DownloadError

_COMMIT = re.compile(r"[0-9a-f]{40}")
_ETAG = re.compile(r"[0-9A-Za-z][0-9A-Za-z_.-]{0,127}")
_DEFAULT_REVISION = "main"


@dataclass(frozen=True, slots=True)
class CachePlacement:
    """The paths of one file in the cache."""

    blob: Path
    """Where the transfer writes: …/models--org--name/blobs/<etag>."""
    pointer: Path
    """…/models--org--name/snapshots/<commit>/<path>."""
    ref: Path | None
    """…/models--org--name/refs/<revision> when the revision is a branch or tag name, else None."""


def hub_cache_dir() -> Path:
    """huggingface_hub's cache folder (`HF_HUB_CACHE`, else `$HF_HOME/hub`, else ~/.cache/huggingface/hub)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def repo_folder(cache_dir: Path, repo: str) -> Path:
    """The folder of model repo `repo` in the cache: `<cache_dir>/models--org--name`."""
    org, name = check_repo_id(repo).split("/")
    return Path(cache_dir) / f"models--{org}--{name}"


def placement(cache_dir: Path, repo: str, *, commit: str, path: str, etag: str, revision: str | None) -> CachePlacement:
    """Where file `path` of model repo `repo` at `commit` goes; `revision` None means the default branch, "main".

    Raises BadRepoId, UnsafeFileName (for `path` or `revision`) or DownloadError (a malformed commit or etag).
    """
    folder = repo_folder(cache_dir, repo)
    if not _COMMIT.fullmatch(commit):
        raise DownloadError(f"{commit!r} is not a commit sha (40 lowercase hexadecimal digits)")
    if not _ETAG.fullmatch(etag) or ".." in etag:
        raise DownloadError(f"{etag!r} cannot name a blob in the cache: expected a sha256 or a git blob id")
    pointer = folder / "snapshots" / commit / check_repo_path(path)
    revision = _DEFAULT_REVISION if revision is None else revision
    if _COMMIT.fullmatch(revision) and revision != commit:
        raise DownloadError(f"asked for commit {revision} of {repo} but the Hub answered with commit {commit}")
    # A full commit sha needs no ref; anything else (branch, tag, refs/pr/1, a short sha) is a name for `commit`.
    ref = None if revision == commit else folder / "refs" / check_repo_path(revision)
    return CachePlacement(blob=folder / "blobs" / etag, pointer=pointer, ref=ref)


def link_into_snapshot(p: CachePlacement, *, commit: str) -> Path:
    """Point `p.pointer` at the complete blob and record `p.ref` = `commit`; returns the pointer. Idempotent.

    The pointer is a relative symlink made under a temporary name and renamed over the old one. Where symlinks
    cannot be made (Windows without developer mode) it is a hard link, or else a copy, as huggingface_hub does.
    """
    if not _COMMIT.fullmatch(commit):
        raise DownloadError(f"{commit!r} is not a commit sha (40 lowercase hexadecimal digits)")
    parts = p.pointer.parts
    if not any(parts[i : i + 2] == ("snapshots", commit) for i in range(len(parts) - 2)):
        raise DownloadError(f"{p.pointer} is not in the snapshot folder of commit {commit}")
    if not p.blob.is_file():
        raise DownloadError(f"cannot link {p.pointer.name} into the cache: its blob {p.blob} is missing")
    p.pointer.parent.mkdir(parents=True, exist_ok=True)
    target = os.path.relpath(os.path.abspath(p.blob), os.path.abspath(p.pointer.parent))
    if not _points_at(p.pointer, p.blob, target):
        _replace_with(p.pointer, lambda tmp: _make_pointer(target, p.blob, tmp))
    if p.ref is not None and not (p.ref.is_file() and p.ref.read_text(encoding="ascii", errors="replace") == commit):
        p.ref.parent.mkdir(parents=True, exist_ok=True)
        _replace_with(p.ref, lambda tmp: tmp.write_text(commit, encoding="ascii"))
    return p.pointer


def _points_at(pointer: Path, blob: Path, target: str) -> bool:
    """Whether `pointer` already is the symlink to `target`, or a hard link to `blob`."""
    if pointer.is_symlink():
        return os.readlink(pointer) == target
    with contextlib.suppress(OSError):
        return os.path.samefile(pointer, blob)
    return False


def _make_pointer(target: str, blob: Path, tmp: Path) -> None:
    """A symlink to `target` at `tmp`; a hard link or a copy of `blob` where symlinks are not supported."""
    try:
        os.symlink(target, tmp)
        return
    except (OSError, NotImplementedError):
        pass
    try:
        os.link(blob, tmp)
    except OSError:
        shutil.copyfile(blob, tmp)


def _replace_with(final: Path, make: Callable[[Path], object]) -> None:
    """Create `final` under a temporary name beside it with `make(tmp)`, then rename it into place atomically."""
    tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        make(tmp)
        os.replace(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
