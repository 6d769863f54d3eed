"""`llm-tui web`: the app in a browser through textual-serve, behind the same rules as the API server.

textual-serve (1.1) is an aiohttp server with four routes: `/` (a page holding xterm.js), `/static/…`, `/ws` (the
websocket a page opens) and `/download/{key}`. Each websocket starts its own copy of the app (`command`, run by
`/bin/sh` with `TEXTUAL_DRIVER` set to Textual's web driver) and relays its screen and the browser's keys; when
the websocket closes, the app is told to quit.

What this module adds, as one aiohttp middleware on textual-serve's application (`_make_app`, the one place it is
built; a private method, so the tests fail when it moves):
- with a password, every request (page, static files, websocket) carries it: HTTP Basic auth (the browser asks
  once), after which a cookie holding a random per-server token does; compared in constant time; repeated
  failures from one address are answered 429 for a minute;
- without a password (loopback only), a `Host` that is not a loopback name or the bound address is refused, as
  the API server does: a web page whose domain resolves to 127.0.0.1 (DNS rebinding) cannot reach the app;
- a websocket whose `Origin` is not this server's own is refused: another site's page cannot open a session in
  the visitor's browser (cross-site websocket hijacking).

The page's websocket URL is built from the address the browser used (or `--public-url`), not from the bound
address, so `--host 0.0.0.0` works from other machines.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import gc
import hmac
import logging
import secrets
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp_jinja2
import psutil
from aiohttp import hdrs, web
from textual_serve.server import Server, to_int

from engines.server.guard import LOOPBACK_HOSTS, bound_name, host_name

log = logging.getLogger("textual-serve")

COOKIE = "llm_tui_web"
REALM = 'Basic realm="llm-tui", charset="UTF-8"'
APP_EXIT_S = 10.0
"""How long a stopping server waits for its apps to quit (finishing their writes) before it terminates them."""
FAILURES_PER_MINUTE = 10
"""Wrong passwords one address may send in a minute before it is answered 429 until the minute is over."""

SOCKET = "llm_tui_socket"
"""Where a request keeps its websocket (see `WebServer._note_socket`)."""
LOGIN = "llm_tui_login"
"""Set on a request that logged in with Basic auth: its response sets the cookie."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def origin_of(url: str) -> str:
    """`scheme://host[:port]` of a URL, lower case: what a browser sends as `Origin` for a page at that URL."""
    parts = urlsplit(url.strip())
    return f"{parts.scheme}://{parts.netloc}".lower()


@dataclass
class FailureLimit:
    """Wrong passwords per client address in a sliding minute."""

    per_minute: int = FAILURES_PER_MINUTE
    clock: Callable[[], float] = time.monotonic
    most_addresses: int = 4096
    """Past this many addresses, the quiet ones are forgotten: many callers cannot grow the table without bound."""
    _seen: dict[str, deque[float]] = field(default_factory=dict)

    def _count(self, client: str) -> int:
        """Failures of `client` in the last minute (older ones are dropped)."""
        times = self._seen.get(client)
        if times is None:
            return 0
        now = self.clock()
        while times and now - times[0] > 60.0:
            times.popleft()
        if not times:
            del self._seen[client]
        return len(times)

    def blocked(self, client: str) -> bool:
        return self._count(client) >= self.per_minute

    def fail(self, client: str) -> None:
        if len(self._seen) >= self.most_addresses:
            for other in list(self._seen):
                self._count(other)
        self._seen.setdefault(client, deque()).append(self.clock())


@dataclass
class Access:
    """Who may use the served app: the password (None: loopback only) and the names and origins it answers."""

    password: str | None
    bound_host: str
    public_url: str | None = None
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    """The cookie's value after a successful login; new each time the server starts."""
    failures: FailureLimit = field(default_factory=FailureLimit)

    def host_allowed(self, host: str | None) -> bool:
        """Without a password, only requests addressed to a loopback name or the bound address are served."""
        if self.password is not None or host is None:
            return True
        return host_name(host) in LOOPBACK_HOSTS | {bound_name(self.bound_host)}

    def origin_allowed(self, origin: str | None, host: str | None) -> bool:
        """A websocket's Origin must be this server's own: the address its page was loaded from."""
        if origin is None:  # not a browser (browsers always send Origin with a websocket)
            return True
        own = {f"http://{host}".lower(), f"https://{host}".lower()} if host else set()
        if self.public_url:
            own.add(origin_of(self.public_url))
        return origin.strip().lower().rstrip("/") in own

    def password_matches(self, authorization: str | None) -> bool:
        """Whether an `Authorization: Basic …` header carries the password (any user name)."""
        if self.password is None or not authorization:
            return False
        scheme, _, encoded = authorization.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        _, _, given = decoded.partition(b":")
        return hmac.compare_digest(given, self.password.encode())

    def cookie_matches(self, value: str | None) -> bool:
        return value is not None and hmac.compare_digest(value.encode(), self.token.encode())


def _refuse(status: int, text: str, **headers: str) -> web.Response:
    return web.Response(status=status, text=text + "\n", headers=headers)


