"""Log-likelihood scoring on an OpenAI-compatible server, from `/completions` top log-probabilities.

One request per prompt: `{model, prompt, max_tokens: 1, temperature: 0, logprobs: 20}`; the first generated
position's top log-probabilities (the legacy `choices[0].logprobs.top_logprobs[0]` mapping, or the newer
`choices[0].logprobs.content[0].top_logprobs` list) give each choice's score, matched as given and then with its
leading space added or removed (servers differ in how they show a token's space). A choice outside the top list
(or of several tokens) scores -inf. A server that sends no log-probabilities, or has no `/completions` (404, 400),
is refused with CapabilityNotSupported: evaluation then asks for the answer letter by generation instead.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from engines.adapters.remote_link import json_or_none, reason
from engines.errors import BadRequest, Cancelled, CapabilityNotSupported, ModelNotFound, RemoteEndpointError

if TYPE_CHECKING:
    from engines.adapters.remote_link import Link

TOP_LOGPROBS = 20
"""How many of the likeliest first tokens the server is asked for (OpenAI's legacy API allows up to 5, vLLM 20)."""
MAX_ANSWER_BYTES = 1024 * 1024
"""A scoring answer is a few kilobytes; more is refused before it is parsed."""
MAX_ENTRIES = 1000
"""Top-list entries read at most (a server may ignore the number asked for)."""
_TOO_LONG = ("context length", "maximum context", "too long", "too many tokens", "exceeds")
"""Words of a 400 that refuses the prompt's length, not the request's shape: that is the caller's error."""


def no_logprobs(link: Link, why: str) -> CapabilityNotSupported:
    """The refusal for a server that cannot score, naming it and what it did."""
    return CapabilityNotSupported(
        "remote",
        f"log-probability scoring: {link.shown} {why} and returned no log-probabilities; "
        "evaluation falls back to generating a letter",
    )


def score_choices(link: Link, model: str, prompt: str, choices: Sequence[str], cancel: threading.Event) -> list[float]:
    """The natural-log probability of each of `choices` as the first token after `prompt` (-inf outside the top
    list). Raises CapabilityNotSupported (no log-probabilities), RemoteEndpointError (a malformed or oversized
    answer, an unreachable server), BadRequest (a prompt the server finds too long), Cancelled."""
    if not choices:
        raise BadRequest("give at least one continuation to score")
    if cancel.is_set():
        raise Cancelled("scoring cancelled")
    body = {"model": model, "prompt": prompt, "max_tokens": 1, "temperature": 0, "logprobs": TOP_LOGPROBS}
    try:
        resp = link.send("POST", "/completions", body, cancel)
    except ModelNotFound:
        raise no_logprobs(link, "has no /completions (HTTP 404)") from None
    except BadRequest as exc:
        if any(word in str(exc).lower() for word in _TOO_LONG):
            raise
        raise no_logprobs(link, f"refused the scoring request ({exc})") from None
    try:
        raw = _read_bounded(link, resp)
    finally:
        resp.close()
    top = top_logprobs(link, json_or_none(raw))
    return [match(top, choice) for choice in choices]


def top_logprobs(link: Link, doc: Any) -> dict[str, float]:
    """The first position's top tokens and their log-probabilities from a `/completions` answer."""
    if not isinstance(doc, dict):
        raise RemoteEndpointError(f"{link.shown} sent a /completions answer that is not JSON")
    listed = doc.get("choices")
    if not isinstance(listed, list) or not listed or not isinstance(listed[0], dict):
        raise RemoteEndpointError(f"{link.shown} sent a /completions answer without choices")
    logprobs = listed[0].get("logprobs")
    if not logprobs:
        raise no_logprobs(link, "ignored `logprobs`")
    if not isinstance(logprobs, dict):
        raise RemoteEndpointError(f"{link.shown} sent malformed log-probabilities")
    legacy, content = logprobs.get("top_logprobs"), logprobs.get("content")
    if isinstance(legacy, list) and legacy:
        first = legacy[0]
        entries = list(first.items())[:MAX_ENTRIES] if isinstance(first, dict) else None
    elif isinstance(content, list) and content and isinstance(content[0], dict):
        listed_top = content[0].get("top_logprobs")
        entries = (
            [(e.get("token"), e.get("logprob")) for e in listed_top[:MAX_ENTRIES] if isinstance(e, dict)]
            if isinstance(listed_top, list)
            else None
        )
    else:
        raise no_logprobs(link, "sent an empty log-probability list")
    if not entries:
        raise RemoteEndpointError(f"{link.shown} sent malformed log-probabilities")
    top: dict[str, float] = {}
    for token, value in entries:
        if not isinstance(token, str) or isinstance(value, bool) or not isinstance(value, int | float):
            raise RemoteEndpointError(f"{link.shown} sent malformed log-probabilities")
        if math.isnan(value) or value > 1e-6:
            raise RemoteEndpointError(f"{link.shown} sent a log-probability that is not one ({value!r})")
        top[token] = max(float(value), top.get(token, -math.inf))
    return top


def match(top: dict[str, float], choice: str) -> float:
    """`choice`'s log-probability in `top`, as given, else with its leading space removed or added; -inf when
    it is not there."""
    for key in (choice, choice[1:] if choice.startswith(" ") else " " + choice):
        if key in top:
            return top[key]
    return -math.inf


def _read_bounded(link: Link, resp: Any) -> bytes:
    import httpx

    data = b""
    try:
        for chunk in resp.iter_bytes():
            data += chunk
            if len(data) > MAX_ANSWER_BYTES:
                raise RemoteEndpointError(
                    f"{link.shown} sent a /completions answer over {MAX_ANSWER_BYTES // 1024} KiB; refused"
                )
    except httpx.HTTPError as exc:
        raise RemoteEndpointError(link.clean(f"{link.shown} dropped its answer: {reason(exc)}")) from None
    return data
