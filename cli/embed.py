"""`llm-tui embed MODEL TEXT...`: embedding vectors as JSON on stdout (texts from stdin, one per line, if none)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from engines.errors import BadRequest

if TYPE_CHECKING:
    from engines.config.load import Config
    from engines.types import ModelSpec


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: Callable[..., object]) -> None:
    embed = sub.add_parser("embed", help="print embedding vectors of texts as JSON")
    common(embed)
    embed.add_argument("model", metavar="MODEL", help="catalog id, alias, path, ollama:NAME, or --endpoint's model")
    embed.add_argument("texts", metavar="TEXT", nargs="*", help="texts to embed; one per line on stdin when omitted")
    embed.add_argument("--engine", help="engine to run the model on (default: the first installed that loads it)")
    embed.add_argument("--endpoint", metavar="URL", help="an OpenAI-compatible server; MODEL is its model name")
    embed.add_argument("--api-key-env", metavar="NAME", default="OPENAI_API_KEY", help="variable holding its key")


def run_embed(args: argparse.Namespace, config: Config) -> int:
    """Print `{"model", "engine", "dimensions", "elapsed_ms", "embeddings": [[...], ...]}` (texts' order)."""
    from engines.launch import default_options, launch
    from engines.manager import EngineManager

    texts = list(args.texts) or [line for line in sys.stdin.read().splitlines() if line.strip()]
    if not texts:
        raise BadRequest("nothing to embed: give TEXT arguments or lines on stdin")
    ref: str | ModelSpec = args.model
    if args.endpoint:
        from engines.catalog.resolve_remote import endpoint_spec

        ref = endpoint_spec(args.endpoint, args.model, os.environ, args.api_key_env)
    with EngineManager() as manager:
        launched = launch(manager, ref, config, engine=args.engine, options=default_options(config))
        job = manager.embed(launched.run_id, texts)
    vectors = job.vectors or []
    out = {
        "model": launched.spec.id,
        "engine": launched.engine,
        "dimensions": len(vectors[0]) if vectors else 0,
        "elapsed_ms": round(job.elapsed_ms, 2),
        "embeddings": vectors,
    }
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0
