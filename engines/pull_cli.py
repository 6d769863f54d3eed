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
from typing import Any, TextIO

from engines.catalog.fit import human_bytes
from engines.config import Config
from engines.errors import BadRequest
from engines.progress_line import ProgressLine


def add_pull_parser(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Register `models pull` under the `models` actions."""
    pull = actions.add_parser(
        "pull", help="download model files from the Hugging Face Hub, or an Ollama model (resumable, verified)"
    )
    pull.add_argument("ref", metavar="MODEL", help="a catalog id, a Hub repo id (org/name), or ollama:NAME[:TAG]")
    pull.add_argument("--file", action="append", default=[], metavar="NAME", help="a file in the repo (repeatable)")
    pull.add_argument("--revision", help="branch, tag or commit (default: main)")
    pull.add_argument("--to", choices=("models", "cache"), default="models", help="where to put it (default: models)")
    return pull


def run_pull(args: argparse.Namespace, config: Config, err: TextIO = sys.stderr) -> int:
    """Download and verify each file; progress on stderr, each final path on stdout."""
    from engines.catalog.builtin import find_entry

    if args.ref.lower().startswith("ollama:"):
        if args.file or args.revision or args.to != "models":
            raise BadRequest("--file, --revision and --to are for Hugging Face pulls; Ollama keeps its own models")
        return _pull_ollama(args.ref, config, err)
    if args.to == "cache":
        raise BadRequest("--to cache (the Hugging Face cache layout) is not supported yet; files go to models_dir")
    for repo, file, expected in _what(args, find_entry):
        _pull_one(repo, file, expected, args.revision, config, err)
    return 0


def _pull_one(repo: str, file: str, expected: str | None, revision: str | None, config: Config, err: TextIO) -> None:
    from engines.downloads.hf_source import hub_file
    from engines.downloads.names import safe_join
    from engines.downloads.queue import HF_ENDPOINT, hf_url
    from engines.downloads.transfer import download_file

    endpoint = config.hf_endpoint or HF_ENDPOINT
    token = config.hf_token.reveal() if config.hf_token else None
    info = hub_file(repo, file, revision=revision, endpoint=endpoint, token=token)
    target = safe_join(config.models_dir, file)
    if expected and info.sha256 and expected != info.sha256:
        hub, ours = info.sha256[:12], expected[:12]
        raise BadRequest(f"the Hub's {repo}/{file} (sha256 {hub}…) is not the catalog's ({ours}…)")
    line = ProgressLine(file, err)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = hf_url(endpoint, repo, file, info.commit or revision)  # pinned: a resume gets the same bytes
    sha256 = expected or info.sha256
    result = download_file(url, target, expected_sha256=sha256, expected_size=info.size, headers=headers, progress=line)
    resumed = f", resumed at {human_bytes(result.resumed_from)}" if result.resumed_from else ""
    line.finish(f"{human_bytes(result.size)} verified (sha256 {result.sha256[:12]}…){resumed}")
    print(result.path)


def _pull_ollama(ref: str, config: Config, err: TextIO) -> int:
    from engines.downloads.ollama_source import normalise_name, pull_model

    name = normalise_name(ref)
    line = ProgressLine(name, err)
    result = pull_model(name, host=config.ollama_host, progress=line)
    digest = f" (digest {result.digest[:12]}…)" if result.digest else ""
    line.finish(f"{human_bytes(result.total_bytes)} in {result.layers} layers pulled by Ollama{digest}")
    print(f"ollama:{result.name}")
    return 0


def _what(args: argparse.Namespace, find_entry: Any) -> list[tuple[str, str, str | None]]:
    """(repo, file, expected sha256) for each file: a repo id with --file names, or a catalog id."""
    if args.file:
        if args.ref.count("/") != 1:
            raise BadRequest(f"{args.ref!r} is not a Hub repo id (org/name)")
        return [(args.ref, file, None) for file in args.file]
    entry = find_entry(args.ref)
    if entry is None:
        if args.ref.count("/") == 1:
            raise BadRequest(
                f"name the file(s) to fetch from {args.ref}: --file NAME (whole repos are not supported yet)"
            )
        raise BadRequest(f"{args.ref!r} is not a catalog id; give a Hub repo id and --file NAME")
    if not entry.repo or not entry.file:
        raise BadRequest(f"{entry.id} is a whole repo ({entry.repo}); `models pull` fetches single files for now")
    return [(entry.repo, entry.file, entry.sha256)]
