"""What the chat screen writes from its records: log entries, titles, the status line, the prompt's attachments."""

from __future__ import annotations

from pathlib import Path

from engines.store.sessions import MessageRecord
from tui.chat_turn import calls_text, metrics_line
from tui.widgets.log_message import LogMessage

TITLE_LENGTH = 40


def log_message(m: MessageRecord) -> LogMessage:
    """How a stored message is shown in the log (a reply's calls under its text, its thinking folded)."""
    headers = {"user": "You", "system": "System", "tool": f"Tool · {m.tool_name or 'result'}"}
    header = headers.get(m.role) or " · ".join(x for x in (m.model, m.engine) if x)
    calls = calls_text(m.tool_calls)
    return LogMessage(
        key=m.id,
        role=m.role,
        content=(m.content + calls).strip() if calls else m.content,
        header=header,
        footer=metrics_line(m.metrics) if m.metrics else attachments_line(m),
        status=m.status,
        reasoning=m.reasoning,
    )


def attachments_line(m: MessageRecord) -> str:
    """Under a user message: its images, and the audio file it was transcribed from."""
    heard = [f"🎤 {Path(m.audio).name}"] if m.audio else []
    return " ".join([*heard, *(f"📎 {Path(i).name}" for i in m.images)])


def status_line(
    app_status: str, *, streaming: bool, editing: bool, system_prompt: bool, model_id: str | None, tools: str = ""
) -> str:
    """The line under the log: the app's status (model, state), then what Esc and Enter do now, and the tools."""
    parts = [app_status]
    if tools:
        parts.append(tools)
    if streaming:
        parts.append("generating · Esc stops")
    elif editing:
        parts.append("editing · Enter resends · Esc cancels")
    if system_prompt:
        parts.append("system prompt set")
    if model_id is not None and (note := base_model_note(model_id)):
        parts.append(note)
    return " · ".join(parts)


def base_model_note(model_id: str) -> str | None:
    """For a base (not chat-tuned) catalog model: what to expect, and the instruct build to chat with instead."""
    from engines.catalog.builtin import builtin_catalog

    entries = builtin_catalog()
    entry = next((e for e in entries if e.id == model_id), None)
    if entry is None or entry.kind != "base":
        return None
    instruct = sorted((e.id for e in entries if e.kind == "instruct" and e.id.startswith(f"{entry.id}-")), key=len)
    tip = f": for chat get {instruct[0]} (F2)" if instruct else ""
    return f"base model, not chat-tuned{tip}"


def split_attachments(text: str) -> tuple[str, list[Path]]:
    """The prompt without its `/image PATH` lines, and those paths (`~` expanded, made absolute)."""
    kept, images = [], []
    for line in text.splitlines():
        command, _, rest = line.strip().partition(" ")
        if command == "/image" and rest.strip():
            images.append(Path(rest.strip().strip("'\"")).expanduser().absolute())
        else:
            kept.append(line)
    return "\n".join(kept).strip(), images


def title_from(text: str) -> str:
    """A new chat's title: its first message on one line, cut to TITLE_LENGTH characters."""
    line = " ".join(text.split())
    return line if len(line) <= TITLE_LENGTH else line[: TITLE_LENGTH - 1] + "…"
