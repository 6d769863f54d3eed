"""What the Hugging Face Hub says about a file before we fetch it: size, sha256 and the commit, via huggingface_hub.

huggingface_hub knows the Hub's endpoints, `HF_ENDPOINT` mirrors and token
handling; the transfer itself stays ours (resumable, verified). LFS files
carry their sha256 as the linked ETag, so a download from the Hub is checked
against the hash the Hub holds even when the catalog has none; files kept in
git itself carry their git blob id as the ETag, and are checked against that.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_BLOB_ID = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True, slots=True)
class HubFile:
    """A file on the Hub at one commit."""

    url: str
    size: int | None
    sha256: str | None
    """None for files not in LFS (their ETag is a git blob id, not a sha256)."""
    commit: str | None
    blob_id: str | None = None
    """The git blob id (sha1) of a file not in LFS, from its ETag; None for LFS files."""


def hub_file(repo: str, file: str, *, revision: str | None, endpoint: str, token: str | None) -> HubFile:
    """Ask the Hub (or a mirror) about `file` in `repo`; raises DownloadNotFound / DownloadAuthError / DownloadError."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    from engines.downloads.hf_repo import hub_errors

    url = hf_hub_url(repo, file, revision=revision, endpoint=endpoint)
    where = f"{repo}/{file}" + (f"@{revision}" if revision else "")
    with hub_errors(endpoint, repo, where):
        meta = get_hf_file_metadata(url, token=token or False, endpoint=endpoint)
    etag = (meta.etag or "").strip('"').lower()
    sha256 = etag if _SHA256.match(etag) else None
    blob_id = etag if sha256 is None and _BLOB_ID.match(etag) else None
    return HubFile(url=url, size=meta.size, sha256=sha256, commit=meta.commit_hash, blob_id=blob_id)
