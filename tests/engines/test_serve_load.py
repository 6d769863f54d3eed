"""Bounded load on the in-process API server (loopback only) over fake engines: many streaming clients at once,
instances in parallel, and a client that stops reading never holding up the others.

`pytest -s` shows the figures (requests/s, TTFT p50/p99).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.serve_load import LoadResult, echo, run_load, run_load_async
from engines.adapters.fake import FakeEngine
from engines.config.serve import ServeConfig
from tests.engines.server_fixture import served


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll a condition no event signals (server counters), up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        pause.wait(0.01)


def show(label: str, r: LoadResult) -> None:
    p50 = f"{r.ttft_p50_ms:.0f}" if r.ttft_p50_ms is not None else "-"
    p99 = f"{r.ttft_p99_ms:.0f}" if r.ttft_p99_ms is not None else "-"
    print(
        f"\n{label}: {r.requests} requests in {r.elapsed_s:.1f} s = {r.requests_per_s:.1f}/s, "
        f"TTFT p50 {p50} ms p99 {p99} ms, {r.tokens} tokens, "
        f"{r.error_count} errors, {r.incomplete} incomplete"
    )


def assert_clean(r: LoadResult, clients: int) -> None:
    assert r.error_count == 0, r.errors
    assert r.incomplete == 0, r.incomplete_details
    assert r.requests > clients
    assert r.ttft_p50_ms is not None


def test_sixteen_streaming_clients_for_twenty_seconds() -> None:
    with served({"tiny": FakeEngine(token_delay_s=0.005)}) as s:
        result = run_load(s.url, clients=16, seconds=20.0, model="tiny", expect=echo)
        show("16 clients x 20 s, one fake instance (5 ms/token)", result)
        assert_clean(result, 16)
        # The instance's pending count drops before a reply's Done is handed on, so it is exact now.
        assert s.manager.info(s.run_ids["tiny"]).pending_requests == 0
        wait_until(lambda: s.context.stats.snapshot()["in_flight"] == 0)
        stats = s.context.stats.snapshot()
        assert stats["errors"] == 0 and stats["cancelled"] == 0  # every stream ran to its end
        assert stats["by_status"] == {"200": result.requests}


def test_slow_instance_does_not_hold_up_a_fast_one() -> None:
    models = {"slow": FakeEngine(token_delay_s=0.2), "fast": FakeEngine(token_delay_s=0.001)}
    with served(models) as s:

        async def both() -> tuple[LoadResult, LoadResult]:
            slow = run_load_async(s.url, clients=2, seconds=3.0, model="slow", expect=echo)
            fast = run_load_async(s.url, clients=2, seconds=3.0, model="fast", expect=echo)
            return await asyncio.gather(slow, fast)

        slow, fast = asyncio.run(both())
        show("slow model (200 ms/token), 2 clients", slow)
        show("fast model (1 ms/token), 2 clients, at the same time", fast)
        assert slow.error_count == fast.error_count == 0, slow.errors + fast.errors
        assert slow.incomplete == fast.incomplete == 0, slow.incomplete_details + fast.incomplete_details
        assert slow.ttft_p50_ms is not None and slow.ttft_p50_ms >= 200.0  # the slow one really was busy
        # Relative, not a time limit: the fast instance's clients never waited on the slow one's queue.
        assert fast.ttft_p50_ms is not None and fast.ttft_p50_ms < slow.ttft_p50_ms / 4
        assert fast.requests > 10 * slow.requests
        for name in models:
            assert s.manager.info(s.run_ids[name]).pending_requests == 0


def _sized_past_socket_buffers() -> int:
    """Reply bytes that cannot all sit in the kernel's buffers, so the server really has to wait on the reader."""
    # The server's send buffer grows up to tcp_wmem's maximum; the stalled client fixes its receive buffer small.
    most = 4 * 1024 * 1024
    with contextlib.suppress(OSError, ValueError, IndexError):
        most = max(most, int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2]))
    return 2 * most + 1024 * 1024


def _open_stalled_stream(url: str, model: str, prompt: str) -> socket.socket:
    """POST a streamed chat request on a socket with a tiny receive buffer; return once the first chunk is in."""
    host_port = url.split("//", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": prompt}], "stream": True}).encode()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: no autotuning
    sock.settimeout(30.0)
    sock.connect((host, int(port)))
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host_port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    sock.sendall(head + body)
    seen = b""
    while b'"content":"Echo:' not in seen:  # the headers, the role chunk and the first token
        data = sock.recv(4096)
        assert data, f"the server closed the stream early: {seen[:300]!r}"
        seen += data
    assert seen.startswith(b"HTTP/1.1 200"), seen[:300]
    return sock


def test_a_client_that_stops_reading_does_not_block_the_others() -> None:
    size = _sized_past_socket_buffers()
    word = "x" * 8000
    prompt = " ".join([word] * (size // len(word) + 1))
    serve = ServeConfig(max_body_bytes=2 * len(prompt) + 65536)
    with served({"tiny": FakeEngine(token_delay_s=0.001)}, serve=serve) as s:
        stalled = _open_stalled_stream(s.url, "tiny", prompt)
        try:
            # The worker generates the whole stalled reply without waiting for its reader...
            wait_until(lambda: s.manager.info(s.run_ids["tiny"]).pending_requests == 0, timeout=60.0)
            # ...while the server holds most of it, unsent, for a reader that does not read.
            result = run_load(s.url, clients=4, seconds=3.0, model="tiny", expect=echo)
            show("4 clients x 3 s beside a stalled stream", result)
            assert_clean(result, 4)
            assert s.context.stats.snapshot()["in_flight"] == 1  # only the stalled stream, still not sent
        finally:
            stalled.close()
        # Once its client goes, the stalled stream ends too.
        wait_until(lambda: s.context.stats.snapshot()["in_flight"] == 0, timeout=15.0)
        assert s.manager.info(s.run_ids["tiny"]).pending_requests == 0


def test_the_driver_refuses_anything_but_loopback() -> None:
    with pytest.raises(ValueError, match="loopback"):
        run_load("http://192.0.2.1:9/v1", clients=1, seconds=0.1, model="tiny")
