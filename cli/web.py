"""`llm-tui web`: the app in a web browser (textual-serve), one copy of the app per browser tab.

The API server's rule holds here too: loopback only, unless a password is set. The serving itself (textual-serve,
aiohttp, the password and Origin checks) is in `tui/web_serve.py`; this module reads the flags, checks them, binds
the port (so a taken port is one line) and builds the command each browser session runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import socket
import sys
from collections.abc import Callable, Mapping, MutableMapping
from typing import TYPE_CHECKING

from engines import listen
from engines.errors import LlmTuiError
from engines.listen import is_loopback

if TYPE_CHECKING:
    from engines.config.load import Config

PASSWORD_VARIABLE = "LLM_TUI_WEB_PASSWORD"
INSTALL_HINT = "pip install 'llm-tui[web]'"


class WebError(LlmTuiError):
    """`llm-tui web` cannot start: a flag is wrong, the port is taken, the extra is missing."""


class Exposed(WebError):
    """Asked to listen beyond loopback without a password (a usage error: exit status 2)."""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: Callable[..., object]) -> None:
    from tui.screen_list import MODE_NAMES

    web = sub.add_parser("web", help="serve the app to a web browser (one copy of the app per browser tab)")
    common(web)
    web.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; others need a password)"
    )
    web.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080; 0 = any free port)")
    web.add_argument(
        "--password-env",
        metavar="NAME",
        help=f"environment variable holding the password browsers must give (default: {PASSWORD_VARIABLE})",
    )
    web.add_argument(
        "--public-url",
        metavar="URL",
        help="the address browsers use, behind a proxy or TLS (https://… gives wss://); default: the one they used",
    )
    # The app's own options, after the subcommand too; suppressed so they don't mask a value given before it.
    web.add_argument("--screen", choices=MODE_NAMES, default=argparse.SUPPRESS, help="screen the app opens on")
    web.add_argument("--model", metavar="MODEL", default=argparse.SUPPRESS, help="launch this model in each app")


def web_password(args: argparse.Namespace, env: Mapping[str, str]) -> str | None:
    """The password from --password-env NAME, else LLM_TUI_WEB_PASSWORD; None when neither is set."""
    if args.password_env:
        value = env.get(args.password_env, "").strip()
        if not value:
            raise WebError(f"--password-env {args.password_env}: that environment variable is not set or empty")
        return value
    return env.get(PASSWORD_VARIABLE, "").strip() or None


def check_settings(args: argparse.Namespace, password: str | None) -> None:
    """Refuse a port out of range, a public URL that is not http(s), and a non-loopback address without a password."""
    if not 0 <= args.port <= 65535:
        raise WebError(f"--port must be from 0 to 65535, got {args.port}")
    if args.public_url and not args.public_url.lower().startswith(("http://", "https://")):
        raise WebError(f"--public-url must start with http:// or https://, got {args.public_url!r}")
    if not is_loopback(args.host) and password is None:
        raise Exposed(
            f"refusing to listen on {args.host} without a password: anyone who can reach this machine could use the "
            f"app, its models and its files; set one with --password-env NAME or {PASSWORD_VARIABLE}, or bind 127.0.0.1"
        )


def app_command(args: argparse.Namespace) -> str:
    """The shell command each browser session runs: this app, with this interpreter and the app's options."""
    words = [sys.executable, "-m", "cli.main"]
    if getattr(args, "config", None):
        words += ["--config", os.path.abspath(args.config)]
    if getattr(args, "screen", None):
        words += ["--screen", args.screen]
    if getattr(args, "model", None):
        words += ["--model", args.model]
    if getattr(args, "debug", False):
        words.append("--debug")
    # textual-serve runs it with /bin/sh -c: `exec` makes the app the session's process, not a shell's child.
    return "exec " + shlex.join(words)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port; WebError naming the port when it is taken."""
    return listen.bind(host, port, error=WebError, in_use="; choose another with --port", backlog=128)


def url_of(sock: socket.socket) -> str:
    """`http://HOST:PORT` of the address actually bound (port 0 picks one)."""
    return listen.address_url(sock)


def run_web(args: argparse.Namespace, config: Config, env: MutableMapping[str, str] | None = None) -> int:
    """Check, bind (or fail with one line), then serve until Ctrl+C / SIGTERM (exit 0)."""
    env = os.environ if env is None else env
    try:
        password = web_password(args, env)
        check_settings(args, password)
    except Exposed as exc:
        print(f"llm-tui: error: {exc}", file=sys.stderr)
        return 2
    if importlib.util.find_spec("textual_serve") is None:
        raise WebError(f"`llm-tui web` needs textual-serve: {INSTALL_HINT}")
    # The apps this server starts inherit its environment: the password is not theirs to see.
    for name in {args.password_env or PASSWORD_VARIABLE, PASSWORD_VARIABLE}:
        env.pop(name, None)
    for warning in config.warnings:
        _say(f"warning: {warning}")
    sock = bind(args.host, args.port)
    from tui.web_serve import Access, WebServer

    access = Access(password, bound_host=args.host, public_url=args.public_url)
    guard = "password required" if password else "no password: this machine only"
    if args.public_url:
        guard += f"; browsers use {args.public_url}"
    line = f"serving on {url_of(sock)} ({guard}); Ctrl+C stops"
    server = WebServer(app_command(args), sock, access, on_listening=lambda: _say(line))
    # Not textual-serve's debug mode (Textual devtools and a textual.log in the working directory): --debug goes to
    # the apps, in the command.
    server.serve()
    _say("stopped")
    return 0


def _say(text: str) -> None:
    print(f"llm-tui web: {text}", file=sys.stderr, flush=True)
