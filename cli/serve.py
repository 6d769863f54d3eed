"""`llm-tui serve`: the OpenAI-compatible API without the app; one log line per request on stderr."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from engines.errors import BadRequest

MAX_IDLE_UNLOAD_S = 30 * 86400

if TYPE_CHECKING:
    from engines.config.load import Config
    from engines.config.serve import ServeConfig
    from engines.launch import SnapshotSource
    from engines.types import InstanceInfo


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: Callable[..., object]) -> None:
    serve = sub.add_parser("serve", help="serve running models over an OpenAI-compatible HTTP API")
    common(serve)
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1; others need an API key)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8000; 0 = any free port)")
    serve.add_argument(
        "--model", action="append", default=[], metavar="MODEL", help="load this model at start (repeatable)"
    )
    serve.add_argument("--engine", help="engine for the --model models (default: the first installed that loads it)")
    serve.add_argument(
        "--api-key-env", metavar="NAME", help="environment variable holding an API key clients must send"
    )
    serve.add_argument(
        "--launch-on-demand",
        action="store_true",
        default=None,
        help="load a model a request names when it is not running (memory permitting)",
    )
    serve.add_argument(
        "--shutdown-grace",
        type=float,
        metavar="SECONDS",
        help="on SIGTERM / Ctrl+C, how long running replies may take to finish (default 10)",
    )
    serve.add_argument("--keys-file", metavar="PATH", help="named API keys with scopes ([[keys]] entries; mode 0600)")
    serve.add_argument(
        "--access-log", metavar="PATH", help="also write the access log as JSON lines here (0600, rotated)"
    )
    serve.add_argument(
        "--root-path",
        metavar="PREFIX",
        help='the prefix a reverse proxy serves the API under, e.g. "/llm" (requests with or without it are served)',
    )
    serve.add_argument(
        "--idle-unload",
        type=float,
        metavar="SECONDS",
        help="unload a model this server loaded after this many seconds without requests (reloaded on demand)",
    )
    serve.add_argument("--n-ctx", type=int, metavar="N", help="context size in tokens for the models loaded")
    serve.add_argument("--threads", type=int, metavar="N", help="CPU threads for inference")
    serve.add_argument("--n-gpu-layers", type=int, metavar="N", help="layers to offload to the GPU (-1 = all)")
    serve.add_argument(
        "--parallel",
        metavar="N",
        help="requests each llama.cpp model decodes at once, in one batch (slots; default 1); each gets --n-ctx",
    )
    serve.add_argument(
        "--speculative",
        metavar="MODE",
        help='speculative decoding for llama.cpp models: "prompt-lookup" (drafts from the prompt) or "off"',
    )


def serve_settings(args: argparse.Namespace, config: Config, env: os._Environ[str] | dict[str, str]) -> ServeConfig:
    """[serve] from the file, then the environment, then the flags."""
    serve = config.serve.with_env(env)
    if args.keys_file:
        serve = serve.with_keys_file(args.keys_file, env)
    if args.access_log:
        serve = serve.with_access_log(args.access_log)
    if args.host:
        serve = replace(serve, host=args.host)
    if args.port is not None:
        if not 0 <= args.port <= 65535:
            raise BadRequest(f"--port must be from 0 to 65535, got {args.port}")
        serve = replace(serve, port=args.port)
    if args.api_key_env:
        key = env.get(args.api_key_env, "").strip()
        if not key:
            raise BadRequest(f"--api-key-env {args.api_key_env}: that environment variable is not set or empty")
        serve = serve.with_keys(key)
    if args.launch_on_demand:
        serve = replace(serve, launch_on_demand=True)
    if args.shutdown_grace is not None:
        if not 0 <= args.shutdown_grace <= 3600:
            raise BadRequest(f"--shutdown-grace must be from 0 to 3600 seconds, got {args.shutdown_grace:g}")
        serve = replace(serve, shutdown_grace_s=args.shutdown_grace)
    if args.root_path is not None:
        serve = replace(serve, root_path=args.root_path)
    if args.idle_unload is not None:
        if not 0 < args.idle_unload <= MAX_IDLE_UNLOAD_S:
            raise BadRequest(f"--idle-unload must be from 0 to {MAX_IDLE_UNLOAD_S} seconds, got {args.idle_unload:g}")
        serve = replace(serve, idle_unload_s=args.idle_unload)
    from engines.server.root_path import check_root_path

    check_root_path(serve.root_path)  # also what [serve] root_path gave: one clear line, before anything starts
    return serve


def run_serve(args: argparse.Namespace, config: Config) -> int:
    """Bind (or fail with one line), load the --model models, serve until Ctrl+C / SIGTERM (then exit 0)."""
    from engines.server import require_serve_extra

    require_serve_extra()
    from cli.chat import package_progress
    from engines.launch import default_options, launch
    from engines.manager import EngineManager
    from engines.server.app import ServerContext
    from engines.server.runner import prepare, serve_forever

    serve = serve_settings(args, config, os.environ)
    _log_to_stderr()
    for warning in config.warnings:  # a mistyped [serve] key would otherwise leave a limit silently unset
        _say(f"warning: {warning}")
    _ignore_hangup()
    snapshot = _snapshot_source(config)
    with EngineManager(on_stopped=say_unloaded) as manager:
        context = ServerContext(manager, config, serve, snapshot=snapshot)
        listening = prepare(context)  # before loading anything: a taken port fails at once
        for ref in args.model:
            launched = launch(
                manager,
                ref,
                config,
                engine=args.engine,
                options=context.router.served_options(default_options(config)),
                progress=package_progress(f"preparing {ref}"),
                snapshot=snapshot,
            )
            _say(f"loaded {launched.spec.id} on {launched.engine} as {launched.run_id}")
        if not args.model and not serve.launch_on_demand:
            _say("no model loaded: requests will get 404; give --model MODEL or --launch-on-demand")
        keys = f"{len(serve.all_keys())} API key(s) required" if serve.has_keys else "no API key"
        also = f", also under {serve.root_path}/v1" if serve.root_path else ""
        idle = f"; models unload after {serve.idle_unload_s:g} s idle" if serve.idle_unload_s is not None else ""
        _say(f"serving on {listening.url} ({keys}{also}{idle}); Ctrl+C stops")
        serve_forever(listening)
        _say("stopped")
    return 0


def say_unloaded(info: InstanceInfo) -> None:
    """The manager's on_stopped (on its reaper thread): say when a model was unloaded for being idle."""
    limit = info.options.idle_unload_s
    # The manager says why only in words: its reaper's reason is "idle for N s".
    if limit is not None and (info.stop_reason or "").startswith("idle for"):
        _say(f"unloaded {info.model_id} ({info.run_id}) after {limit:g} s idle")


def _say(text: str) -> None:
    print(f"llm-tui serve: {text}", file=sys.stderr, flush=True)


def _ignore_hangup() -> None:
    """SIGHUP is logged and ignored from the start, not only once uvicorn runs (it would end the process)."""
    import signal

    from engines.server.drain import hangup

    signal.signal(signal.SIGHUP, hangup)


def _log_to_stderr() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%dT%H:%M:%S"))
    logger = logging.getLogger("llm_tui.serve")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def _snapshot_source(config: Config) -> SnapshotSource:
    from engines.telemetry.nvml import open_gpu_source
    from engines.telemetry.poller import take_snapshot
    from engines.telemetry.sources import PsutilSource

    gpu = open_gpu_source()
    host = PsutilSource(config.models_dir)
    return lambda: take_snapshot(gpu, host)
