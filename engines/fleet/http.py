"""What the poller and the admin actions share: the key a member sends, a body read to a bound, short error texts.

The key travels only in the Authorization header to the member's own URL (redirects are never followed) and is
masked out of every message.
"""

from __future__ import annotations

import errno
import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from engines.adapters.remote_link import error_text, json_or_none
from engines.fleet.errors import FleetError
from engines.fleet.types import FleetMember
from engines.secret import MASK

if TYPE_CHECKING:
    import httpx

MAX_MESSAGE = 200
"""Characters of a server's error message shown."""
ERROR_BODY = 64 * 1024
"""Bytes of an error answer read for its message."""


def api_key(member: FleetMember, env: Mapping[str, str]) -> str | None:
    """The key `member` sends (from the variable key_env names); FleetError when that variable is not set."""
    if member.key_env is None:
        return None
    key = env.get(member.key_env, "").strip()
    if not key:
        raise FleetError(f"set {member.key_env}: the API key for {member.name} is read from that environment variable")
    return key


def base_url(member: FleetMember) -> str:
    """The member's URL without a trailing "/" (config strips it; a FleetMember built in code may not)."""
    return member.url.rstrip("/")


def headers(key: str | None) -> dict[str, str]:
    """The headers of a request to a member: JSON, no compression, its key when it has one."""
    # identity: a compressed body could expand far past the size limit within one chunk
    out = {"Accept": "application/json", "Accept-Encoding": "identity"}
    if key is not None:
        out["Authorization"] = f"Bearer {key}"
    return out


def clean(message: str, key: str | None, limit: int = MAX_MESSAGE) -> str:
    """One line, at most `limit` characters, with the key masked."""
    if key:
        message = message.replace(key, MASK)
    message = " ".join(message.split())
    return message if len(message) <= limit else message[: limit - 1] + "…"


def seconds(value: float) -> str:
    """2 → "2.0", 0.25 → "0.25": a timeout as the messages show it."""
    return f"{value:.1f}" if round(value, 1) == value else f"{value:g}"


def size(limit: int) -> str:
    """4194304 → "4 MiB": a byte limit as the messages show it."""
    return f"{limit >> 20} MiB" if limit >= 1 << 20 and limit % (1 << 20) == 0 else f"{limit} bytes"


async def read_body(resp: httpx.Response, limit: int, what: str) -> bytes:
    """The body of a streamed response; FleetError("WHAT too large") as soon as it passes `limit` bytes."""
    body = bytearray()
    async for chunk in resp.aiter_bytes():
        body += chunk
        if len(body) > limit:
            raise FleetError(f"{what} too large (over {size(limit)})")
    return bytes(body)


async def get(
    client: httpx.AsyncClient, url: str, key: str | None, timeout_s: float, limit: int, what: str
) -> tuple[int, bytes]:
    """GET `url` with the member's key: its status and body (an error body cut to 64 KiB, never an error itself).

    FleetError for a transport failure ("connection refused") or a 2xx body over `limit` bytes.
    """
    import httpx

    try:
        async with client.stream("GET", url, headers=headers(key), timeout=timeout_s) as resp:
            if resp.is_success:
                return resp.status_code, await read_body(resp, limit, what)
            if resp.is_redirect:  # never followed: the key must not travel to another address
                target = re.sub(r"(?<=://)[^/@]*@", "", resp.headers.get("location", "?"))
                raise FleetError(clean(f"HTTP {resp.status_code}: redirects to {target}; not followed", key))
            body = bytearray()
            async for chunk in resp.aiter_bytes():
                body += chunk
                if len(body) >= ERROR_BODY:
                    break
            return resp.status_code, bytes(body[:ERROR_BODY])
    except httpx.HTTPError as exc:
        raise FleetError(transport_error(exc, timeout_s)) from None


def status_error(status: int, body: bytes, key: str | None) -> str:
    """ "HTTP 401: missing or wrong API key": the status and the server's own message, short and with the key masked."""
    doc = json_or_none(body)
    message = error_text(doc) or body[:1024].decode("utf-8", "replace").strip()
    if not message and status == 401:
        message = "missing or wrong API key"
    return clean(f"HTTP {status}: {message}" if message else f"HTTP {status}", key)


def error_code(body: bytes) -> str | None:
    """The `error.code` of an OpenAI-shaped error body, if any."""
    doc: Any = json_or_none(body)
    err = doc.get("error") if isinstance(doc, dict) else None
    code = err.get("code") if isinstance(err, dict) else None
    return code if isinstance(code, str) else None


def transport_error(exc: BaseException, timeout_s: float) -> str:
    """A short reason for an httpx transport failure: "connection refused", "timed out after 2.0 s"..."""
    import httpx

    if isinstance(exc, httpx.TimeoutException):
        return f"timed out after {seconds(timeout_s)} s"
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError) or getattr(cause, "errno", None) == errno.ECONNREFUSED:
            return "connection refused"
        cause = cause.__cause__ or cause.__context__
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectError):
        return clean("cannot connect: " + ("connection refused" if "refused" in text.lower() else text), None)
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the server closed the connection without an answer"
    return clean(text, None)


def json_body(body: bytes, what: str) -> Any:
    """`body` parsed as JSON; FleetError when it is not."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise FleetError(f"{what} is not JSON") from None
