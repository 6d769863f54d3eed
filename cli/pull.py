"""`llm-tui models pull`: model files from the Hugging Face Hub, or a model through the Ollama daemon.

Hub files go through the same transfer as the app's queue: resumable from
their `.part` (run the command again after an interruption), verified against
the Hub's LFS sha256 and pinned to the commit the Hub names, renamed into place
only when complete. `ollama:NAME[:TAG]` asks the Ollama daemon to pull; it keeps
partial blobs, so pulling again resumes too.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from cli.progress import ProgressLine
from engines.catalog.fit import human_bytes
from engines.config.load import Config
from engines.errors import BadRequest

if TYPE_CHECKING:
    from engines.downloads.hf_repo import RepoFile, RepoListing


def add_pull_parser(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Register `models pull` under the `models` actions."""
    pull = actions.add_parser(
        "pull", help="download model files from the Hugging Face Hub, or an Ollama model (resumable, verified)"
    )
    pull.add_argument("ref", metavar="MODEL", help="a catalog id, a Hub repo id (org/name), or ollama:NAME[:TAG]")
    pull.add_argument(
        "--file",
        action="append",
        default=[],
        metavar="NAME",
        help="a file (or glob) in the repo; repeatable; default: every file",
    )
    pull.add_argument("--revision", help="branch, tag or commit (default: main)")
    pull.add_argument("--to", choices=("models", "cache"), default="models", help="where to put it (default: models)")
    return pull


def run_pull(args: argparse.Namespace, config: Config, err: TextIO = sys.stderr) -> int:
    """Download and verify each file; progress on stderr, each final path on stdout."""
    from engines.catalog.builtin import find_entry
    from engines.downloads.hf_repo import list_repo
    from engines.downloads.queue import HF_ENDPOINT

    if args.ref.lower().startswith("ollama:"):
        if args.file or args.revision or args.to != "models":
            raise BadRequest("--file, --revision and --to are for Hugging Face pulls; Ollama keeps its own models")
        return _pull_ollama(args.ref, config, err)
    repo, patterns, expected, whole = _what(args, find_entry)
    endpoint = config.hf_endpoint or HF_ENDPOINT
    token = config.hf_token.reveal() if config.hf_token else None
    listing = list_repo(repo, revision=args.revision, endpoint=endpoint, token=token)
    files = _pick(listing, patterns)
    for file in files:
        if expected and file.sha256 and expected != file.sha256:
            hub, ours = file.sha256[:12], expected[:12]
            raise BadRequest(f"the Hub's {repo}/{file.path} (sha256 {hub}…) is not the catalog's ({ours}…)")
        pull = _Pull(listing, file, endpoint, token, err)
        if args.to == "cache":
            pull.into_cache(args.revision)
        else:
            folder = config.models_dir / repo.split("/")[-1] if whole else config.models_dir
            pull.into(folder)
    return 0


def _pick(listing: RepoListing, patterns: Sequence[str]) -> list[RepoFile]:
    """The files to fetch; every --file must name (or match) at least one."""
    from engines.downloads.hf_repo import pick_files

    for pattern in patterns:
        if not pick_files(listing, [pattern]):
            raise BadRequest(f"{listing.repo} has no file {pattern!r} at commit {listing.commit[:12]}")
    files = pick_files(listing, patterns)
    if not files:
        raise BadRequest(f"{listing.repo} has no files at commit {listing.commit[:12]}")
    return files


class _Pull:
    """One Hub file: fetched pinned to the listing's commit, verified, renamed into place; its path on stdout."""

    def __init__(self, listing: RepoListing, file: RepoFile, endpoint: str, token: str | None, err: TextIO) -> None:
        self.listing, self.file, self.err = listing, file, err
        self.endpoint, self.token = endpoint, token

    def into(self, folder: Path) -> None:
        from engines.downloads.names import safe_join

        print(self.fetch(safe_join(folder, self.file.path)))

    def into_cache(self, revision: str | None) -> None:
        """The Hugging Face cache layout: blobs/<etag>, then snapshots/<commit>/<path> pointing at it."""
        from engines.downloads.hf_cache import hub_cache_dir, link_into_snapshot, placement

        repo, commit, etag = self.listing.repo, self.listing.commit, self.file.etag
        if etag is None:
            raise BadRequest(f"the Hub gave no sha256 or blob id for {repo}/{self.file.path}: it cannot be cached")
        where = placement(hub_cache_dir(), repo, commit=commit, path=self.file.path, etag=etag, revision=revision)
        if not where.blob.is_file():  # a blob the cache already has (another revision, hf_hub_download) is reused
            self.fetch(where.blob)
        print(link_into_snapshot(where, commit=commit))

    def fetch(self, target: Path) -> Path:
        from engines.downloads.queue import hf_url
        from engines.downloads.transfer import download_file

        file = self.file
        line = ProgressLine(file.path, self.err)
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        url = hf_url(self.endpoint, self.listing.repo, file.path, self.listing.commit)  # a resume gets the same bytes
        blob_id = None if file.sha256 else file.blob_id  # an LFS file's blob id is its pointer's: only sha256 counts
        result = download_file(
            url,
            target,
            expected_sha256=file.sha256,
            expected_size=file.size,
            expected_blob_id=blob_id,
            headers=headers,
            progress=line,
        )
        resumed = f", resumed at {human_bytes(result.resumed_from)}" if result.resumed_from else ""
        if file.sha256:
            line.finish(f"{human_bytes(result.size)} verified (sha256 {result.sha256[:12]}…){resumed}")
        elif blob_id:
            line.finish(f"{human_bytes(result.size)} verified (git blob {blob_id[:12]}…){resumed}")
        else:  # the listing gave no hash: say what was not checked
            line.finish(f"{human_bytes(result.size)} (size checked; the Hub listed no hash){resumed}")
        return result.path


def _pull_ollama(ref: str, config: Config, err: TextIO) -> int:
    from engines.downloads.ollama_source import normalise_name, pull_model

    name = normalise_name(ref)
    line = ProgressLine(name, err)
    result = pull_model(name, host=config.ollama_host, progress=line)
    digest = f" (digest {result.digest[:12]}…)" if result.digest else ""
    line.finish(f"{human_bytes(result.total_bytes)} in {result.layers} layers pulled by Ollama{digest}")
    print(f"ollama:{result.name}")
    return 0


def _what(args: argparse.Namespace, find_entry: Any) -> tuple[str, list[str], str | None, bool]:
    """(repo, --file patterns, the catalog's sha256, whole repo?) from a repo id or a catalog id."""
    if args.ref.count("/") == 1 and find_entry(args.ref) is None:
        return args.ref, list(args.file), None, not args.file
    entry = find_entry(args.ref)
    if entry is None:
        raise BadRequest(f"{args.ref!r} is not a catalog id, a Hub repo id (org/name) or ollama:NAME")
    if not entry.repo:
        hint = f"; try ollama:{entry.ollama}" if entry.ollama else ""
        raise BadRequest(f"the catalog names no Hugging Face repo for {entry.id}{hint}")
    if args.file:
        return entry.repo, list(args.file), None, False
    if entry.file:
        return entry.repo, [entry.file], entry.sha256, False
    return entry.repo, [], None, True
