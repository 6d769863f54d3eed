"""The `llm-tui` command line: argument parsing and dispatch to subcommands."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

import engines
from engines.errors import LlmTuiError

if TYPE_CHECKING:
    from engines.config.load import Config


def _global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    # Global options are accepted before and after the subcommand; in the
    # subparsers the defaults are suppressed so they don't mask a value given
    # before the subcommand.
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument("--config", metavar="PATH", default=default, help="config file to read (and write)")
    parser.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS if suppress else False, help="show tracebacks"
    )


def _app_options(parser: argparse.ArgumentParser) -> None:
    # The app's one list of screens, imported when a parser is built rather than with this module; it imports
    # neither Textual nor any screen, so the subcommands and the app's first frame stay as light as before.
    from tui.screen_list import MODE_NAMES

    parser.add_argument("--version", action="version", version=f"llm-tui {engines.__version__}")
    _global_options(parser, suppress=False)
    parser.add_argument("--screen", choices=MODE_NAMES, help="screen to open the app on")
    parser.add_argument("--model", metavar="MODEL", help="launch this model at start and open the chat")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser for llm-tui and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="llm-tui", description="Find, download, run, watch and chat with local language models."
    )
    _app_options(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    chat = sub.add_parser("chat", help="stream a reply to stdout (interactive when no prompt and stdin is a terminal)")
    _global_options(chat, suppress=True)
    chat.add_argument(
        "model", metavar="MODEL", nargs="?", help="catalog id, alias, or path to a GGUF file (or --preset's model)"
    )
    chat.add_argument("prompt", metavar="PROMPT", nargs="?", help="the prompt; read from stdin when omitted")
    chat.add_argument("--preset", metavar="NAME", help="a [presets.NAME] of the config: system prompt, parameters")
    chat.add_argument("--engine", help="engine to run the model on (default: the first installed that loads it)")
    chat.add_argument("--system", metavar="TEXT", help="system prompt")
    chat.add_argument("--max-tokens", type=int, metavar="N")
    chat.add_argument("--temperature", type=float, metavar="T")
    chat.add_argument("--top-p", type=float, metavar="P")
    chat.add_argument("--top-k", type=int, metavar="K")
    chat.add_argument("--repetition-penalty", type=float, metavar="R")
    chat.add_argument("--seed", type=int, metavar="S")
    chat.add_argument("--stop", action="append", default=[], metavar="TEXT", help="stop sequence (repeatable)")
    chat.add_argument("--n-ctx", type=int, metavar="N", help="context size in tokens")
    chat.add_argument("--threads", type=int, metavar="N", help="CPU threads for inference")
    chat.add_argument("--n-gpu-layers", type=int, metavar="N", help="layers to offload to the GPU (-1 = all)")
    chat.add_argument("--stats", action="store_true", help="print one JSON line of metrics to stderr after the reply")
    chat.add_argument("--hide-thinking", action="store_true", help="do not print the model's thinking to stderr")
    chat.add_argument("--json-schema", metavar="FILE", help="a JSON Schema the reply must follow (checked after it)")
    chat.add_argument("--image", action="append", default=[], metavar="PATH", help="attach an image (repeatable)")
    chat.add_argument("--endpoint", metavar="URL", help="an OpenAI-compatible server; MODEL is its model name")
    chat.add_argument(
        "--api-key-env", metavar="NAME", default="OPENAI_API_KEY", help="variable holding the --endpoint key"
    )

    from cli.models import add_parser as add_models_parser

    add_models_parser(sub, lambda p: _global_options(p, suppress=True))

    from cli.embed import add_parser as add_embed_parser

    add_embed_parser(sub, lambda p: _global_options(p, suppress=True))

    from cli.transcribe import add_parser as add_transcribe_parser

    add_transcribe_parser(sub, lambda p: _global_options(p, suppress=True))

    from cli.gauges import add_parser as add_gauges_parser

    add_gauges_parser(sub, lambda p: _global_options(p, suppress=True))

    from cli.serve import add_parser as add_serve_parser

    add_serve_parser(sub, lambda p: _global_options(p, suppress=True))

    from cli.web import add_parser as add_web_parser

    add_web_parser(sub, lambda p: _global_options(p, suppress=True))

    from cli.tune import add_parser as add_tune_parser

    add_tune_parser(sub, lambda p: _global_options(p, suppress=True))

    from cli.evaluate import add_parser as add_eval_parser

    add_eval_parser(sub, lambda p: _global_options(p, suppress=True))
    return parser


class _NotTheApp(Exception):
    """The command line is more than the app's own options: the full parser decides."""


class _AppParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _NotTheApp(message)


def _app_args(argv: Sequence[str]) -> argparse.Namespace | None:
    """`llm-tui [--screen …] [--model …]` parsed without the subcommands' parsers, whose modules (the catalog,
    downloads, telemetry) cost the app's first frame about a quarter of its start; None for anything else (a
    subcommand, -h, a mistake), which the full parser then handles as always."""
    parser = _AppParser(prog="llm-tui", add_help=False)
    _app_options(parser)
    try:
        args, rest = parser.parse_known_args(argv)
    except _NotTheApp:
        return None
    if rest:
        return None
    args.command = None
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `llm-tui` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _app_args(argv)
    if args is None:
        args = build_parser().parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    try:
        if args.command == "chat":
            from cli.chat import run_chat

            return run_chat(args, load(args))
        if args.command == "models":
            from cli.models import run_models

            return run_models(args, load(args))
        if args.command == "embed":
            from cli.embed import run_embed

            return run_embed(args, load(args))
        if args.command == "transcribe":
            from cli.transcribe import run_transcribe

            return run_transcribe(args, load(args))
        if args.command == "gauges":
            from cli.gauges import run_gauges

            return run_gauges(args, load(args))
        if args.command == "serve":
            from cli.serve import run_serve

            return run_serve(args, load(args))
        if args.command == "web":
            from cli.web import run_web

            return run_web(args, load(args))
        if args.command == "tune":
            from cli.tune import run_tune

            return run_tune(args, load(args))
        if args.command == "eval":
            from cli.evaluate import run_eval

            return run_eval(args, load(args))
        return run_app(args)
    except LlmTuiError as exc:
        if debug:
            raise
        _fail(str(exc))
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`llm-tui chat ... | head`): not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def load(args: argparse.Namespace) -> Config:
    """Load the configuration with command-line flags on top."""
    from engines.config.load import load_config

    overrides = {
        "n_ctx": getattr(args, "n_ctx", None),
        "n_threads": getattr(args, "threads", None),
        "n_gpu_layers": getattr(args, "n_gpu_layers", None),
        "parallel": getattr(args, "parallel", None),
        "speculative": getattr(args, "speculative", None),
    }
    return load_config(getattr(args, "config", None), env=os.environ, overrides=overrides)


def run_app(args: argparse.Namespace) -> int:
    """Start the Textual app."""
    import gc

    # Start-up allocates a great many objects that live as long as the app (Textual, CSS, widgets): collecting
    # them again and again before the first frame is wasted work. The app turns collection back on (and freezes
    # what start-up made) once its first frame is painted.
    gc.disable()
    try:
        from tui.app import run  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError as exc:
        raise LlmTuiError(f"the terminal app could not start ({exc}); `llm-tui chat MODEL` works without it") from None
    result: int = run(args, load(args))
    return result


def _fail(message: str) -> None:
    # One clear line, whatever the message holds.
    line = " ".join(message.split())
    print(f"llm-tui: error: {line}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
