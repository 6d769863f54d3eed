"""Tokenizing a text only as far as needed to know it cannot fit: a giant prompt is refused in milliseconds.

llama.cpp tokenizes about 1 MB a second on two cores, so a 15 MB prompt (under the server's 16 MiB body
limit) cost 17 s of an instance's time before its "longer than the context" 400. Tokenizing growing prefixes
stops as soon as one is certainly past the limit: the work is bounded by the limit, not by the text.
"""

from __future__ import annotations

from collections.abc import Callable

CUT_MARGIN = 64
"""Tokens a prefix may have beyond the whole text's own tokens: the cut can split the token it falls in (or a
special token's text) into a few. A prefix past limit + this margin proves the whole text is past the limit."""

FIRST_PREFIX_BYTES_PER_TOKEN = 16
"""The first prefix tried holds this many bytes per token of the limit (real text runs 3 to 5 bytes a token)."""


def tokenize_within(tokenize: Callable[[bytes], list[int]], data: bytes, limit: int) -> tuple[list[int], bool]:
    """`(tokens, True)`: all of `data`'s tokens; or `(tokens of a prefix, False)` when that prefix already has
    more than `limit` (+ CUT_MARGIN) tokens, so the whole text certainly does not fit `limit`."""
    size = FIRST_PREFIX_BYTES_PER_TOKEN * max(limit, 1) + 4096
    while size < len(data):
        head = tokenize(data[:size])
        if len(head) > limit + CUT_MARGIN:
            return head, False
        size *= 4  # each try costs 4x the last, so all the tries together cost about 4/3 of the final one
    return tokenize(data), True
