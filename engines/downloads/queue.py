"""The download queue runner: up to N transfers at once, pause / resume / cancel / retry, state in SQLite.

Tasks live in `DownloadTasks` (so a restart finds them); this runner starts
pending ones up to the concurrency limit, each on its own thread, writes their
progress about once a second and tells a listener whenever anything changed.
Pausing or cancelling sets the transfer's cancel event: the `.part` file stays
for resume (cancel may delete it).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from engines.downloads.pacing import TokenBucket
from engines.downloads.tasks import DownloadTask, DownloadTasks, TaskStatus
from engines.errors import BadRequest, LlmTuiError

if TYPE_CHECKING:
    from engines.config.load import Config
    from engines.downloads.hf_repo import RepoListing

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 1.0
"""How often a running transfer's progress is written to the database."""
HF_ENDPOINT = "https://huggingface.co"


class Transfer(Protocol):
    """engines.downloads.transfer.download_file, or a fake in tests."""

    def __call__(
        self,
        url: str,
        target: Path,
        *,
        expected_sha256: str | None = ...,
        expected_size: int | None = ...,
        expected_blob_id: str | None = ...,
        headers: Mapping[str, str] | None = ...,
        progress: Callable[[Any], None] | None = ...,
        cancel: threading.Event | None = ...,
        bandwidth_cap: TokenBucket | None = ...,
    ) -> object: ...


class HubInfo(Protocol):
    """What the Hub says about a file (engines.downloads.hf_source.HubFile)."""

    @property
    def size(self) -> int | None: ...
    @property
    def sha256(self) -> str | None: ...
    @property
    def commit(self) -> str | None: ...


DescribeHub = Callable[..., HubInfo]
"""engines.downloads.hf_source.hub_file, or a fake in tests."""


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """How the queue runs."""

    concurrency: int = 2
    hf_endpoint: str = HF_ENDPOINT
    hf_token: str | None = None
    resume_on_start: bool = False
    bandwidth_cap: int | None = None
    """Bytes per second over all running transfers together; None = no cap."""
    ollama_host: str = "http://127.0.0.1:11434"

    @classmethod
    def from_config(cls, config: Config) -> QueueSettings:
        return cls(
            concurrency=config.download_concurrency,
            hf_endpoint=config.hf_endpoint or HF_ENDPOINT,
            hf_token=config.hf_token.reveal() if config.hf_token else None,
            resume_on_start=config.downloads_resume_on_start,
            bandwidth_cap=config.download_bandwidth_cap,
            ollama_host=config.ollama_host,
        )


def ollama_target(name: str) -> Path:
    """What an Ollama task's target_path holds: the daemon keeps the model, so a name, not a file
    (it still makes a second task for the same model a duplicate)."""
    return Path(f"ollama:{name}")


def hf_url(endpoint: str, repo: str, file: str, revision: str | None) -> str:
    """The `resolve/` URL huggingface_hub downloads a file from, quoted as its hf_hub_url quotes it ("a#b.bin" must
    not fetch "a"; the '/' of subfolders stay)."""
    from urllib.parse import quote

    return f"{endpoint.rstrip('/')}/{repo}/resolve/{quote(revision or 'main', safe='')}/{quote(file)}"


