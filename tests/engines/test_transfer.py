"""The transfer engine against a misbehaving fake server on 127.0.0.1: resume, verify, retry, never leak."""

from __future__ import annotations

import errno
import hashlib
import itertools
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from engines.downloads import names, pacing, part_file, transfer
from engines.downloads.names import UnsafeFileName, part_path, safe_join
from engines.downloads.transfer import (
    DiskFull,
    DownloadAuthError,
    DownloadCancelled,
    DownloadNotFound,
    PartInUse,
    TransferFailed,
    TransferProgress,
    VerificationFailed,
    download_file,
)
from engines.errors import DownloadError, LlmTuiError
from tests.engines.fake_hub import FakeHub, Fault

DATA = os.urandom(300_000)
SHA = hashlib.sha256(DATA).hexdigest()
TOKEN = "hf_SeCrEtToKeN1234567890"
FAST: dict[str, Any] = {"stall_timeout_s": 0.3, "backoff": lambda attempt: 0.01}


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with FakeHub() as server:
        yield server


def fetch(hub: FakeHub, target: Path, **kwargs: Any) -> transfer.TransferResult:
    options = {"expected_sha256": SHA, "expected_size": len(DATA), **FAST, **kwargs}
    return download_file(hub.url("/f.bin"), target, **options)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_plain_download_is_verified_and_renamed(hub: FakeHub, tmp_path: Path) -> None:
    hub.add("/f.bin", DATA)
    seen: list[TransferProgress] = []
    result = fetch(hub, tmp_path / "f.bin", progress=seen.append)
    assert (tmp_path / "f.bin").read_bytes() == DATA
    assert (result.sha256, result.size, result.resumed_from, result.attempts) == (SHA, len(DATA), 0, 1)
    assert leftovers(tmp_path) == ["f.bin"]
    assert seen[-1].bytes_done == len(DATA) and seen[-1].total == len(DATA) and seen[-1].eta_s == 0
    assert "range" not in hub.requests[0].headers


def test_resume_hashes_the_existing_part_and_asks_for_the_rest(hub: FakeHub, tmp_path: Path) -> None:
    hub.add("/f.bin", DATA)
    target = tmp_path / "f.bin"
    part_path(target, hub.url("/f.bin")).write_bytes(DATA[:123_456])
    result = fetch(hub, target)
    assert result.resumed_from == 123_456 and result.sha256 == SHA
    assert hub.requests[0].headers["range"] == "bytes=123456-"
    assert target.read_bytes() == DATA


def test_stall_reconnects_and_resumes_from_the_part(hub: FakeHub, tmp_path: Path) -> None:
    hub.add("/f.bin", DATA, Fault(stall_after=100_000))
    result = fetch(hub, tmp_path / "f.bin")
    assert result.attempts == 2 and result.sha256 == SHA
    assert hub.requests[1].headers["range"] == "bytes=100000-"


def test_dropped_connection_resumes(hub: FakeHub, tmp_path: Path) -> None:
    hub.add("/f.bin", DATA, Fault(drop_after=70_000), Fault(drop_after=70_000))
    result = fetch(hub, tmp_path / "f.bin")
    assert result.attempts == 3 and result.sha256 == SHA
    assert [r.headers.get("range") for r in hub.requests] == [None, "bytes=70000-", "bytes=140000-"]


def test_server_ignoring_range_restarts_cleanly_from_zero(hub: FakeHub, tmp_path: Path) -> None:
    hub.add("/f.bin", DATA, default=Fault(ignore_range=True))
    target = tmp_path / "f.bin"
    part_path(target, hub.url("/f.bin")).write_bytes(b"stale bytes that must not survive")
    result = fetch(hub, target)
    assert result.sha256 == SHA and target.read_bytes() == DATA
    assert hub.requests[0].headers["range"] == "bytes=33-"


def test_wrong_content_range_discards_the_part_and_restarts(hub: FakeHub, tmp_path: Path) -> None:
    hub.add("/f.bin", DATA, Fault(wrong_range=True))
    target = tmp_path / "f.bin"
    part_path(target, hub.url("/f.bin")).write_bytes(DATA[:5000])
    result = fetch(hub, target)
    assert result.sha256 == SHA and target.read_bytes() == DATA
    assert [r.headers.get("range") for r in hub.requests] == ["bytes=5000-", None]


