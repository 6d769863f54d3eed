"""RangeReader: the bounded remote `read_at` behind remote header reads, against servers that misbehave."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import httpx
import pytest

from engines.catalog.gguf_header import parse_gguf_header, read_gguf_header
from engines.errors import BadModelFile
from engines.hub.errors import HubAuthError, HubError, HubNotFound, HubRateLimited, HubUnreachable
from engines.hub.range_reader import MAX_WINDOW, RangeReader
from tests.engines.gguf_corpus import write_gguf

DATA = bytes(range(256)) * 4096  # 1 MiB of known bytes


def serve(data: bytes, *, ignore_range: bool = False, shift: int = 0, log: list[httpx.Request] | None = None):
    def handler(request: httpx.Request) -> httpx.Response:
        if log is not None:
            log.append(request)
        match = re.match(r"bytes=(\d+)-(\d+)", request.headers.get("range", ""))
        if match is None or ignore_range:
            return httpx.Response(200, content=data)
        start, end = int(match[1]) + shift, min(int(match[2]), len(data) - 1)
        return httpx.Response(
            206, headers={"content-range": f"bytes {start}-{end}/{len(data)}"}, content=data[start : end + 1]
        )

    return httpx.Client(transport=httpx.MockTransport(handler))


def reader(http: httpx.Client, size: int = len(DATA), **kwargs: object) -> RangeReader:
    return RangeReader(
        http, "http://hub.test/org/repo/resolve/c0ffee/f.gguf", size=size, shown="org/repo/f.gguf", **kwargs
    )  # type: ignore[arg-type]


def test_reads_exact_bytes_and_counts_them() -> None:
    log: list[httpx.Request] = []
    with reader(serve(DATA, log=log)) as r:
        assert r.read_at(0, 10)[:10] == DATA[:10]
        got = r.read_at(300_000, 5)
        assert got == DATA[300_000 : 300_000 + len(got)] and len(got) >= 5
        assert r.stats.requests == 2 == len(log)
        assert r.stats.bytes_read == sum(
            int(q.headers["range"].split("-")[1]) - int(q.headers["range"][6:].split("-")[0]) + 1 for q in log
        )


def test_window_grows_while_reads_follow_on_and_is_capped() -> None:
    log: list[httpx.Request] = []
    with reader(serve(DATA, log=log), size=len(DATA)) as r:
        offset = 0
        while offset < len(DATA):
            chunk = r.read_at(offset, 1)
            offset += len(chunk)
    sizes = [int(q.headers["range"].split("-")[1]) - int(q.headers["range"][6:].split("-")[0]) + 1 for q in log]
    assert sizes[0] < sizes[1] and max(sizes) <= MAX_WINDOW


def test_a_header_past_the_budget_is_refused_not_read_whole() -> None:
    with reader(serve(DATA), max_bytes=200_000) as r, pytest.raises(BadModelFile, match="download it to inspect"):
        offset = 0
        while True:
            offset += len(r.read_at(offset, 1))
    assert r.bytes_read <= 200_000


def test_range_ignored_reads_forward_within_the_budget() -> None:
    with reader(serve(DATA, ignore_range=True), max_bytes=600_000) as r:
        assert r.read_at(0, 8)[:8] == DATA[:8]
        assert r.read_at(100_000, 4)[:4] == DATA[100_000:100_004]
        assert r.stats.range_ignored and r.stats.requests == 1
        with pytest.raises(BadModelFile):
            r.read_at(900_000, 4)
        assert r.bytes_read <= 600_000 + 64 * 1024


def test_wrong_bytes_for_a_range_are_an_error() -> None:
    with reader(serve(DATA, shift=7)) as r, pytest.raises(HubError, match="answered a request for bytes 0"):
        r.read_at(0, 8)


def test_redirect_to_another_host_drops_the_token_and_is_remembered() -> None:
    log: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        log.append(request)
        if request.url.host == "hub.test":
            return httpx.Response(302, headers={"location": "http://cdn.test/blob?sig=x", "x-linked-size": "1"})
        start, end = (int(x) for x in request.headers["range"][6:].split("-"))
        return httpx.Response(
            206, headers={"content-range": f"bytes {start}-{end}/{len(DATA)}"}, content=DATA[start : end + 1]
        )

    http = httpx.Client(transport=httpx.MockTransport(handler))
    with reader(http, headers={"authorization": "Bearer hf_secret"}) as r:
        r.read_at(0, 8)
        r.read_at(len(DATA) // 2, 8)
    assert [q.url.host for q in log] == ["hub.test", "cdn.test", "cdn.test"]
    assert log[0].headers["authorization"] == "Bearer hf_secret"
    assert all("authorization" not in q.headers for q in log[1:])


@pytest.mark.parametrize(
    ("status", "headers", "error", "words"),
    [
        (401, {"x-error-code": "GatedRepo"}, HubAuthError, "gated repo: accept its licence"),
        (403, {}, HubAuthError, "set hf_token"),
        (404, {}, HubNotFound, "not on the Hub"),
        (500, {}, HubError, "HTTP 500"),
    ],
)
def test_statuses_become_errors_a_user_can_act_on(
    status: int, headers: dict[str, str], error: type, words: str
) -> None:
    http = httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(status, headers=headers)))
    with reader(http) as r, pytest.raises(error, match=words):
        r.read_at(0, 8)


def test_rate_limit_backs_off_says_so_and_then_gives_up() -> None:
    waits: list[tuple[float, str]] = []
    http = httpx.Client(
        transport=httpx.MockTransport(lambda request: httpx.Response(429, headers={"retry-after": "0"}))
    )
    with reader(http, on_wait=lambda s, why: waits.append((s, why))) as r, pytest.raises(HubRateLimited) as caught:
        r.read_at(0, 8)
    assert len(waits) == 3 and all("HTTP 429" in why for _, why in waits)
    assert "set hf_token" in str(caught.value)


def test_cancel_stops_a_back_off() -> None:
    cancel = threading.Event()
    http = httpx.Client(
        transport=httpx.MockTransport(lambda request: httpx.Response(429, headers={"retry-after": "30"}))
    )
    with (
        reader(http, cancel=cancel, on_wait=lambda s, why: cancel.set()) as r,
        pytest.raises(HubError, match="cancelled"),
    ):
        r.read_at(0, 8)


def test_unreachable_server_is_one_clear_error() -> None:
    http = httpx.Client(timeout=2)
    r = RangeReader(http, "http://127.0.0.1:9/f.gguf", size=100, shown="org/repo/f.gguf")
    with pytest.raises(HubUnreachable, match="cannot reach"):
        r.read_at(0, 8)


def test_remote_gguf_parse_equals_local_parse(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "m.gguf", blocks=3, heads=8, kv_heads=2, chat_template="{{ x }}")
    data = path.read_bytes()
    with reader(serve(data), size=len(data)) as r:
        remote = parse_gguf_header(r.read_at, r.size, r.shown)
    local = read_gguf_header(path)
    assert (remote.metadata, remote.tensors, remote.data_offset) == (local.metadata, local.tensors, local.data_offset)
