"""A Hugging Face model repo's files at one commit, from one Hub API request, and how Hub errors become ours.

Pulling a whole repo (or every `*.gguf` in it) needs the list of its files pinned to a commit, with sizes and
hashes to verify the downloads against. `HfApi.model_info(files_metadata=True)` gives all of it in one request
(`GET {endpoint}/api/models/{repo}[/revision/{rev}]?blobs=True`), honouring mirrors and tokens. Every path the
server lists is checked before anyone joins it to a folder. `hub_errors` maps huggingface_hub's exceptions to
ours, for this module and `hf_source`.
"""

from __future__ import annotations

import contextlib
import fnmatch
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import PureWindowsPath
from typing import Any

from engines.downloads.names import UnsafeFileName
from engines.downloads.transfer import DownloadAuthError, DownloadNotFound
from engines.errors import DownloadError

_SHA256 = re.compile(r"[0-9a-f]{64}")
_COMMIT = re.compile(r"[0-9a-f]{40}")
_BLOB_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_REPO_PART = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?", re.ASCII)


class BadRepoId(DownloadError):
    """A repo id is not `org/name`, or has parts that could not be a folder name in the Hugging Face cache."""


@dataclass(frozen=True, slots=True)
class RepoFile:
    """One file of a repo at the listing's commit."""

    path: str
    """The path inside the repo, '/'-separated ("model-00001-of-00002.safetensors", "sub/x.gguf"); checked safe."""
    size: int | None
    sha256: str | None
    """The LFS sha256; None for files kept in git itself."""
    blob_id: str | None
    """The git blob id (the ETag of non-LFS files)."""

    @property
    def etag(self) -> str | None:
        """What the Hugging Face cache names this file's blob: the sha256 for LFS files, the git blob id otherwise."""
        return self.sha256 or self.blob_id


@dataclass(frozen=True, slots=True)
class RepoListing:
    """Every file of a repo, pinned to one commit."""

    repo: str
    commit: str
    files: tuple[RepoFile, ...]


def check_repo_id(repo: str) -> str:
    """`repo` if it is a model repo id `org/name` that is safe as the cache folder `models--org--name`."""
    parts = repo.split("/")
    ok = len(parts) == 2 and len(repo) <= 96 and all(_REPO_PART.fullmatch(p) for p in parts)
    if not ok or "--" in repo or ".." in repo or repo.endswith(".git"):
        raise BadRepoId(f"{repo!r} is not a Hugging Face model repo id: expected org/name, like google/gemma-3-1b-it")
    return repo


def check_repo_path(path: str) -> str:
    """`path` if it is a plain relative '/'-separated path; raises UnsafeFileName naming it otherwise."""
    if not path or "\x00" in path:
        raise UnsafeFileName(path, "empty or contains a NUL byte")
    if "\\" in path:
        raise UnsafeFileName(path, "backslashes are not allowed")
    if path.startswith("/") or PureWindowsPath(path).drive:
        raise UnsafeFileName(path, "absolute paths are not allowed")
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise UnsafeFileName(path, "'..', '.' and empty segments are not allowed")
    return path


def transport_errors() -> tuple[type[BaseException], ...]:
    """The HTTP libraries' network errors (not all are OSError); only those already imported can have been raised."""
    found: list[type[BaseException]] = []
    for name in ("httpx2", "httpx"):
        error = getattr(sys.modules.get(name), "TransportError", None)
        if isinstance(error, type) and issubclass(error, BaseException):
            found.append(error)
    return tuple(found)


