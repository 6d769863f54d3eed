"""Issue 18, items 6-8: a download writes nothing past the listed size, verifies files kept in git by their blob
id, quotes file names in URLs and leaves no empty `.part` behind; through the transfer, the queue and the CLI."""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from engines.downloads import part_file
from engines.downloads.names import part_path
from engines.downloads.queue import DownloadQueue, QueueSettings, hf_url
from engines.downloads.tasks import DownloadTask, TaskStatus
from engines.downloads.transfer import (
    DownloadAuthError,
    DownloadNotFound,
    TransferFailed,
    VerificationFailed,
    download_file,
)
from engines.errors import DownloadError
from engines.store.sessions import Store
from tests.cli.test_pull import ROOT, pull_cmd
from tests.engines.fake_hub import DEFAULT_COMMIT, FakeHub, Fault

LISTED = 1_000_000
ENDLESS = 48 << 20  # "without end" for the client; bounded so that a client which does not stop still finishes
CHUNK = 1 << 16  # the most one read of the body returns (httpx's h11 reads 64 KiB at a time)
FAST: dict[str, Any] = {"stall_timeout_s": 2.0, "backoff": lambda attempt: 0.01}


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with FakeHub() as server:
        yield server


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "llm-tui.db") as opened:
        yield opened


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every write into a `.part` (bytes that reached the disk)."""
    seen: list[int] = []
    real = part_file.write_all

    def counting(fd: int, data: bytes) -> None:
        seen.append(len(data))
        real(fd, data)

    monkeypatch.setattr(part_file, "write_all", counting)
    return seen


def leftovers(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def received(failure: VerificationFailed) -> int:
    """How many bytes the transfer had read when it cut the body off (it says so in the message)."""
    found = re.search(r"at least (\d+) bytes", failure.got)
    assert found, failure.got
    return int(found.group(1))


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def run_queue(queue: DownloadQueue) -> list[DownloadTask]:
    wait_for(lambda: not queue.running() and queue.tasks.next_pending() is None, "every task to finish")
    return queue.tasks.all()


# -- item 6: nothing past the listed size ---------------------------------------------------------------------


def test_a_body_without_end_is_cut_within_one_chunk_of_the_listed_size_and_removed(
    hub: FakeHub, tmp_path: Path, writes: list[int]
) -> None:
    """The listing says 1,000,000 bytes; the GET streams chunked without end."""
    served = hub.add("/f.bin", os.urandom(LISTED), default=Fault(chunked_bytes=ENDLESS))
    with pytest.raises(VerificationFailed, match=r"size of f\.bin mismatch: expected 1000000 bytes") as caught:
        download_file(hub.url("/f.bin"), tmp_path / "f.bin", expected_size=LISTED, **FAST)
    assert sum(writes) <= LISTED  # the bytes past the size are never written
    assert LISTED < received(caught.value) <= LISTED + CHUNK  # read at most one chunk too many
    assert served.sent_bytes < ENDLESS and leftovers(tmp_path) == []  # stopped early; the .part is gone


def test_a_resumed_body_may_only_bring_the_rest(hub: FakeHub, tmp_path: Path, writes: list[int]) -> None:
    """From a 400,000-byte `.part` the room is the listed size minus the offset: 206 chunked past it is cut."""
    data = os.urandom(LISTED)
    hub.add("/f.bin", data, default=Fault(chunked_bytes=ENDLESS))
    part = part_path(tmp_path / "f.bin", hub.url("/f.bin"))
    part.write_bytes(data[:400_000])
    with pytest.raises(VerificationFailed) as caught:
        download_file(hub.url("/f.bin"), tmp_path / "f.bin", expected_size=LISTED, **FAST)
    assert hub.requests[0].headers["range"] == "bytes=400000-"
    assert sum(writes) <= LISTED - 400_000 and LISTED < received(caught.value) <= LISTED + CHUNK
    assert leftovers(tmp_path) == []  # more than listed: the file cannot be right, none of it stays


def test_the_queue_fails_an_overlong_hub_file_and_keeps_nothing(
    hub: FakeHub, store: Store, tmp_path: Path, writes: list[int]
) -> None:
    hub.add_repo("org/big", {"m.gguf": os.urandom(LISTED)})
    hub.files[hub.resolve_path("org/big", "m.gguf", DEFAULT_COMMIT)].default = Fault(chunked_bytes=ENDLESS)
    queue = DownloadQueue(store.downloads, QueueSettings(hf_endpoint=hub.endpoint))
    try:
        queue.add_repo("org/big", tmp_path / "models")
        (task,) = run_queue(queue)
    finally:
        queue.close()
    assert task.status is TaskStatus.FAILED and "size of m.gguf mismatch: expected 1000000 bytes" in (task.error or "")
    assert sum(writes) <= LISTED and leftovers(tmp_path / "models") == []


# -- item 7: files kept in git are checked against their blob id ------------------------------------------------


def test_a_file_kept_in_git_with_other_content_of_the_listed_size_fails_through_the_queue(
    hub: FakeHub, store: Store, tmp_path: Path
) -> None:
    config, tokenizer = b'{"model_type": "llama", "hidden_size": 64}\n', b'{"version": "1.0"}'
    hub.add_repo("org/m", {"config.json": config, "tokenizer.json": tokenizer}, lfs=[])
    for revision in ("main", DEFAULT_COMMIT):  # same size, one byte different
        hub.files[hub.resolve_path("org/m", "config.json", revision)].default = Fault(corrupt_at=3)
    queue = DownloadQueue(store.downloads, QueueSettings(hf_endpoint=hub.endpoint))
    try:
        queue.add_repo("org/m", tmp_path / "models")
        by_file = {t.file: t for t in run_queue(queue)}
    finally:
        queue.close()
    bad, good = by_file["config.json"], by_file["tokenizer.json"]
    assert bad.status is TaskStatus.FAILED, bad
    assert re.search(r"git blob id of config\.json mismatch: expected [0-9a-f]{40}, got [0-9a-f]{40}", bad.error or "")
    assert good.status is TaskStatus.COMPLETED, good.error
    assert leftovers(tmp_path / "models") == ["tokenizer.json"]  # the bad file and its .part are gone


def test_a_blob_id_mismatch_deletes_the_file_and_a_malformed_one_is_refused(hub: FakeHub, tmp_path: Path) -> None:
    hub.add("/c.json", b"{}")
    with pytest.raises(VerificationFailed, match=r"git blob id of c\.json mismatch"):
        download_file(hub.url("/c.json"), tmp_path / "c.json", expected_blob_id="0" * 40, **FAST)
    with pytest.raises(DownloadError, match="git blob id is not 40"):
        download_file(hub.url("/c.json"), tmp_path / "c.json", expected_blob_id="xyz", **FAST)
    assert leftovers(tmp_path) == []
    good = "9e26dfeeb6e641a33dae4961196235bdb965b21b"  # `git hash-object` of "{}"
    assert download_file(hub.url("/c.json"), tmp_path / "c.json", expected_blob_id=good.upper(), **FAST).size == 2


# -- item 8: names quoted, no empty leftovers -----------------------------------------------------------------

ODD_NAMES = ("a#b.bin", "with space.json", "100%.txt", "what?.md", "sub/ünï cödé.txt", "sub/x;y=z&w.bin")


def test_odd_file_names_are_quoted_and_fetched_through_the_queue(hub: FakeHub, store: Store, tmp_path: Path) -> None:
    files = {name: os.urandom(1000 + i) for i, name in enumerate(ODD_NAMES)}
    hub.add_repo("org/odd", files, lfs=["a#b.bin", "100%.txt"])  # LFS ones and files kept in git
    queue = DownloadQueue(store.downloads, QueueSettings(hf_endpoint=hub.endpoint))
    try:
        queue.add_repo("org/odd", tmp_path / "models")
        tasks = run_queue(queue)
    finally:
        queue.close()
    assert [(t.file, t.error) for t in tasks if t.status is not TaskStatus.COMPLETED] == []
    for name, data in files.items():
        assert (tmp_path / "models" / name).read_bytes() == data
    assert leftovers(tmp_path / "models") == sorted(ODD_NAMES)
    asked = {r.path for r in hub.requests if r.method == "GET" and "/resolve/" in r.path}
    assert "/org/odd/resolve/" + DEFAULT_COMMIT + "/a%23b.bin" in asked and not any(p.endswith("/a") for p in asked)


def test_hf_url_quotes_names_and_revisions_but_keeps_subfolders() -> None:
    url = hf_url("https://hf.example/", "org/m", "sub dir/a#b%c?.bin", "refs/pr/1")
    assert url == "https://hf.example/org/m/resolve/refs%2Fpr%2F1/sub%20dir/a%23b%25c%3F.bin"


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault(status=404), DownloadNotFound),
        (Fault(status=401), DownloadAuthError),
        (Fault(status=403), DownloadAuthError),
        (Fault(status=500), TransferFailed),
    ],
)
def test_a_refused_request_leaves_no_part(hub: FakeHub, tmp_path: Path, fault: Fault, error: type[Exception]) -> None:
    hub.add("/f.bin", b"x" * 1000, default=fault)
    with pytest.raises(error):
        download_file(hub.url("/f.bin"), tmp_path / "f.bin", expected_size=1000, max_retries=1, **FAST)
    assert leftovers(tmp_path) == []


def test_only_a_part_with_bytes_to_resume_stays(hub: FakeHub, tmp_path: Path) -> None:
    """Bytes arrived, then the server failed for good: they stay for a resume; the resume finishes the file."""
    data = os.urandom(200_000)
    hub.add("/f.bin", data, Fault(drop_after=50_000), default=Fault(status=503))
    with pytest.raises(TransferFailed):
        download_file(hub.url("/f.bin"), tmp_path / "f.bin", expected_size=len(data), max_retries=1, **FAST)
    part = part_path(tmp_path / "f.bin", hub.url("/f.bin"))
    assert leftovers(tmp_path) == [part.name] and part.stat().st_size == 50_000
    hub.files["/f.bin"].default = Fault()
    result = download_file(hub.url("/f.bin"), tmp_path / "f.bin", expected_size=len(data), **FAST)
    assert result.resumed_from == 50_000 and leftovers(tmp_path) == ["f.bin"]


def test_the_queue_leaves_no_part_for_a_missing_or_forbidden_file(hub: FakeHub, store: Store, tmp_path: Path) -> None:
    hub.add_repo("org/m", {"gone.gguf": b"g" * 5000, "secret.gguf": b"s" * 5000})
    hub.files[hub.resolve_path("org/m", "gone.gguf", DEFAULT_COMMIT)].default = Fault(status=404)
    hub.files[hub.resolve_path("org/m", "secret.gguf", DEFAULT_COMMIT)].default = Fault(status=401)
    queue = DownloadQueue(store.downloads, QueueSettings(hf_endpoint=hub.endpoint))
    try:
        queue.add_repo("org/m", tmp_path / "models")
        tasks = run_queue(queue)
    finally:
        queue.close()
    assert [t.status for t in tasks] == [TaskStatus.FAILED, TaskStatus.FAILED]
    assert "HTTP 404" in (tasks[0].error or "") and "HTTP 401" in (tasks[1].error or "")
    assert not (tmp_path / "models").exists() or leftovers(tmp_path / "models") == []


# -- the user's whole path: `llm-tui models pull` against the fake Hub ----------------------------------------


def test_models_pull_refuses_a_changed_config_and_fetches_odd_names(tmp_path: Path) -> None:
    config = b'{"architectures": ["LlamaForCausalLM"]}\n'
    with FakeHub() as hub:
        hub.add_repo("org/cfg", {"config.json": config}, lfs=[])
        hub.files[hub.resolve_path("org/cfg", "config.json", DEFAULT_COMMIT)].default = Fault(corrupt_at=0)
        hub.add_repo("org/odd", {"a#b.bin": b"ab" * 500, "sub/ü x.json": b"{}"}, lfs=["a#b.bin"])
        cmd, env = pull_cmd(tmp_path, "org/cfg")
        env["HF_ENDPOINT"] = hub.endpoint
        bad = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
        cmd, env = pull_cmd(tmp_path, "org/odd")
        env["HF_ENDPOINT"] = hub.endpoint
        odd = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and bad.stdout == "", bad.stderr
    assert "git blob id of config.json mismatch" in bad.stderr and "deleted" in bad.stderr
    assert not (tmp_path / "models" / "cfg").exists() or leftovers(tmp_path / "models" / "cfg") == []
    assert odd.returncode == 0, odd.stderr
    folder = tmp_path / "models" / "odd"
    assert (folder / "a#b.bin").read_bytes() == b"ab" * 500 and (folder / "sub/ü x.json").read_bytes() == b"{}"
    assert "verified (git blob " in odd.stderr and leftovers(folder) == ["a#b.bin", "sub/ü x.json"]


def test_progress_of_a_cut_body_never_reports_more_than_listed(hub: FakeHub, tmp_path: Path) -> None:
    """The progress a screen shows stays within the listed size while the body is cut off."""
    hub.add("/f.bin", os.urandom(LISTED), default=Fault(chunked_bytes=ENDLESS))
    seen: list[int] = []
    lock = threading.Lock()

    def progress(p: Any) -> None:
        with lock:
            seen.append(p.bytes_done)

    with pytest.raises(VerificationFailed):
        download_file(hub.url("/f.bin"), tmp_path / "f.bin", expected_size=LISTED, progress=progress, **FAST)
    assert seen and max(seen) <= LISTED
