"""Listening sockets for llm-tui's servers (the API, `llm-tui web`): which addresses stay on this machine, and
binding before the server starts, so a port in use is one clear error rather than a traceback from an event loop.
No FastAPI or aiohttp here: each server imports it without the other's extra."""

from __future__ import annotations

import errno
import ipaddress
import socket

from engines.errors import LlmTuiError

LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost; anything else (0.0.0.0 included) reaches beyond this machine."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(
    host: str, port: int, *, error: type[LlmTuiError] = LlmTuiError, in_use: str = "", backlog: int = 2048
) -> socket.socket:
    """A listening, non-blocking socket on host:port; `error` naming the port when it is taken (`in_use` says
    what to do then) or the address when it cannot be used."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise error(f"cannot listen on {host}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    # The protocol number matters: asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP, and
    # accepted connections inherit it. With proto 0, every reply waits ~40 ms on Nagle + delayed ACK.
    sock = socket.socket(family, kind, proto or socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT is free; a live one is not
        sock.bind(address)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise error(f"port {port} on {host} is already in use{in_use}") from None
        if exc.errno == errno.EACCES:
            raise error(f"not allowed to listen on {host}:{port} (ports below 1024 need root)") from None
        raise error(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock


def address_url(sock: socket.socket) -> str:
    """`http://HOST:PORT` of the address actually bound (port 0 picks one); IPv6 in brackets."""
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"
