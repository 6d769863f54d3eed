"""The queue runner with a scripted transfer: concurrency limit, pause/resume, cancel, failure, restart."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engines.downloads.queue import DownloadQueue, QueueSettings, hf_url
from engines.downloads.tasks import DownloadTasks, TaskStatus
from engines.errors import LlmTuiError
from engines.store.sessions import Store


@dataclass
class Progress:
    bytes_done: int
    total: int | None
    speed_bps: float
    eta_s: float | None = None


class Cancelled(LlmTuiError):
    pass


class ScriptedTransfer:
    """Writes the file in steps, each released by a test; records the calls; can fail on demand."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Path, Mapping[str, str]]] = []
        self.release = threading.Event()
        self.fail: dict[str, str] = {}
        self.active = 0
        self.peak = 0
        self._lock = threading.Lock()

    def __call__(
        self,
        url: str,
        target: Path,
        *,
        expected_sha256: str | None = None,
        expected_size: int | None = None,
        headers: Mapping[str, str] | None = None,
        progress: Callable[[Any], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> object:
        with self._lock:
            self.calls.append((url, target, dict(headers or {})))
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            if progress:
                progress(Progress(10, 100, 5.0))
            while not self.release.is_set():
                if cancel is not None and cancel.wait(0.01):
                    raise Cancelled("cancelled")
            if url in self.fail:
                raise LlmTuiError(self.fail[url])
            target.write_bytes(b"x" * 100)
            return type("Result", (), {"size": 100})()
        finally:
            with self._lock:
                self.active -= 1


@dataclass(frozen=True)
class HubInfo:
    size: int | None
    sha256: str | None
    commit: str | None


def describe(repo: str, file: str, **_: object) -> HubInfo:
    """The Hub's answer for every file: 100 bytes at commit abc123 (no LFS hash)."""
    return HubInfo(100, None, "abc123")


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "db.sqlite") as s:
        yield s


def statuses(tasks: DownloadTasks) -> list[str]:
    return [t.status.value for t in tasks.all()]


def test_at_most_n_run_at_once_and_the_rest_follow(store: Store, tmp_path: Path) -> None:
    transfer = ScriptedTransfer()
    changes: list[int] = []
    queue = DownloadQueue(
        store.downloads,
        QueueSettings(concurrency=2, hf_token="hf_secret"),
        transfer=transfer,
        describe_hub=describe,
        on_change=changes.append,
    )
    for n in range(3):
        queue.add("hf", tmp_path / f"m{n}.gguf", repo="org/m", file=f"m{n}.gguf")
    wait_for(lambda: len(transfer.calls) == 2, "two transfers")
    assert statuses(queue.tasks) == ["downloading", "downloading", "pending"]
    # The two run at once: either may reach its transfer first (a full run under load saw m1 first).
    assert sorted(call[1] for call in transfer.calls) == [tmp_path / "m0.gguf", tmp_path / "m1.gguf"]
    url, _, headers = next(call for call in transfer.calls if call[1] == tmp_path / "m0.gguf")
    # Asked the Hub first, then fetched at the commit it named (the bytes cannot change under a resume).
    assert url == hf_url("https://huggingface.co", "org/m", "m0.gguf", "abc123")
    assert url == "https://huggingface.co/org/m/resolve/abc123/m0.gguf"
    assert queue.tasks.get(1).total_bytes == 100 and queue.tasks.get(1).revision == "abc123"
    assert headers == {"Authorization": "Bearer hf_secret"}
    transfer.release.set()
    wait_for(lambda: statuses(queue.tasks) == ["completed"] * 3, "all three complete")
    assert transfer.peak == 2 and (tmp_path / "m2.gguf").stat().st_size == 100
    assert queue.tasks.get(1).done_bytes == 100 and changes
    queue.close()


def test_new_settings_raise_the_limit_at_once_and_reach_the_next_transfer(store: Store, tmp_path: Path) -> None:
    transfer = ScriptedTransfer()
    queue = DownloadQueue(store.downloads, QueueSettings(concurrency=1), transfer=transfer, describe_hub=describe)
    for n in range(3):
        queue.add("hf", tmp_path / f"m{n}.gguf", repo="org/m", file=f"m{n}.gguf")
    wait_for(lambda: len(transfer.calls) == 1, "one transfer")
    assert transfer.calls[0][2] == {}  # no token yet
    with pytest.raises(LlmTuiError, match="at least 1"):
        queue.apply(QueueSettings(concurrency=0))
    queue.apply(QueueSettings(concurrency=3, hf_token="hf_new"))
    wait_for(lambda: len(transfer.calls) == 3, "the two waiting start without another nudge")
    assert [c[2] for c in transfer.calls[1:]] == [{"Authorization": "Bearer hf_new"}] * 2
    transfer.release.set()
    wait_for(lambda: statuses(queue.tasks) == ["completed"] * 3, "all three complete")
    queue.close()


def test_pause_resume_cancel_and_a_failure_with_its_reason(store: Store, tmp_path: Path) -> None:
    transfer = ScriptedTransfer()
    queue = DownloadQueue(store.downloads, QueueSettings(concurrency=1), transfer=transfer)
    a = queue.add("url", tmp_path / "a.gguf", url="http://127.0.0.1:9/a")
    b = queue.add("url", tmp_path / "b.gguf", url="http://127.0.0.1:9/b")
    wait_for(lambda: len(transfer.calls) == 1, "a starts")
    queue.pause(a.id)
    wait_for(lambda: queue.tasks.get(b.id).status is TaskStatus.DOWNLOADING, "b takes the free slot")
    assert queue.tasks.get(a.id).status is TaskStatus.PAUSED  # not failed, though its transfer raised
    queue.cancel(b.id)
    wait_for(lambda: queue.running() == [], "b stopped")
    assert queue.tasks.get(b.id).status is TaskStatus.CANCELLED
    transfer.fail["http://127.0.0.1:9/a"] = "sha256 mismatch: expected ab…, got cd…"
    transfer.release.set()
    queue.resume(a.id)
    wait_for(lambda: queue.tasks.get(a.id).status is TaskStatus.FAILED, "a fails")
    assert "sha256 mismatch" in (queue.tasks.get(a.id).error or "")
    del transfer.fail["http://127.0.0.1:9/a"]
    queue.retry(a.id)
    wait_for(lambda: queue.tasks.get(a.id).status is TaskStatus.COMPLETED, "a completes on retry")
    assert queue.clear_finished() == 2 and queue.tasks.all() == []
    queue.close()


def test_cancel_can_delete_the_partial_file(store: Store, tmp_path: Path) -> None:
    transfer = ScriptedTransfer()
    queue = DownloadQueue(store.downloads, transfer=transfer)
    task = queue.add("url", tmp_path / "c.gguf", url="http://127.0.0.1:9/c")
    part = tmp_path / "c.gguf.0123abcd.part"
    part.write_bytes(b"half")
    queue.cancel(task.id, delete_part=True)
    assert not part.exists()
    queue.close()


@pytest.mark.parametrize("resume", [False, True])
def test_tasks_interrupted_by_a_restart_come_back_and_complete(tmp_path: Path, resume: bool) -> None:
    path = tmp_path / "db.sqlite"
    first = ScriptedTransfer()
    with Store(path) as store:
        queue = DownloadQueue(store.downloads, transfer=first)
        task = queue.add("url", tmp_path / "r.gguf", url="http://127.0.0.1:9/r")
        wait_for(lambda: len(first.calls) == 1, "started")
        queue.close()  # quit mid-transfer: the row stays 'downloading'
    second = ScriptedTransfer()
    second.release.set()
    with Store(path) as store:
        queue = DownloadQueue(store.downloads, QueueSettings(resume_on_start=resume), transfer=second)
        assert queue.recovered == [task.id]
        if resume:
            queue.pump()
        else:
            assert queue.tasks.get(task.id).status is TaskStatus.PAUSED
            queue.resume(task.id)
        wait_for(lambda: queue.tasks.get(task.id).status is TaskStatus.COMPLETED, "completed after restart")
        queue.close()


def test_the_real_transfer_through_the_queue_from_a_fake_hub(store: Store, tmp_path: Path) -> None:
    """hf tasks become resolve/ URLs with the token; a dropped connection resumes; a bad hash fails the task."""
    import hashlib
    import os

    from tests.engines.fake_hub import FakeHub, Fault

    data = os.urandom(300_000)
    good = hashlib.sha256(data).hexdigest()
    with FakeHub() as hub:
        commit = "c0ffee" * 6 + "c0ff"  # what the fake hub's metadata answer names
        hub.add("/org/m-GGUF/resolve/main/m.gguf", data)
        hub.add(f"/org/m-GGUF/resolve/{commit}/m.gguf", data, Fault(drop_after=100_000))
        hub.add("/org/m-GGUF/resolve/main/bad.gguf", data)
        hub.add(f"/org/m-GGUF/resolve/{commit}/bad.gguf", data)
        hub.add("/org/m-GGUF/resolve/main/nolfs.gguf", data)
        hub.add(f"/org/m-GGUF/resolve/{commit}/nolfs.gguf", data)
        settings = QueueSettings(hf_endpoint=hub.url(""), hf_token="hf_secret")
        queue = DownloadQueue(store.downloads, settings)
        ok = queue.add("hf", tmp_path / "m.gguf", repo="org/m-GGUF", file="m.gguf", total_bytes=len(data), sha256=good)
        bad = queue.add("hf", tmp_path / "bad.gguf", repo="org/m-GGUF", file="bad.gguf", sha256="0" * 64)
        # Added with no size or hash: the Hub's metadata (LFS sha256, size, commit) fills them in first.
        described = queue.add("hf", tmp_path / "nolfs.gguf", repo="org/m-GGUF", file="nolfs.gguf")
        wait_for(lambda: not queue.running() and queue.tasks.next_pending() is None, "all finished")
        filled = queue.tasks.get(described.id)
        assert filled.status is TaskStatus.COMPLETED
        assert (filled.sha256, filled.total_bytes, filled.revision) == (good, len(data), commit)
        assert queue.tasks.get(ok.id).status is TaskStatus.COMPLETED
        assert (tmp_path / "m.gguf").read_bytes() == data
        failed = queue.tasks.get(bad.id)
        assert failed.status is TaskStatus.FAILED and "sha256" in (failed.error or "")
        assert not (tmp_path / "bad.gguf").exists()
        assert hub.requests and all(r.headers.get("authorization") == "Bearer hf_secret" for r in hub.requests)
        queue.close()


def test_a_size_queued_without_a_sha256_is_an_estimate_the_hubs_size_replaces(store: Store, tmp_path: Path) -> None:
    """A curated catalog's rounded size must not become the expectation: the Hub's LFS size and sha256 do."""
    import hashlib
    import os

    from tests.engines.fake_hub import DEFAULT_COMMIT, FakeHub

    data = os.urandom(250_000)
    with FakeHub() as hub:
        hub.add_repo("org/m-GGUF", {"m.gguf": data})
        queue = DownloadQueue(store.downloads, QueueSettings(hf_endpoint=hub.endpoint))
        estimate = queue.add("hf", tmp_path / "m.gguf", repo="org/m-GGUF", file="m.gguf", total_bytes=164_000)
        wait_for(lambda: not queue.running() and queue.tasks.next_pending() is None, "finished")
        done = queue.tasks.get(estimate.id)
        assert done.status is TaskStatus.COMPLETED, done.error
        assert (done.total_bytes, done.sha256) == (len(data), hashlib.sha256(data).hexdigest())
        assert done.revision == DEFAULT_COMMIT and (tmp_path / "m.gguf").read_bytes() == data
        info = queue.describe("org/m-GGUF", "m.gguf")
        assert (info.size, info.sha256, info.commit) == (len(data), done.sha256, DEFAULT_COMMIT)
        queue.close()


def test_settings_come_from_the_config_and_one_bandwidth_cap_covers_every_transfer(tmp_path: Path) -> None:
    from engines.config.load import load_config
    from engines.downloads.pacing import TokenBucket

    (tmp_path / "config.toml").write_text(
        'download_concurrency = 3\ndownload_bandwidth_cap = "2MB/s"\ndownloads_resume_on_start = true\n'
    )
    settings = QueueSettings.from_config(load_config(env={}, cwd=tmp_path))
    assert (settings.concurrency, settings.bandwidth_cap, settings.resume_on_start) == (3, 2_000_000, True)
    buckets: list[object] = []

    def transfer(url: str, target: Path, **kwargs: Any) -> object:
        buckets.append(kwargs.get("bandwidth_cap"))
        target.write_bytes(b"x")
        return None

    with Store(tmp_path / "db.sqlite") as store:
        queue = DownloadQueue(store.downloads, settings, transfer=transfer)
        for name in "abc":
            queue.add("url", tmp_path / f"{name}.gguf", url=f"http://127.0.0.1:9/{name}")
        wait_for(lambda: len(buckets) == 3 and not queue.running(), "all three ran")
        queue.close()
    first = buckets[0]
    assert isinstance(first, TokenBucket) and first.rate == 2_000_000
    assert all(b is first for b in buckets)  # shared: the cap is over all of them, not per file


def test_ollama_models_are_pulled_through_the_daemon_paused_resumed_and_failed_with_its_words(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The queue drives a (fake) Ollama daemon: progress lands in the table, pause hangs up, resume pulls again
    from where the daemon stopped, and an error mid-pull fails the task with the daemon's text."""
    from engines.downloads.queue import ollama_target
    from tests.engines.fake_ollama import FakeOllama, PullFault

    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    with FakeOllama(step=1000) as fake:
        model = fake.add("qwen2.5:0.5b", [3000, 9000], PullFault(hold_after=5000))
        fake.add("broken:1b", [4000], PullFault(error_after=2000, error="max retries exceeded: unexpected EOF"))
        queue = DownloadQueue(store.downloads, QueueSettings(ollama_host=fake.host))
        task = queue.add("ollama", ollama_target("qwen2.5:0.5b"), repo="qwen2.5:0.5b")
        assert fake.held.wait(5)
        queue.pause(task.id)
        assert fake.disconnected.wait(5)
        wait_for(lambda: not queue.running(), "the pull thread ends")
        assert queue.tasks.get(task.id).status is TaskStatus.PAUSED and sum(model.have) == 5000
        queue.resume(task.id)
        wait_for(lambda: queue.tasks.get(task.id).status is TaskStatus.COMPLETED, "pulled")
        done = queue.tasks.get(task.id)
        assert (done.done_bytes, done.total_bytes) == (12_000, 12_000) and model.pulls == 2 and model.pulled
        bad = queue.add("ollama", ollama_target("broken:1b"), repo="broken:1b")
        wait_for(lambda: queue.tasks.get(bad.id).status is TaskStatus.FAILED, "failed")
        assert queue.tasks.get(bad.id).error == "ollama: max retries exceeded: unexpected EOF"
        with pytest.raises(LlmTuiError, match="already in the download queue"):
            queue.resume(bad.id)
            queue.add("ollama", ollama_target("broken:1b"), repo="broken:1b")
        queue.close()


def test_a_repo_queued_into_the_hugging_face_cache_is_found_by_huggingface_hub(store: Store, tmp_path: Path) -> None:
    import os

    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    from tests.engines.fake_hub import DEFAULT_COMMIT, FakeHub

    weights, config = os.urandom(150_000), b'{"model_type": "bert"}'
    cache = tmp_path / "hub"
    with FakeHub() as hub:
        hub.add_repo("org/embed", {"model.safetensors": weights, "config.json": config}, lfs=["model.safetensors"])
        queue = DownloadQueue(store.downloads, QueueSettings(hf_endpoint=hub.endpoint))
        added = queue.add_repo("org/embed", None, cache_dir=cache)
        assert {t.cache_ref for t in added} == {"main"} and all(t.target_path.parent.name == "blobs" for t in added)
        wait_for(lambda: {t.status for t in queue.tasks.all()} == {TaskStatus.COMPLETED}, "both fetched")
        for name, data in (("model.safetensors", weights), ("config.json", config)):
            found = try_to_load_from_cache("org/embed", name, cache_dir=cache)
            assert isinstance(found, str) and f"snapshots/{DEFAULT_COMMIT}/{name}" in found
            assert Path(found).read_bytes() == data
        assert Path(hf_hub_download("org/embed", "config.json", cache_dir=cache, local_files_only=True)).exists()
        gets = sum(1 for r in hub.requests if r.method == "GET" and "/resolve/" in r.path)
        queue.tasks.clear_finished()
        assert queue.add_repo("org/embed", None, cache_dir=cache, patterns=["*.json"])  # queued again...
        wait_for(lambda: {t.status for t in queue.tasks.all()} == {TaskStatus.COMPLETED}, "linked")
        assert sum(1 for r in hub.requests if r.method == "GET" and "/resolve/" in r.path) == gets  # ...not fetched
        with pytest.raises(LlmTuiError, match=r"org/embed has no files matching \*\.bin at commit c0ffeec0ffee"):
            queue.add_repo("org/embed", tmp_path / "models", patterns=["*.bin"])
        queue.close()
