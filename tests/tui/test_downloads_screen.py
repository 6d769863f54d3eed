"""The downloads screen driven by keys: add, pause, resume, cancel (keeping or deleting the part), clear."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from engines.downloads.tasks import TaskStatus
from engines.errors import LlmTuiError
from tests.tui.conftest import AppFactory
from tests.tui.test_chat_screen import run, until
from tui.app import LlmTuiApp
from tui.screens.downloads import DownloadsScreen, parse_addition
from tui.screens.modals.confirm import ConfirmModal
from tui.screens.modals.text_prompt import TextPromptModal


class HeldTransfer:
    """Reports some progress, then waits until released or cancelled."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.urls: list[str] = []

    def __call__(
        self,
        url: str,
        target: Path,
        *,
        progress: Callable[[Any], None] | None = None,
        cancel: threading.Event | None = None,
        **_: Mapping[str, str] | str | int | None,
    ) -> object:
        self.urls.append(url)
        target.parent.mkdir(parents=True, exist_ok=True)
        while not self.release.wait(0.01):
            if cancel is not None and cancel.is_set():
                raise LlmTuiError("cancelled")
        target.write_bytes(b"done")
        return None


@pytest.fixture
def held() -> Iterator[HeldTransfer]:
    transfer = HeldTransfer()
    yield transfer
    transfer.release.set()


def drive(app: LlmTuiApp, test: Callable[[LlmTuiApp, DownloadsScreen, Pilot[int]], Any]) -> None:
    async def main() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, DownloadsScreen)
            await test(app, screen, pilot)

    run(main())


def status_of(app: LlmTuiApp, task_id: int) -> TaskStatus:
    return app.runtime.downloads.tasks.get(task_id).status


def test_add_pause_resume_cancel_and_clear_by_keys(make_app: AppFactory, held: HeldTransfer) -> None:
    from tests.engines.test_download_queue import describe

    app = make_app(screen="downloads", launch=False, transfer=held, describe_hub=describe)

    async def test(app: LlmTuiApp, screen: DownloadsScreen, pilot: Pilot[int]) -> None:
        assert "Nothing queued" in str(screen.query_one("#downloads-status").render())
        await pilot.press("a")
        assert isinstance(app.screen, TextPromptModal)
        await pilot.press(*"not a download", "enter")
        assert isinstance(app.screen, TextPromptModal)  # refused on the field
        await pilot.press("ctrl+a", "ctrl+k", *"org/tiny-GGUF tiny-q4.gguf", "enter")
        await until(pilot, lambda: held.urls != [], "the transfer starts")
        assert held.urls == ["https://huggingface.co/org/tiny-GGUF/resolve/abc123/tiny-q4.gguf"]  # pinned commit
        (task,) = app.runtime.downloads.tasks.all()
        assert task.target_path == app.runtime.config.models_dir / "tiny-q4.gguf"
        screen.refresh_table()
        assert "1 downloading" in str(screen.query_one("#downloads-status").render())

        await pilot.press("p")
        await until(pilot, lambda: status_of(app, task.id) is TaskStatus.PAUSED, "paused")
        await pilot.press("r")
        await until(pilot, lambda: len(held.urls) == 2, "resumed")
        part = task.target_path.with_name("tiny-q4.gguf.abcdef12.part")
        part.parent.mkdir(parents=True, exist_ok=True)
        part.write_bytes(b"half")
        await pilot.press("c")
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("n")  # keep the partial file
        await until(pilot, lambda: status_of(app, task.id) is TaskStatus.CANCELLED, "cancelled")
        assert part.exists()
        await pilot.press("r")  # a cancelled download can be started again
        await until(pilot, lambda: len(held.urls) == 3, "restarted")
        held.release.set()
        await until(pilot, lambda: status_of(app, task.id) is TaskStatus.COMPLETED, "completed")
        assert task.target_path.read_bytes() == b"done"
        await pilot.press("x")
        await until(pilot, lambda: app.runtime.downloads.tasks.all() == [], "cleared")

    drive(app, test)


def test_cancel_can_delete_the_partial_file(make_app: AppFactory, held: HeldTransfer) -> None:
    app = make_app(screen="downloads", launch=False, transfer=held)

    async def test(app: LlmTuiApp, screen: DownloadsScreen, pilot: Pilot[int]) -> None:
        target = app.runtime.config.models_dir / "x.gguf"
        task = app.runtime.downloads.add("url", target, url="http://127.0.0.1:9/x.gguf")
        part = target.with_name("x.gguf.0badc0de.part")
        part.parent.mkdir(parents=True, exist_ok=True)
        part.write_bytes(b"half")
        screen.refresh_table()
        await pilot.press("c", "y")
        await until(pilot, lambda: status_of(app, task.id) is TaskStatus.CANCELLED, "cancelled")
        assert not part.exists()

    drive(app, test)