def guard_middleware(access: Access) -> Any:
    """The aiohttp middleware that applies `access` to every request before textual-serve sees it."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        host = request.headers.get(hdrs.HOST)
        if not access.host_allowed(host):
            return _refuse(
                403,
                f"llm-tui web has no password, so it answers only requests addressed to 127.0.0.1, localhost or "
                f"[::1], not to {(host or '')[:80]!r}: open it by 127.0.0.1, or start it with a password "
                "(--password-env NAME)",
            )
        if request.headers.get(hdrs.UPGRADE, "").lower() == "websocket" and not access.origin_allowed(
            request.headers.get(hdrs.ORIGIN), host
        ):
            return _refuse(403, "a websocket from another site's page is refused: open the app from this server")
        if access.password is not None:
            client = request.remote or "?"
            if not access.cookie_matches(request.cookies.get(COOKIE)):
                if access.failures.blocked(client):
                    return _refuse(429, "too many wrong passwords: wait a minute", **{hdrs.RETRY_AFTER: "60"})
                authorization = request.headers.get(hdrs.AUTHORIZATION)
                if not access.password_matches(authorization):
                    if authorization:
                        access.failures.fail(client)
                    return _refuse(401, "llm-tui web needs its password", **{hdrs.WWW_AUTHENTICATE: REALM})
                request[LOGIN] = True  # its response sets the cookie (WebServer._set_cookie)
        return await handler(request)

    return guard


class WebServer(Server):
    """textual-serve's Server on an already bound socket, behind `Access`, reporting in `llm-tui web`'s words."""

    def __init__(
        self, command: str, sock: socket.socket, access: Access, on_listening: Callable[[], None] | None = None
    ) -> None:
        host, port = sock.getsockname()[:2]
        super().__init__(command, host=host, port=port, title="llm-tui", public_url=access.public_url)
        self.sock = sock
        self.access = access
        self.on_listening = on_listening
        self.sockets: set[web.WebSocketResponse] = set()

    async def _make_app(self) -> web.Application:
        app = await super()._make_app()
        app.middlewares.append(guard_middleware(self.access))
        app.on_response_prepare.append(self._set_cookie)
        app.on_response_prepare.append(self._note_socket)
        return app

    def initialize_logging(self) -> None:
        """textual-serve's own messages (an app that failed to start) as plain lines on stderr."""
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("llm-tui web: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False

    async def on_startup(self, app: web.Application) -> None:
        if self.on_listening is not None:
            self.on_listening()

    async def on_shutdown(self, app: web.Application) -> None:
        """Close every session's websocket: each app is then told to quit (instead of waiting on the browsers)."""
        await asyncio.gather(*(ws.close() for ws in list(self.sockets)), return_exceptions=True)

    @aiohttp_jinja2.template("app_index.html")
    async def handle_index(self, request: web.Request) -> dict[str, Any]:
        """The page, with its websocket and static URLs on the address the browser used (or --public-url).

        The context is the one textual-serve's own `handle_index` gives its template; only the base URL differs
        (textual-serve's is the bound address, which a browser elsewhere cannot use for 0.0.0.0)."""
        base = (self.access.public_url or f"{request.scheme}://{request.host}").rstrip("/")
        router = request.app.router
        ws_base = "wss" + base[len("https") :] if base.startswith("https") else "ws" + base[len("http") :]
        return {
            "font_size": to_int(request.query.get("fontsize", "16"), 16),
            "app_websocket_url": f"{ws_base}{router['websocket'].url_for()}",
            "config": {"static": {"url": f"{base}{router['static'].url_for(filename='/')}".rstrip("/") + "/"}},
            "application": {"name": self.title},
        }

    async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
        """textual-serve's session, remembered while it lasts (see `_note_socket`) so that a shutdown can close it."""
        try:
            return await super().handle_websocket(request)
        finally:
            self.sockets.discard(request.get(SOCKET))

    async def _set_cookie(self, request: web.Request, response: web.StreamResponse) -> None:
        """After a Basic login, the cookie that the page's websocket and later requests carry instead."""
        if request.get(LOGIN):
            # A header, not response.set_cookie: by the time this hook runs, aiohttp has turned the cookies into
            # headers already. The token is URL-safe base64: nothing in it needs quoting.
            value = f"{COOKIE}={self.access.token}; Path=/; HttpOnly; SameSite=Strict"
            if origin_of(self.access.public_url or "").startswith("https:") or request.secure:
                value += "; Secure"
            response.headers.add(hdrs.SET_COOKIE, value)

    async def _note_socket(self, request: web.Request, response: web.StreamResponse) -> None:
        if isinstance(response, web.WebSocketResponse):
            request[SOCKET] = response
            self.sockets.add(response)

    def serve(self, debug: bool = False) -> None:
        """Serve until Ctrl+C or SIGTERM; then close the sessions and wait for their apps to end."""
        self.debug = debug
        self.initialize_logging()
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        runner = web.AppRunner(await self._make_app(), access_log=None, shutdown_timeout=5.0, handle_signals=False)
        await runner.setup()
        try:
            await web.SockSite(runner, self.sock).start()
            await stop.wait()
        finally:
            await runner.cleanup()
            await _wait_for_apps(APP_EXIT_S)


async def _wait_for_apps(timeout: float) -> None:
    """Wait (then SIGTERM) for the apps this server started, each told to quit when its websocket closed.

    textual-serve does not wait for an app's process to end: one still running when the event loop closes leaves
    asyncio's child watcher and pipe transports a closed loop to report to (tracebacks on the way out). Reaping is
    left to asyncio (polling for zombies instead): it is asyncio's child watcher that reports the exit.
    """
    me = psutil.Process()
    deadline = time.monotonic() + timeout
    while (running := [c for c in me.children() if _running(c)]) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    for child in running:
        with contextlib.suppress(psutil.Error):
            child.terminate()
    await asyncio.sleep(0.1)  # the child watcher's exit reports run on this loop
    gc.collect()  # the finished sessions' pipe transports close while their loop is still open


def _running(process: psutil.Process) -> bool:
    try:
        return bool(process.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False
