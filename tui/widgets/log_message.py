"""What the chat log shows for one message, and code-block extraction; no widgets (cheap to import)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LogMessage:
    """What the chat log shows for one message."""

    key: int | str
    role: str  # "system" | "user" | "assistant" | "tool"
    content: str
    header: str = ""
    footer: str = ""
    status: str = "complete"  # complete | streaming | cancelled | error | interrupted
    reasoning: str = ""
    """An assistant reply's thinking, shown folded above it."""


def fenced_code_blocks(markdown: str) -> list[str]:
    """The contents of the fenced code blocks in `markdown`, in order (nested ones included)."""
    from markdown_it import MarkdownIt  # the Markdown parser loads with the first message, not at start-up

    tokens = MarkdownIt("gfm-like").parse(markdown)
    return [token.content.rstrip("\n") for token in tokens if token.type == "fence"]