def test_a_failed_download_shows_why(make_app: AppFactory) -> None:
    app = make_app(screen="downloads", launch=False)  # the default test transfer fails: no network

    async def test(app: LlmTuiApp, screen: DownloadsScreen, pilot: Pilot[int]) -> None:
        task = app.runtime.downloads.add("url", app.runtime.config.models_dir / "y.gguf", url="http://127.0.0.1:9/y")
        await until(pilot, lambda: status_of(app, task.id) is TaskStatus.FAILED, "failed")
        screen.refresh_table()
        await pilot.pause()
        assert "no network in tests" in str(screen.query_one("#downloads-detail").render())

    drive(app, test)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("org/name file.gguf", ("hf", {"repo": "org/name", "file": "file.gguf"})),
        ("https://example.org/a.gguf", ("url", {"url": "https://example.org/a.gguf"})),
        ("ollama:qwen2.5", ("ollama", {"repo": "qwen2.5:latest"})),
        ("  ollama:library/qwen2.5:0.5b ", ("ollama", {"repo": "library/qwen2.5:0.5b"})),
    ],
)
def test_parse_addition(text: str, expected: tuple[str, dict[str, str]]) -> None:
    assert parse_addition(text) == expected
    with pytest.raises(ValueError, match=r"org/name file\.gguf"):
        parse_addition("just-a-name")


@pytest.mark.parametrize("resume_on_start", [False, True])
def test_a_restart_brings_an_interrupted_download_back_and_it_completes_from_its_part(
    make_app: AppFactory, isolated_dirs: Path, resume_on_start: bool
) -> None:
    """Quit mid-download; the next start finds the task paused (r resumes it) or, when configured, resumes by
    itself; either way the rest comes with a Range request from the `.part`, and the file verifies."""
    import hashlib
    import os

    from engines.downloads.hf_source import hub_file
    from engines.downloads.transfer import download_file
    from tests.engines.fake_hub import FakeHub, Fault

    data = os.urandom(1_000_000)
    with FakeHub() as hub:
        commit = "c0ffee" * 6 + "c0ff"
        hub.add("/org/m-GGUF/resolve/main/m.gguf", data)
        served = hub.add(f"/org/m-GGUF/resolve/{commit}/m.gguf", data, Fault(throttle_bps=400_000))
        served.milestone = 300_000
        settings = f'hf_endpoint = "{hub.url("")}"\n'
        if resume_on_start:
            settings += "downloads_resume_on_start = true\n"
        (isolated_dirs / "config.toml").write_text(settings)

        first = make_app(screen="downloads", launch=False, transfer=download_file, describe_hub=hub_file)

        async def start(app: LlmTuiApp, screen: DownloadsScreen, pilot: Pilot[int]) -> None:
            await pilot.press("a", *"org/m-GGUF m.gguf", "enter")
            await until(pilot, served.reached.is_set, "part of the file arrives")

        drive(first, start)
        first.runtime.close()  # what quitting does: the transfer stops, the row stays 'downloading'
        target = first.runtime.config.models_dir / "m.gguf"
        (part,) = target.parent.glob("m.gguf.*.part")
        kept = part.stat().st_size
        assert 0 < kept < len(data) and not target.exists()

        second = make_app(screen="downloads", launch=False, transfer=download_file, describe_hub=hub_file)

        async def finish(app: LlmTuiApp, screen: DownloadsScreen, pilot: Pilot[int]) -> None:
            tasks = app.runtime.downloads.tasks
            await until(pilot, lambda: app.runtime.downloads.recovered != [], "the queue is reopened at start")
            (task,) = tasks.all()
            if not resume_on_start:
                await until(pilot, lambda: tasks.get(task.id).status is TaskStatus.PAUSED, "paused by the restart")
                assert any("paused" in n.message for n in app._notifications)
                screen.refresh_table()
                await pilot.press("r")
            await until(pilot, lambda: tasks.get(task.id).status is TaskStatus.COMPLETED, "completed", timeout=30)

        drive(second, finish)
    assert hashlib.sha256(target.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
    ranges = [r.headers.get("range") for r in hub.requests if r.method == "GET"]
    assert ranges[0] is None and ranges[-1] is not None and int(ranges[-1][6:-1]) >= kept  # "bytes=N-"


def test_bad_ollama_names_are_refused_on_the_field() -> None:
    with pytest.raises(ValueError, match=r"invalid Ollama model name 'ollama:\.\./x'"):
        parse_addition("ollama:../x")


def test_an_ollama_model_is_pulled_through_the_daemon_from_the_screen(
    make_app: AppFactory, isolated_dirs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.engines.fake_ollama import FakeOllama

    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    with FakeOllama(step=1000) as fake:
        model = fake.add("qwen2.5:0.5b", [2000, 7000])
        (isolated_dirs / "config.toml").write_text(f'ollama_host = "{fake.host}"\n')
        app = make_app(screen="downloads", launch=False)

        async def test(app: LlmTuiApp, screen: DownloadsScreen, pilot: Pilot[int]) -> None:
            await pilot.press("a", *"ollama:qwen2.5:0.5b", "enter")
            await until(pilot, lambda: model.pulled, "the daemon pulled it")
            (task,) = app.runtime.downloads.tasks.all()
            await until(pilot, lambda: status_of(app, task.id) is TaskStatus.COMPLETED, "completed")
            screen.refresh_table()
            await pilot.pause()
            assert f"qwen2.5:0.5b → Ollama at {fake.host}" in str(screen.query_one("#downloads-detail").render())
            assert app.runtime.downloads.tasks.get(task.id).total_bytes == 9000
            assert any(n.message == "downloaded ollama:qwen2.5:0.5b" for n in app._notifications)

        drive(app, test)
