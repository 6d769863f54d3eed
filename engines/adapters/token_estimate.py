"""About how many tokens a prompt is, for when a server never says (the user stopped before its counts came)."""

from __future__ import annotations

from typing import Any

CHARS_PER_TOKEN = 4
"""A typical English tokenizer's average, for estimating a prompt's size when the server does not say."""
TOKENS_PER_MESSAGE = 4
"""What a chat template adds around each message (role markers), about."""


def estimate_prompt_tokens(body: dict[str, Any]) -> int:
    """About how many tokens a request's `prompt` or `messages` are (text only; images are not counted)."""
    if isinstance(prompt := body.get("prompt"), str):
        return -(-len(prompt) // CHARS_PER_TOKEN)
    total = 0
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):  # parts: text and images
            content = " ".join(str(p.get("text") or "") for p in content if isinstance(p, dict))
        total += -(-len(content or "") // CHARS_PER_TOKEN) + TOKENS_PER_MESSAGE
    return total
