"""Export a chat session as Markdown (to read) or JSON (to process), and a comparison as Markdown.

The JSON shape, version 1. Keys are never renamed or removed within a
version; new keys may be added. Times are ISO 8601 in UTC.

    {
      "format": "llm-tui-session", "version": 1,
      "id": 3, "title": "...", "model": "gemma-3-270m" | null, "engine": "llama.cpp" | null,
      "system_prompt": "..." | null,
      "params": {"temperature", "top_p", "top_k", "repetition_penalty", "max_tokens", "stop", "seed"} | null,
      "created_at": "2025-05-01T12:00:00.000Z", "updated_at": "...",
      "messages": [
        {"role": "system" | "user" | "assistant" | "tool", "content": "...",
         "status": "complete" | "streaming" | "cancelled" | "error" | "interrupted",
         "model": ... | null, "engine": ... | null, "created_at": "...", "error": "..." | null,
         "reasoning": "..." ("" when the reply did no thinking),
         "tool_calls": [{"id", "name", "arguments": "JSON text as the model wrote it"}],
         "tool_call_id": "..." | null, "tool_name": "..." | null  (a tool message: the call it answers),
         "metrics": {"ttft_ms", "tokens_per_s", "total_ms", "prompt_tokens", "completion_tokens",
                     "finish_reason", "reasoning_tokens", "reply_ttft_ms"} | null}
      ]
    }

In Markdown a reply's thinking is a folded `<details>` block before its text,
each tool call a line with its name and arguments in code, and each tool
result a folded block under a "Tool" heading.
"""

from __future__ import annotations

import dataclasses
import html
import json
import re
import unicodedata
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from engines.atomic import atomic_write
from engines.catalog.fit import human_bytes
from engines.compare.types import CompareRun, PaneResult, rank
from engines.errors import BadRequest
from engines.store.records import MessageRecord, SessionRecord, TurnMetrics, params_to_dict
from engines.store.sessions import Store
from engines.types import LaunchOptions, Params, ToolCall

ExportFormat = Literal["markdown", "json"]
EXPORT_VERSION = 1
_SUFFIX: dict[str, str] = {"markdown": ".md", "json": ".json"}
_ROLE_HEADING = {"system": "System", "user": "User", "assistant": "Assistant", "tool": "Tool"}
_STATUS_NOTE = {
    "cancelled": "Stopped before the end.",
    "interrupted": "Cut off: llm-tui stopped while this reply was streaming.",
    "streaming": "Still being written when exported.",
}
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")


def session_to_markdown(session: SessionRecord, messages: Sequence[MessageRecord]) -> str:
    """The session as a Markdown document; message text is kept verbatim."""
    out = [f"# {session.title}", ""]
    about = [f"Model: {session.model}"] if session.model else []
    about += [f"Engine: {session.engine}"] if session.engine else []
    about.append(f"Started {_human_time(session.created_at)}")
    out += [f"*{' · '.join(about)}*", ""]
    if session.system_prompt:
        out += ["## System prompt", "", _block(session.system_prompt), ""]
    for message in messages:
        out += [f"## {_ROLE_HEADING.get(message.role, message.role.title())}", ""]
        if message.reasoning:
            out += _folded("Thinking", _block(message.reasoning))
        if message.role == "tool":
            out += _folded(f"Result of {html.escape(message.tool_name or 'a tool')}", _fenced(message.content))
        elif message.content:
            out += [_block(message.content), ""]
        if message.tool_calls:
            out += [*(_call_line(call) for call in message.tool_calls), ""]
        notes = _notes(session, message)
        if notes:
            out += [f"*{' · '.join(notes)}*", ""]
    return "\n".join(out).rstrip("\n") + "\n"


def session_to_json(session: SessionRecord, messages: Sequence[MessageRecord]) -> str:
    """The session in the documented JSON shape (see the module docstring)."""
    doc: dict[str, Any] = {
        "format": "llm-tui-session",
        "version": EXPORT_VERSION,
        "id": session.id,
        "title": session.title,
        "model": session.model,
        "engine": session.engine,
        "system_prompt": session.system_prompt,
        "params": params_to_dict(session.params) if session.params is not None else None,
        "created_at": _iso(session.created_at),
        "updated_at": _iso(session.updated_at),
        "messages": [
            {
                "role": m.role,
                "content": m.content,
                "status": m.status,
                "model": m.model,
                "engine": m.engine,
                "created_at": _iso(m.created_at),
                "error": m.error,
                "reasoning": m.reasoning,
                "tool_calls": [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in m.tool_calls],
                "tool_call_id": m.tool_call_id,
                "tool_name": m.tool_name,
                "metrics": _metrics_json(m.metrics) if m.metrics is not None else None,
            }
            for m in messages
        ],
    }
    return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"


