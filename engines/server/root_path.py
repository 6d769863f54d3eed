"""Serving behind a reverse proxy under a prefix (`--root-path /llm`, `[serve] root_path`).

A proxy may pass `/llm/v1/models` on as it came, or strip the prefix and pass `/v1/models`; both are served.
uvicorn's own `root_path` only covers the second (it prepends the prefix to every path, so an unstripped
request would be looked for at `/llm/llm/...`), so uvicorn is given none and this middleware, outside the
guard, takes the prefix off a path that carries it and sets `scope["root_path"]` for every request. The guard
and the routes therefore always see the path without the prefix (`/v1/chat/completions`), and FastAPI's
OpenAPI document names the prefix in `servers`.
"""

from __future__ import annotations

import re

from engines.errors import BadRequest
from engines.server.guard import Asgi, Receive, Scope, Send

MAX_ROOT_PATH = 200
_SEGMENT = re.compile(r"^[A-Za-z0-9._~-]+$")
"""One path segment of unreserved URL characters (RFC 3986): nothing that needs escaping or means something."""


def check_root_path(value: str) -> str:
    """The prefix, checked: "" (none), or "/seg[/seg...]" with no trailing slash; BadRequest says what is wrong."""
    if value == "":
        return value
    why = None
    if len(value) > MAX_ROOT_PATH:
        why = f"it is {len(value)} characters; the limit is {MAX_ROOT_PATH}"
    elif not value.startswith("/"):
        why = 'it must start with "/"'
    elif value.endswith("/"):
        why = 'it must not end with "/" (for no prefix, leave it out)'
    elif not all(_SEGMENT.match(part) and part not in (".", "..") for part in value[1:].split("/")):
        why = "each part between slashes must be letters, digits and - . _ ~ only (not . or ..)"
    if why is not None:
        shown = value if len(value) <= 60 else value[:60] + "..."
        raise BadRequest(f'root path {shown!r} is not a URL prefix such as "/llm": {why}')
    return value


class RootPath:
    """ASGI middleware: serve `app` at `/` and under `prefix`, with `root_path` set to `prefix`."""

    def __init__(self, app: Asgi, prefix: str) -> None:
        self.app = app
        self.prefix = check_root_path(prefix)
        self._raw = prefix.encode("ascii")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and self.prefix:
            scope = dict(scope)
            scope["root_path"] = self.prefix
            scope["path"] = self.strip(scope["path"])
            raw = scope.get("raw_path")
            if isinstance(raw, bytes):
                scope["raw_path"] = _strip_bytes(raw, self._raw)
        await self.app(scope, receive, send)

    def close(self) -> None:
        """Close what the app beneath holds open (the guard's access log file)."""
        close = getattr(self.app, "close", None)
        if callable(close):
            close()

    def strip(self, path: str) -> str:
        """`path` without the prefix (taken off as often as it leads: Starlette would take off one more)."""
        while path == self.prefix or path.startswith(self.prefix + "/"):
            path = path[len(self.prefix) :] or "/"
        return path


def _strip_bytes(raw: bytes, prefix: bytes) -> bytes:
    while raw == prefix or raw.startswith(prefix + b"/"):
        raw = raw[len(prefix) :] or b"/"
    return raw