def test_416_with_a_complete_part_just_verifies(hub: FakeHub, tmp_path: Path) -> None:
    hub.add("/f.bin", DATA)
    target = tmp_path / "f.bin"
    part_path(target, hub.url("/f.bin")).write_bytes(DATA)
    result = fetch(hub, target, expected_size=None)
    assert result.sha256 == SHA and target.read_bytes() == DATA
    assert hub.requests[0].headers["range"] == f"bytes={len(DATA)}-"


def test_corrupt_byte_fails_names_both_hashes_and_leaves_nothing(hub: FakeHub, tmp_path: Path) -> None:
    hub.add("/f.bin", DATA, Fault(corrupt_at=4242))
    with pytest.raises(VerificationFailed) as caught:
        fetch(hub, tmp_path / "f.bin")
    bad = bytearray(DATA)
    bad[4242] ^= 0xFF
    message = str(caught.value)
    assert SHA in message and hashlib.sha256(bad).hexdigest() in message
    assert isinstance(caught.value, DownloadError) and isinstance(caught.value, LlmTuiError)
    assert leftovers(tmp_path) == []


def test_size_check_without_a_hash(hub: FakeHub, tmp_path: Path) -> None:
    hub.add("/f.bin", DATA)
    with pytest.raises(DownloadError, match="300000 bytes but 299999 were expected"):
        fetch(hub, tmp_path / "f.bin", expected_sha256=None, expected_size=len(DATA) - 1)
    assert not (tmp_path / "f.bin").exists()


def test_redirect_to_another_host_never_carries_the_token(tmp_path: Path) -> None:
    with FakeHub() as origin, FakeHub() as cdn:
        cdn.add("/blob", DATA, Fault(drop_after=50_000))
        origin.add("/f.bin", DATA, default=Fault(redirect_to=cdn.url("/blob")))
        origin.add("/same", DATA, Fault(redirect_to="/f2.bin"))
        origin.add("/f2.bin", DATA)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        result = fetch(origin, tmp_path / "f.bin", headers=auth)
        assert result.sha256 == SHA and result.attempts == 2
        assert all(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in origin.requests)
        assert len(cdn.requests) == 2 and all("authorization" not in r.headers for r in cdn.requests)
        assert cdn.requests[1].headers["range"] == "bytes=50000-"
        # a redirect on the same host:port keeps the credentials (HF resolves small files that way)
        download_file(origin.url("/same"), tmp_path / "g.bin", expected_sha256=SHA, headers=auth, **FAST)
        assert origin.requests[-1].path == "/f2.bin" and origin.requests[-1].headers["authorization"]