@contextlib.contextmanager
def hub_errors(endpoint: str, repo: str, where: str) -> Iterator[None]:
    """Turn huggingface_hub's errors inside the block into DownloadNotFound / DownloadAuthError / DownloadError.

    `repo` names the repo in the gated-licence hint, `where` names what was asked for ("org/name/file@rev").
    """
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        yield
    except GatedRepoError:
        raise DownloadAuthError(f"{repo} is gated: accept its licence on the Hub and set hf_token") from None
    except (RepositoryNotFoundError, EntryNotFoundError, RevisionNotFoundError):
        raise DownloadNotFound(f"{where} is not on {endpoint} (or is private: set hf_token)") from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status in (401, 403):
            raise DownloadAuthError(f"{endpoint} refused {where} (HTTP {status}): check hf_token") from None
        if status == 429:
            after = exc.response.headers.get("retry-after") if exc.response is not None else None
            when = f"in {after} s" if after and after.isdigit() else "in a minute"
            raise DownloadError(
                f"{endpoint} is rate limiting requests (HTTP 429) for {where}; try again {when},"
                " or set hf_token (signed-in users get a higher limit)"
            ) from None
        raise DownloadError(f"{endpoint} could not describe {where} (HTTP {status})") from None
    except Exception as exc:
        if isinstance(exc, (OSError, *transport_errors())):  # connection refused, DNS, timeout; httpx's are not OSError
            raise DownloadError(
                f"cannot reach {endpoint} ({type(exc).__name__}): check the network or HF_ENDPOINT"
            ) from None
        raise


def list_repo(
    repo: str, *, revision: str | None, endpoint: str, token: str | None, timeout_s: float = 30.0
) -> RepoListing:
    """Every file of model repo `repo` at `revision` (default branch when None), pinned to the commit it resolved to.

    Raises BadRepoId, UnsafeFileName (a listed path would escape its folder), DownloadNotFound, DownloadAuthError
    or DownloadError. `token` is sent as a Bearer token only when given (never one from the environment).
    """
    from huggingface_hub import HfApi

    check_repo_id(repo)
    endpoint = endpoint.rstrip("/")
    where = repo + (f"@{revision}" if revision else "")
    api = HfApi(endpoint=endpoint, token=token or False)
    try:
        with hub_errors(endpoint, repo, where):
            info = api.model_info(repo, revision=revision, files_metadata=True, timeout=timeout_s)
    except (KeyError, TypeError, ValueError) as exc:  # not JSON, or not shaped like the Hub's model info
        raise DownloadError(f"{endpoint} sent no usable file list for {where} ({type(exc).__name__})") from None
    commit = info.sha
    if not isinstance(commit, str) or not _COMMIT.fullmatch(commit):
        raise DownloadError(f"{endpoint} did not say which commit {where} is at (got {commit!r})")
    if info.siblings is None:
        raise DownloadError(f"{endpoint} did not list the files of {where}")
    files = tuple(_repo_file(sibling, where) for sibling in info.siblings)
    return RepoListing(repo=repo, commit=commit, files=files)


def _repo_file(sibling: Any, where: str) -> RepoFile:
    """One `RepoSibling` as a checked RepoFile."""
    path = check_repo_path(sibling.rfilename)
    lfs = sibling.lfs
    sha256 = str(lfs["sha256"]).lower() if lfs else None
    if sha256 is not None and not _SHA256.fullmatch(sha256):
        raise DownloadError(f"the Hub gave {path} in {where} a sha256 that is not 64 hexadecimal digits: {sha256!r}")
    blob_id = sibling.blob_id.lower() if isinstance(sibling.blob_id, str) else None
    if blob_id is not None and not _BLOB_ID.fullmatch(blob_id):
        raise DownloadError(f"the Hub gave {path} in {where} a malformed blob id: {blob_id!r}")
    size = lfs["size"] if lfs else sibling.size
    return RepoFile(path=path, size=size if isinstance(size, int) else None, sha256=sha256, blob_id=blob_id)


def pick_files(listing: RepoListing, patterns: Sequence[str] = ()) -> list[RepoFile]:
    """The files whose path matches any of the glob `patterns` (fnmatch, case-sensitive; `*` crosses '/'), or all."""
    if isinstance(patterns, str):
        patterns = (patterns,)
    if not patterns:
        return list(listing.files)
    return [f for f in listing.files if any(fnmatch.fnmatchcase(f.path, pattern) for pattern in patterns)]