def _metrics_json(metrics: TurnMetrics) -> dict[str, object]:
    """The stored metrics (`estimated` lives only while a reply is on screen, so it is left out)."""
    return {k: v for k, v in dataclasses.asdict(metrics).items() if k != "estimated"}


def exports_dir(data_dir: Path) -> Path:
    """Where exports go unless the user names a folder: `exports/` in the data directory (absolute)."""
    return (data_dir / "exports").expanduser().absolute()


def export_target(typed: str, folder: Path) -> Path:
    """The file a typed export path means: `~` expanded; a relative name lands in `folder`, not the current folder."""
    path = Path(typed.strip()).expanduser()
    return path if path.is_absolute() else folder / path


def default_export_name(session: SessionRecord, fmt: ExportFormat) -> str:
    """A safe file name for the export: slugified title, session id, extension."""
    return f"{_slug(session.title, 60) or 'chat'}-{session.id}{_suffix(fmt)}"


def _slug(title: str, length: int) -> str:
    """`title` as ASCII lowercase words joined by '-', at most `length` characters ("" when nothing is left)."""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")[:length].rstrip("-")


def export_session(store: Store, session_id: int, path: Path, fmt: ExportFormat) -> Path:
    """Write a session to `path` (or into it, under the default name, if it is a folder); return the file."""
    _suffix(fmt)  # an unknown format fails before anything is read or written
    session = store.get_session(session_id)
    messages = store.messages(session_id)
    text = session_to_markdown(session, messages) if fmt == "markdown" else session_to_json(session, messages)
    target = path / default_export_name(session, fmt) if path.is_dir() else path
    atomic_write(target, text.encode("utf-8"), private=False)
    return target


def compare_to_markdown(run: CompareRun) -> str:
    """A comparison as a Markdown document: prompt, options, a summary table, then each pane's reply."""
    when = _human_time(run.created_at) if run.created_at else "not saved"
    out = [f"# Comparison: {run.title}", "", f"*{when} · {run.mode}: {run.reason}*" if run.reason else f"*{when}*", ""]
    out += ["## Prompt", "", _block(run.prompt), ""]
    if run.system_prompt:
        out += ["## System prompt", "", _block(run.system_prompt), ""]
    shared = _params_line(run.params)
    if shared:
        out += [f"*Parameters: {shared}*", ""]
    out += ["## Summary", "", "| # | Model | Engine | Status | TTFT | tok/s | Tokens | RAM | VRAM |"]
    out.append("|---|---|---|---|---|---|---|---|---|")
    out += [_summary_row(p) for p in run.panes]
    ranking = rank(run.panes)
    out += ["", f"*{ranking}*" if ranking else "*No pane finished, nothing to rank.*", ""]
    for pane in run.panes:
        out += [f"## {pane.index + 1}. {pane.model_id} · {pane.engine}", ""]
        about = _options_line(pane.options)
        if pane.run_id:
            about = f"running instance {pane.run_id}" + (f" · {about}" if about else "")
        if about:
            out += [f"*{about}*", ""]
        if pane.text:
            out += [_block(pane.text), ""]
        notes = _metric_parts(pane.metrics) if pane.metrics is not None else []
        if pane.status == "error":
            notes.append(f"Failed: {pane.error or 'unknown error'}")
        elif pane.status == "stopped":
            notes.append(_STATUS_NOTE["cancelled"])
        if notes:
            out += [f"*{' · '.join(notes)}*", ""]
    return "\n".join(out).rstrip("\n") + "\n"


def default_compare_name(run: CompareRun) -> str:
    """A safe file name for a comparison's export: `compare-<prompt slug>-<id>.md`."""
    slug = _slug(run.title, 48) or "prompt"
    return f"compare-{slug}-{run.id if run.id is not None else 'unsaved'}.md"


def export_compare(run: CompareRun, path: Path) -> Path:
    """Write a comparison as Markdown to `path` (or into it, under the default name, if it is a folder)."""
    target = path / default_compare_name(run) if path.is_dir() else path
    atomic_write(target, compare_to_markdown(run).encode("utf-8"), private=False)
    return target


def _summary_row(pane: PaneResult) -> str:
    m = pane.metrics
    cells = [
        str(pane.index + 1),
        pane.model_id.replace("|", "\\|"),
        pane.engine,
        pane.status,
        f"{m.ttft_ms:.0f} ms" if m and m.ttft_ms is not None else "-",
        f"{m.tokens_per_s:.1f}" if m and m.tokens_per_s else "-",
        f"{m.prompt_tokens or 0}→{m.completion_tokens or 0}" if m else "-",
        human_bytes(pane.ram_bytes) if pane.ram_bytes else "-",
        human_bytes(pane.vram_bytes) if pane.vram_bytes else "-",
    ]
    return "| " + " | ".join(cells) + " |"