def test_401_is_an_auth_error_without_retry_and_without_the_token(
    hub: FakeHub, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hub.add("/f.bin", DATA, default=Fault(status=401))
    caplog.set_level(logging.DEBUG)
    with pytest.raises(DownloadAuthError) as caught:
        fetch(hub, tmp_path / "f.bin", headers={"Authorization": f"Bearer {TOKEN}"})
    assert "401" in str(caught.value) and TOKEN not in str(caught.value) and TOKEN not in repr(caught.value)
    assert len(hub.requests) == 1 and TOKEN not in caplog.text


def test_transport_errors_are_redacted(tmp_path: Path) -> None:
    with FakeHub() as hub:
        url = hub.url("/f.bin")
    with pytest.raises(TransferFailed) as caught:  # nobody listens any more: connection refused
        download_file(url, tmp_path / "f.bin", headers={"Authorization": f"Bearer {TOKEN}"}, max_retries=1, **FAST)
    assert "ConnectError" in str(caught.value) and TOKEN not in str(caught.value)


def test_404_is_not_found(hub: FakeHub, tmp_path: Path) -> None:
    with pytest.raises(DownloadNotFound, match="404"):
        fetch(hub, tmp_path / "missing.bin")
    assert len(hub.requests) == 1


def test_500_once_is_retried(hub: FakeHub, tmp_path: Path) -> None:
    hub.add("/f.bin", DATA, Fault(status=500))
    assert fetch(hub, tmp_path / "f.bin").attempts == 2


def test_retries_are_bounded_and_backoff_grows(hub: FakeHub, tmp_path: Path) -> None:
    hub.add("/f.bin", DATA, default=Fault(status=503))
    delays: list[int] = []
    with pytest.raises(TransferFailed, match=r"after 3 retries.*HTTP 503"):
        fetch(hub, tmp_path / "f.bin", max_retries=3, backoff=lambda n: delays.append(n) or 0.0)
    assert len(hub.requests) == 4 and delays == [1, 2, 3]
    assert transfer.default_backoff(1) < transfer.default_backoff(3) <= transfer.default_backoff(99) == 30


def test_disk_full_while_writing_deletes_the_part_so_the_disk_is_not_left_full(
    hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.add("/f.bin", DATA)
    target = tmp_path / "f.bin"
    real_write = part_file.write_all
    written = [0]

    def filling_disk(fd: int, data: bytes) -> None:
        if written[0] + len(data) > 100_000:
            os.write(fd, data[:10])  # a short write, then the disk is full: the stray 10 bytes are dropped
            raise OSError(errno.ENOSPC, "No space left on device")
        written[0] += len(data)
        real_write(fd, data)

    monkeypatch.setattr(part_file, "write_all", filling_disk)
    with pytest.raises(DiskFull, match=rf"disk full.*deleted.*free {len(DATA)} bytes in {tmp_path}"):
        fetch(hub, target)
    assert written[0] > 0 and leftovers(tmp_path) == []  # the 100 kB written are given back
    monkeypatch.setattr(part_file, "write_all", real_write)
    result = fetch(hub, target)
    assert result.resumed_from == 0 and result.sha256 == SHA


def test_disk_space_is_checked_before_starting(hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hub.add("/f.bin", DATA)
    monkeypatch.setattr(transfer.shutil, "disk_usage", lambda _: transfer.shutil._ntuple_diskusage(10, 9, 1))  # type: ignore[attr-defined]
    with pytest.raises(DiskFull, match="needs 300000 more bytes, 1 free"):
        fetch(hub, tmp_path / "f.bin")
    assert hub.requests == []


def test_cancel_is_honoured_within_a_chunk_and_keeps_the_part(hub: FakeHub, tmp_path: Path) -> None:
    hub.add("/f.bin", DATA, Fault(throttle_bps=1_000_000))
    cancel = threading.Event()
    with pytest.raises(DownloadCancelled):
        fetch(hub, tmp_path / "f.bin", cancel=cancel, progress=lambda p: cancel.set())
    part = part_path(tmp_path / "f.bin", hub.url("/f.bin"))
    assert 0 < part.stat().st_size <= 2 * 65_536 and not (tmp_path / "f.bin").exists()


def test_bandwidth_cap_slows_the_transfer(hub: FakeHub, tmp_path: Path) -> None:
    hub.add("/f.bin", DATA)
    started = time.monotonic()
    fetch(hub, tmp_path / "f.bin", bandwidth_cap=1_000_000)  # 300 kB less a 250 kB burst at 1 MB/s
    assert time.monotonic() - started >= 0.04
    started = time.monotonic()
    fetch(hub, tmp_path / "g.bin", bandwidth_cap=500_000)
    assert time.monotonic() - started >= 0.3


def test_progress_is_rate_limited_over_a_throttled_transfer(hub: FakeHub, tmp_path: Path) -> None:
    hub.add("/f.bin", DATA, Fault(throttle_bps=600_000))
    seen: list[TransferProgress] = []
    started = time.monotonic()
    fetch(hub, tmp_path / "f.bin", progress=seen.append)
    elapsed = time.monotonic() - started
    assert 2 <= len(seen) <= elapsed * 10 + 2  # at most ~10 a second, however long the transfer took
    assert all(a.bytes_done <= b.bytes_done for a, b in itertools.pairwise(seen))
    assert seen[-1].bytes_done == len(DATA) and seen[-1].total == len(DATA)
    assert all(p.speed_bps > 0 for p in seen[1:])
    with pytest.raises(AttributeError):
        seen[0].bytes_done = 1  # type: ignore[misc]


class Clock:
    """A monotonic clock the test moves by hand (in steps a float holds exactly), so speeds are exact."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_speed_is_smoothed_and_reports_are_rate_limited(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(pacing, "time", SimpleNamespace(monotonic=clock))  # pacing's clock only
    seen: list[TransferProgress] = []
    meter = pacing.Meter(seen.append, 0, 2_000_000)
    for _ in range(4):  # 125 kB every 1/8 s: a steady 1 MB/s
        clock.now += 0.125
        meter.add(125_000)
    assert [p.speed_bps for p in seen] == [1e6] * 4
    assert seen[-1].eta_s == 1.5  # 1.5 MB left at 1 MB/s
    clock.now += 0.0625
    meter.add(10_000)  # sooner than PROGRESS_INTERVAL_S after the last report: counted, not reported
    assert len(seen) == 4
    clock.now += 0.0625
    meter.add(490_000)  # a burst: 500 kB in 1/8 s is 4 MB/s for a moment
    assert len(seen) == 5 and seen[-1].bytes_done == 1_000_000
    # The shown speed moves 30 % of the way toward the burst (0.7 × 1 + 0.3 × 4 MB/s), not all of it.
    assert seen[-1].speed_bps == pytest.approx(1.9e6)


def test_a_part_in_use_by_another_process_is_refused(hub: FakeHub, tmp_path: Path) -> None:
    import fcntl

    hub.add("/f.bin", DATA)
    part = part_path(tmp_path / "f.bin", hub.url("/f.bin"))
    part.touch()
    # flock locks belong to the open file description: a second open() in this process conflicts
    with part.open("rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(PartInUse):
            fetch(hub, tmp_path / "f.bin")


def test_malformed_expected_hash_is_refused(hub: FakeHub, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="64 hexadecimal"):
        fetch(hub, tmp_path / "f.bin", expected_sha256="sha256:abc")


def test_part_names_are_unique_per_task(tmp_path: Path) -> None:
    a = part_path(tmp_path / "m.gguf", "https://hf.co/a/resolve/main/m.gguf")
    b = part_path(tmp_path / "m.gguf", "https://hf.co/b/resolve/main/m.gguf")
    assert a != b and a.parent == b.parent == tmp_path
    assert a.name.startswith("m.gguf.") and a.name.endswith(".part") and len(a.name) == len("m.gguf.") + 8 + 5


@pytest.mark.parametrize(
    "name", ["", "../x", "a/../../x", "/etc/passwd", "C:\\x", "C:x", "a\\..\\x", "a//b", "a/..", ".", "a\x00b"]
)
def test_safe_join_refuses_escaping_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(UnsafeFileName):
        safe_join(tmp_path, name)


def test_safe_join_accepts_nested_names_and_refuses_symlink_escapes(tmp_path: Path) -> None:
    root = tmp_path / "models"
    root.mkdir()
    assert safe_join(root, "org/model/q4.gguf") == root.resolve() / "org" / "model" / "q4.gguf"
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(UnsafeFileName, match="outside"):
        safe_join(root, "link/evil.gguf")
    assert names.safe_join(root, "./a.gguf").name == "a.gguf"


CHILD = """
import sys
from pathlib import Path
from engines.downloads.transfer import download_file

def report(p):
    print(p.bytes_done, flush=True)

download_file(sys.argv[1], Path(sys.argv[2]), expected_sha256=sys.argv[3], progress=report)
"""


def test_sigkill_mid_transfer_then_resume(hub: FakeHub, tmp_path: Path) -> None:
    data = os.urandom(3_000_000)
    sha = hashlib.sha256(data).hexdigest()
    served = hub.add("/big.bin", data, default=Fault(throttle_bps=3_000_000))
    url, target = hub.url("/big.bin"), tmp_path / "big.bin"
    part = part_path(target, url)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    sizes = []
    for _ in range(2):  # kill it twice, at its first and at a later progress report
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, url, str(target), sha], stdout=subprocess.PIPE, text=True, env=env
        )
        assert child.stdout is not None
        first = int(child.stdout.readline())
        while int(child.stdout.readline()) < first + 200_000:
            pass
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        child.stdout.close()
        assert not target.exists()
        sizes.append(part.stat().st_size)
        assert 0 < sizes[-1] < len(data)
    assert sizes[1] > sizes[0]
    served.default = Fault()
    result = download_file(url, target, expected_sha256=sha, **FAST)
    assert result.resumed_from == sizes[1] and result.sha256 == sha
    assert target.read_bytes() == data and not part.exists()
