"""One line on the app's OpenAI-compatible API server: off (and where it would listen), or its URL, keys,
request count and the last error."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.markup import escape
from textual.widgets import Static

if TYPE_CHECKING:
    from engines.config.serve import ServeConfig
    from engines.server.guard import ServerStats
    from engines.server.runner import ServerThread


def api_summary(server: ServerThread | None, serve: ServeConfig, key: str = "a") -> str:
    """Console markup: the server's state; `key` is the key that toggles it."""
    if server is None:
        host = f"[{serve.host}]" if ":" in serve.host else serve.host
        return f"[b]API off[/b] · {key} serves the running models at http://{host}:{serve.port}/v1"
    stats = server.stats.snapshot()
    keys = server.key_count
    parts = [
        f"[b $text-success]API on[/] {escape(server.url)}",
        f"{keys} key{'s' if keys != 1 else ''} required" if keys else "no key (loopback only)",
        f"{stats['requests']} request{'s' if stats['requests'] != 1 else ''}",
    ]
    if stats["in_flight"]:
        parts.append(f"{stats['in_flight']} in flight")
    if stats["errors"]:
        parts.append(f"[$text-error]{stats['errors']} error{'s' if stats['errors'] != 1 else ''}[/]")
    line = " · ".join(parts)
    if stats["last_error"]:
        line += f"\n[$text-error]last error: {escape(shorten_words(str(stats['last_error']), ERROR_CHARS))}[/]"
    return line


ERROR_CHARS = 130
"""The last error is kept to two lines at 80 columns; `A` (the API log) shows it whole."""


def shorten_words(text: str, limit: int) -> str:
    """`text`, or its words up to `limit` characters and a note that `A` shows the rest."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 16].rsplit(" ", 1)[0]
    return f"{cut}… (A: all of it)"


def request_lines(stats: ServerStats) -> list[str]:
    """The recent requests, one line each: method, path, status, milliseconds, caller, error."""
    return [
        f"{r.method} {r.path} {r.status} {r.ms:.0f} ms {r.client}" + (f" ({r.error})" if r.error else "")
        for r in stats.recent_records()
    ]


class ApiStatus(Static):
    """The API server's line on the instances screen, redrawn by the screen's refresh."""

    DEFAULT_CSS = """
    ApiStatus { height: auto; max-height: 4; padding: 0 1; color: $text-muted; }
    """

    def show(self, server: ServerThread | None, serve: ServeConfig) -> None:
        self.update(api_summary(server, serve))