def _params_line(params: Params) -> str:
    defaults = params_to_dict(Params())  # only what the run set: not every new field's default
    values = {k: v for k, v in params_to_dict(params).items() if v != defaults[k]}
    if "tools" in values:
        values["tools"] = ", ".join(tool.name for tool in params.tools)
    return " · ".join(f"{k} {v}" for k, v in values.items())


def _options_line(options: LaunchOptions | None) -> str:
    if options is None:
        return ""
    parts = [f"context {options.n_ctx}", f"device {options.device}"]
    if options.n_gpu_layers:
        parts.append(f"GPU layers {options.n_gpu_layers}")
    if options.n_threads:
        parts.append(f"threads {options.n_threads}")
    parts += [f"dtype {options.dtype}"] if options.dtype else []
    parts += [f"quantization {options.quantization}"] if options.quantization else []
    parts += [f"LoRA {options.lora_path.name}"] if options.lora_path else []
    return " · ".join(parts)


def _suffix(fmt: str) -> str:
    if fmt not in _SUFFIX:
        raise BadRequest(f"export format must be markdown or json, got {fmt!r}")
    return _SUFFIX[fmt]


def _notes(session: SessionRecord, message: MessageRecord) -> list[str]:
    notes: list[str] = []
    if message.role == "assistant" and message.model and message.model != session.model:
        notes.append(f"Model: {message.model}")
    if message.metrics is not None:
        notes += _metric_parts(message.metrics)
    if message.status == "error":
        notes.append(f"Failed: {message.error or 'unknown error'}")
    elif message.status in _STATUS_NOTE:
        notes.append(_STATUS_NOTE[message.status])
    return notes


def _metric_parts(metrics: TurnMetrics) -> list[str]:
    parts = []
    if metrics.completion_tokens is not None:
        thinking = f" ({metrics.reasoning_tokens} thinking)" if metrics.reasoning_tokens else ""
        parts.append(f"{metrics.completion_tokens} tokens{thinking}")
    if metrics.tokens_per_s:
        parts.append(f"{metrics.tokens_per_s:.1f} tok/s")
    if metrics.ttft_ms is not None:
        parts.append(f"first token {metrics.ttft_ms:.0f} ms")
    if metrics.reply_ttft_ms is not None:
        parts.append(f"first reply token {metrics.reply_ttft_ms:.0f} ms")
    if metrics.total_ms is not None:
        parts.append(f"total {metrics.total_ms / 1000:.2f} s")
    if metrics.finish_reason and metrics.finish_reason != "cancelled":
        parts.append(f"finish: {metrics.finish_reason}")
    return parts


def _folded(summary: str, body: str) -> list[str]:
    """A `<details>` block, folded; the blank lines let Markdown inside it render."""
    return [f"<details><summary>{summary}</summary>", "", body, "", "</details>", ""]


def _call_line(call: ToolCall) -> str:
    """One tool call as a line: its name and arguments as code."""
    return f"- Tool call {_code_span(call.name)} with {_code_span(_one_line(call.arguments))}"


def _one_line(arguments: str) -> str:
    """Arguments on one line: valid JSON re-written compactly (string values kept exactly), else newlines as spaces."""
    try:
        return json.dumps(json.loads(arguments), ensure_ascii=False)
    except ValueError:
        return " ".join(arguments.splitlines())


def _code_span(text: str) -> str:
    """`text` as inline code, its delimiter longer than any backtick run inside it (CommonMark)."""
    ticks = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def _fenced(text: str) -> str:
    """`text` as a fenced code block whose fence no line of it can close."""
    fence = "`" * max(3, max((len(run) + 1 for run in re.findall(r"`{3,}", text)), default=3))
    body = text.rstrip("\n")
    return f"{fence}\n{body}\n{fence}"


def _block(text: str) -> str:
    """Text as is, closing a code fence it left open so the next heading is not swallowed by it."""
    body = text.rstrip("\n")
    fence = _open_fence(body)
    return f"{body}\n{fence}" if fence else body


def _open_fence(text: str) -> str | None:
    """The fence (``` or ~~~ run) still open at the end of `text`, per CommonMark's rules, if any."""
    open_fence: str | None = None
    for line in text.splitlines():
        match = _FENCE.match(line)
        if match is None:
            continue
        fence, rest = match.group(1), match.group(2)
        if open_fence is None:
            if not (fence[0] == "`" and "`" in rest):  # a backtick fence's info string has no backticks
                open_fence = fence
        elif fence[0] == open_fence[0] and len(fence) >= len(open_fence) and not rest.strip():
            open_fence = None
    return open_fence


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _human_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")
