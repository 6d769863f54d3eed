"""The conversation a model is given back: stored messages turned into ChatMessages.

Thinking stays out (a model is not shown its own reasoning again), and so do
failed replies, empty ones and the reply being generated. Tool calls and their
results go back in pairs, the results right after the reply that made the
calls: a call no result answers (the user stopped before the tool ran) is
dropped, with its reply if that said nothing else, and so is a result whose
call is not right before it, since servers refuse either half alone.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from engines.errors import BadRequest
from engines.store.records import tool_calls_from_json
from engines.types import ChatMessage

SENT_TO_ENGINE = ("complete", "cancelled", "interrupted")
"""Statuses of the messages worth replaying."""

HISTORY_QUERY = (
    "SELECT role, content, images_json, tool_calls_json, tool_call_id, tool_name FROM messages"
    " WHERE session_id = ? AND status IN (?, ?, ?)"
    " AND NOT (role = 'assistant' AND content = '' AND tool_calls_json IS NULL) ORDER BY seq"
)
"""The rows `chat_history` reads, bound to (session id, *SENT_TO_ENGINE)."""


def chat_history(system_prompt: str | None, rows: Sequence[sqlite3.Row]) -> list[ChatMessage]:
    """The system prompt, then the rows of HISTORY_QUERY as messages, tool calls paired with their results."""
    messages = [
        ChatMessage(
            r["role"],
            r["content"],
            _attached(r["images_json"]),
            tool_calls_from_json(r["tool_calls_json"]),
            r["tool_call_id"],
            r["tool_name"],
        )
        for r in rows
    ]
    out = [ChatMessage("system", system_prompt)] if system_prompt else []
    return out + _paired(messages)


def _paired(messages: list[ChatMessage]) -> list[ChatMessage]:
    """Each reply's calls that the tool messages right after it answer, followed by those answers.

    Pairing is by position, not by id alone: engines that send no ids get `call_0`, `call_1`... in every reply.
    """
    out: list[ChatMessage] = []
    i = 0
    while i < len(messages):
        message = messages[i]
        i += 1
        if message.role == "tool":
            continue  # no reply with calls right before it
        results = []
        while i < len(messages) and messages[i].role == "tool":
            results.append(messages[i])
            i += 1
        if not message.tool_calls:
            out.append(message)
            continue
        answered = {r.tool_call_id for r in results}
        calls = tuple(c for c in message.tool_calls if c.id in answered)
        if calls or message.content:
            out.append(replace(message, tool_calls=calls))
        ids = {c.id for c in calls}
        out += [r for r in results if r.tool_call_id in ids]
    return out


def _attached(images_json: str | None) -> tuple[bytes, ...]:
    """The images of a message, read again (an image file since deleted or changed into a non-image is left out:
    the conversation goes on without it)."""
    if not images_json:
        return ()
    from engines.images import read_image

    out = []
    for path in json.loads(images_json):
        with contextlib.suppress(BadRequest):
            out.append(read_image(Path(path)))
    return tuple(out)