class DownloadQueue:
    """Runs the tasks of a DownloadTasks table; every method is safe from any thread."""

    def __init__(
        self,
        tasks: DownloadTasks,
        settings: QueueSettings | None = None,
        *,
        transfer: Transfer | None = None,
        describe_hub: DescribeHub | None = None,
        pull_ollama: Callable[..., object] | None = None,
        list_repo: Callable[..., RepoListing] | None = None,
        on_change: Callable[[int], None] | None = None,
        on_finish: Callable[[DownloadTask], None] | None = None,
    ) -> None:
        self.tasks = tasks
        self.settings = settings or QueueSettings()
        if self.settings.concurrency < 1:
            raise BadRequest(f"download concurrency must be at least 1, got {self.settings.concurrency}")
        self._transfer = transfer
        self._describe_hub = describe_hub
        self._pull = pull_ollama
        self._list_repo = list_repo
        self.on_change = on_change
        self.on_finish = on_finish
        """Called (from the transfer's thread) when a task completes or fails."""
        cap = self.settings.bandwidth_cap
        self._extra: dict[str, Any] = {"bandwidth_cap": TokenBucket(cap)} if cap else {}
        """Passed to every transfer: one bucket for all, so the cap holds however many run at once."""
        self._lock = threading.Lock()
        self._running: dict[int, tuple[threading.Thread, threading.Event]] = {}
        self._closed = False
        self.recovered = tasks.recover(resume=self.settings.resume_on_start)
        """Tasks a previous run left downloading (now paused, or pending when resuming by themselves)."""

    def apply(self, settings: QueueSettings) -> None:
        """Use new settings (a saved config): the concurrency at once, the token, endpoints and bandwidth cap for
        the transfers that start from now on (running ones keep theirs)."""
        if settings.concurrency < 1:
            raise BadRequest(f"download concurrency must be at least 1, got {settings.concurrency}")
        with self._lock:
            self.settings = settings
            cap = settings.bandwidth_cap
            self._extra = {"bandwidth_cap": TokenBucket(cap)} if cap else {}
        self.pump()

    # -- commands ---------------------------------------------------------------------------------------------

    def add(self, source: str, target: Path, **fields: Any) -> DownloadTask:
        """Queue a file and start it when a slot is free."""
        task = self.tasks.add(source, target, **fields)
        self._changed(task.id)
        self.pump()
        return task

    def add_repo(
        self,
        repo: str,
        folder: Path | None,
        *,
        revision: str | None = None,
        patterns: Sequence[str] = (),
        cache_dir: Path | None = None,
    ) -> list[DownloadTask]:
        """Queue every file of a Hub repo (or those matching the glob `patterns`), all pinned to the one commit the
        listing names, each with its size and LFS sha256: under `folder`, or with `folder` None into the Hugging
        Face cache (`cache_dir`, default huggingface_hub's). Blocks on the Hub: call it from a worker. Files
        already in the queue are left as they are."""
        from engines.downloads.hf_cache import hub_cache_dir, placement
        from engines.downloads.hf_repo import pick_files
        from engines.downloads.names import safe_join

        list_repo = self._list_repo or _default_list_repo()
        listing = list_repo(repo, revision=revision, endpoint=self.settings.hf_endpoint, token=self.settings.hf_token)
        files = pick_files(listing, patterns)
        if not files:
            wanted = f" matching {', '.join(patterns)}" if patterns else ""
            raise BadRequest(f"{repo} has no files{wanted} at commit {listing.commit[:12]}")
        ref = revision or "main"
        added = []
        for file in files:
            pinned = {"repo": repo, "file": file.path, "revision": listing.commit}
            if folder is not None:
                target, cache_ref = safe_join(folder, file.path), None
            elif file.etag is None:
                raise BadRequest(f"the Hub gave no sha256 or blob id for {repo}/{file.path}: it cannot be cached")
            else:
                where = placement(
                    cache_dir or hub_cache_dir(),
                    repo,
                    commit=listing.commit,
                    path=file.path,
                    etag=file.etag,
                    revision=ref,
                )
                target, cache_ref = where.blob, ref
            try:
                task = self.tasks.add(
                    "hf", target, total_bytes=file.size, sha256=file.sha256, cache_ref=cache_ref, **pinned
                )
            except BadRequest:  # already queued: that task stays
                continue
            added.append(task)
        self._changed(0)
        self.pump()
        return added

    def pause(self, task_id: int) -> None:
        """Stop a running or pending task, keeping its `.part` for resume."""
        self._stop(task_id, TaskStatus.PAUSED)

    def resume(self, task_id: int) -> None:
        """Queue a paused, failed or cancelled task again (it continues from its `.part`)."""
        self.tasks.set_status(task_id, TaskStatus.PENDING)
        self._changed(task_id)
        self.pump()

    retry = resume

    def cancel(self, task_id: int, *, delete_part: bool = False) -> None:
        """Cancel a task; with delete_part its partial file goes too."""
        self._stop(task_id, TaskStatus.CANCELLED)
        task = self.tasks.get(task_id)
        if delete_part and task.source != "ollama":  # the daemon keeps (and cleans) its own partial blobs
            for part in task.target_path.parent.glob(f"{task.target_path.name}.*.part"):
                with contextlib.suppress(FileNotFoundError):
                    part.unlink()

    def clear_finished(self) -> int:
        count = self.tasks.clear_finished()
        self._changed(0)
        return count

    def pump(self) -> None:
        """Start pending tasks while there are free slots."""
        while True:
            with self._lock:
                if self._closed or len(self._running) >= self.settings.concurrency:
                    return
                task = self.tasks.next_pending()
                if task is None:
                    return
                self.tasks.claim(task.id)
                cancel = threading.Event()
                thread = threading.Thread(target=self._run, args=(task, cancel), name=f"download-{task.id}")
                self._running[task.id] = (thread, cancel)
            self._changed(task.id)
            thread.start()

    def running(self) -> list[int]:
        with self._lock:
            return list(self._running)

    def close(self, timeout: float = 5.0) -> None:
        """Stop every transfer; tasks stay 'downloading' in the database, so the next start recovers them."""
        with self._lock:
            self._closed = True
            running = list(self._running.values())
            ids = list(self._running)
        for _, cancel in running:
            cancel.set()
        for thread, _ in running:
            thread.join(timeout)
        self.tasks.disown(ids)

    # -- internals ----------------------------------------------------------------------------------------

    def _stop(self, task_id: int, status: TaskStatus) -> None:
        with self._lock:
            entry = self._running.get(task_id)
            self.tasks.set_status(task_id, status)  # before the thread sees the cancel: it must not mark it failed
        if entry is not None:
            entry[1].set()
        self._changed(task_id)

    def describe(self, repo: str, file: str, *, revision: str | None = None) -> HubInfo:
        """What the Hub says `repo`/`file` is: its size, LFS sha256 and commit. Blocks on the Hub: call it from a
        worker. Raises DownloadNotFound / DownloadAuthError / DownloadError."""
        describe = self._describe_hub or _default_describe()
        settings = self.settings
        return describe(repo, file, revision=revision, endpoint=settings.hf_endpoint, token=settings.hf_token)

    def _describe(self, task: DownloadTask) -> tuple[DownloadTask, str | None]:
        """For a Hub file missing its size or hash, ask the Hub first and pin the commit (resumes then
        fetch the same bytes even if the branch moves). Also returns the git blob id of a file not in LFS (it has
        no sha256 to check, so it is asked about every time)."""
        if task.source != "hf" or not (task.repo and task.file) or (task.sha256 and task.total_bytes and task.revision):
            return task, None
        info = self.describe(task.repo, task.file, revision=task.revision)
        # A size queued without a sha256 is someone's estimate (a curated catalog's rounded figure): the Hub's
        # size is the file's. A sha256 queued with its size pins both: the Hub must serve exactly that.
        pinned = task.sha256 is not None
        self.tasks.set_expected(
            task.id, total_bytes=info.size, sha256=info.sha256, revision=info.commit, replace_size=not pinned
        )
        task = self.tasks.get(task.id)
        return task, None if task.sha256 else getattr(info, "blob_id", None)

    def _url_and_headers(self, task: DownloadTask) -> tuple[str, dict[str, str]]:
        if task.source == "hf" and task.repo and task.file:
            headers = {"Authorization": f"Bearer {self.settings.hf_token}"} if self.settings.hf_token else {}
            return hf_url(self.settings.hf_endpoint, task.repo, task.file, task.revision), headers
        if task.source == "url" and task.url:
            return task.url, {}
        raise BadRequest(f"download task {task.id} ({task.source}) has nothing to fetch from")

    def _run(self, task: DownloadTask, cancel: threading.Event) -> None:
        last_write = 0.0

        def progress(p: Any) -> None:
            nonlocal last_write
            now = time.monotonic()
            if now - last_write >= PROGRESS_EVERY_S:
                last_write = now
                self.tasks.record_progress(task.id, p.bytes_done, p.total, p.speed_bps)
                self._changed(task.id)

        error: str | None = None
        try:
            if task.source == "ollama":
                self._pull_ollama(task, progress, cancel)
            else:
                self._fetch_file(task, progress, cancel)
        except LlmTuiError as exc:
            error = str(exc)
        except Exception as exc:  # a bug must fail the task, not kill the queue silently
            log.exception("download task %s", task.id)
            error = f"{type(exc).__name__}: {exc}"
        with self._lock:
            self._running.pop(task.id, None)
            current = self.tasks.get(task.id).status
            # Not paused or cancelled meanwhile, and not stopped by close(): that leaves it for the next start.
            finished = None
            if current is TaskStatus.DOWNLOADING and not self._closed:
                if error is None:
                    finished = self.tasks.set_status(task.id, TaskStatus.COMPLETED)
                else:
                    finished = self.tasks.set_status(task.id, TaskStatus.FAILED, error)
        if not self._closed:
            self._changed(task.id)
            if finished is not None and self.on_finish is not None:
                self._notify(self.on_finish, finished)
            self.pump()

    def _fetch_file(self, task: DownloadTask, progress: Callable[[Any], None], cancel: threading.Event) -> None:
        """A Hub file or a URL, through our resumable, verified transfer."""
        task, blob_id = self._describe(task)
        if task.cache_ref is not None and task.target_path.is_file():  # blobs are named by content: already here
            have = task.target_path.stat().st_size
            self.tasks.record_progress(task.id, have, have, None)
            _link_into_cache(task)
            return
        url, headers = self._url_and_headers(task)
        transfer = self._transfer or _default_transfer()
        result = transfer(
            url,
            task.target_path,
            expected_sha256=task.sha256,
            expected_size=task.total_bytes,
            headers=headers,
            progress=progress,
            cancel=cancel,
            **self._extra,
            **_blob_check(blob_id),
        )
        size = getattr(result, "size", task.total_bytes)
        self.tasks.record_progress(task.id, size or 0, size, None)
        if task.cache_ref is not None:
            _link_into_cache(task)

    def _pull_ollama(self, task: DownloadTask, progress: Callable[[Any], None], cancel: threading.Event) -> None:
        """Ask the Ollama daemon to pull the model (it keeps partial blobs: a resume is pulling again)."""
        pull = self._pull or _default_pull()
        result = pull(task.repo or "", host=self.settings.ollama_host, progress=progress, cancel=cancel)
        total = getattr(result, "total_bytes", None)
        self.tasks.record_progress(task.id, total or 0, total, None)

    def _changed(self, task_id: int) -> None:
        if self.on_change is not None:
            self._notify(self.on_change, task_id)

    @staticmethod
    def _notify(listener: Callable[[Any], None], value: object) -> None:
        try:
            listener(value)
        except Exception:  # a listener's bug must not stop downloads
            log.exception("download listener failed")


def _blob_check(blob_id: str | None) -> dict[str, Any]:
    """The transfer's git blob id argument, given only when there is one (so fakes in tests need not know it)."""
    return {"expected_blob_id": blob_id} if blob_id else {}


def _link_into_cache(task: DownloadTask) -> None:
    """A blob fetched into the Hugging Face cache: its snapshot pointer and ref, so huggingface_hub finds it."""
    from engines.downloads.hf_cache import link_into_snapshot, placement

    blob, commit = task.target_path, task.revision or ""
    cache_dir = blob.parent.parent.parent  # <cache>/models--org--name/blobs/<etag>
    where = placement(
        cache_dir, task.repo or "", commit=commit, path=task.file or "", etag=blob.name, revision=task.cache_ref
    )
    link_into_snapshot(where, commit=commit)


def _default_list_repo() -> Callable[..., RepoListing]:
    from engines.downloads.hf_repo import list_repo

    return list_repo


def _default_pull() -> Callable[..., object]:
    from engines.downloads.ollama_source import pull_model

    return pull_model


def _default_describe() -> DescribeHub:
    from engines.downloads.hf_source import hub_file

    return hub_file


def _default_transfer() -> Transfer:
    from engines.downloads.transfer import download_file

    return download_file
