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
from tui.screens.downloads import Addition, DownloadsScreen, parse_addition
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
        ("org/name file.gguf", Addition("hf", repo="org/name", file="file.gguf")),
        ("https://example.org/a.gguf", Addition("url", url="https://example.org/a.gguf")),
        ("ollama:qwen2.5", Addition("ollama", repo="qwen2.5:latest")),
        ("  ollama:library/qwen2.5:0.5b ", Addition("ollama", repo="library/qwen2.5:0.5b")),
        ("org/name", Addition("hf-repo", repo="org/name")),
        (
            "org/name *.json model.safetensors",
            Addition("hf-repo", repo="org/name", patterns=("*.json", "model.safetensors")),
        ),
        ("org/name a.gguf --to cache", Addition("hf-repo", repo="org/name", patterns=("a.gguf",), to_cache=True)),
        ("org/name --to cache", Addition("hf-repo", repo="org/name", to_cache=True)),
        ("org/name a.gguf --to models", Addition("hf", repo="org/name", file="a.gguf")),
    ],
)
def test_parse_addition(text: str, expected: Addition) -> None:
    assert parse_addition(text) == expected


@pytest.mark.parametrize("text", ["just-a-name", "org/name --to", "org/name a --to elsewhere", "a/b/c x", ""])
def test_bad_additions_say_what_to_type(text: str) -> None:
    with pytest.raises(ValueError, match=r"type one of: org/name \[file\.gguf"):
        parse_addition(text)


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


def test_a_repo_typed_with_to_cache_lands_in_the_hugging_face_cache(
    make_app: AppFactory, isolated_dirs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import try_to_load_from_cache

    from engines.downloads import hf_cache
    from engines.downloads.hf_source import hub_file
    from engines.downloads.transfer import download_file
    from tests.engines.fake_hub import FakeHub

    cache = isolated_dirs / "hf-hub"
    monkeypatch.setattr(hf_cache, "hub_cache_dir", lambda: cache)
    with FakeHub() as hub:
        hub.add_repo("org/embed", {"model.safetensors": b"w" * 5000, "config.json": b"{}"}, lfs=["model.safetensors"])
        (isolated_dirs / "config.toml").write_text(f'hf_endpoint = "{hub.endpoint}"\n')
        app = make_app(screen="downloads", launch=False, transfer=download_file, describe_hub=hub_file)

        async def test(app: LlmTuiApp, screen: DownloadsScreen, pilot: Pilot[int]) -> None:
            await pilot.press("a", *"org/embed *.safetensors --to cache", "enter")
            tasks = app.runtime.downloads.tasks
            await until(pilot, lambda: len(tasks.all()) == 1, "the matching file is queued")
            (task,) = tasks.all()
            await until(pilot, lambda: tasks.get(task.id).status is TaskStatus.COMPLETED, "fetched")
            assert any("1 file of org/embed → the Hugging Face cache" in n.message for n in app._notifications)
            screen.refresh_table()
            await pilot.pause()
            assert f"the Hugging Face cache ({cache}, main)" in str(screen.query_one("#downloads-detail").render())

        drive(app, test)
    found = try_to_load_from_cache("org/embed", "model.safetensors", cache_dir=cache)
    assert isinstance(found, str) and Path(found).read_bytes() == b"w" * 5000
    assert try_to_load_from_cache("org/embed", "config.json", cache_dir=cache) is None


def test_at_80x24_every_column_dialog_and_prompt_shows_whole(make_app: AppFactory) -> None:
    """Speed and ETA stay on screen; where each file goes (models, cache, ollama) is a column; a file checked
    against its sha256 says "verified"; cancelled is spelled out; `x` clears failed rows too; the `c` question
    and the `a` prompt (ollama:NAME, URLs) show all of their text."""
    from tests.tui.test_catalog_screen import drawn_question

    app = make_app(screen="downloads", launch=False)

    async def main() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            screen = app.screen
            assert isinstance(screen, DownloadsScreen)
            tasks, models = app.runtime.downloads.tasks, app.runtime.config.models_dir
            name = "Llama-3.2-3B-Instruct-Q4_K_M.gguf"
            sha = "ab" * 32
            done = tasks.add("hf", models / name, repo="bartowski/Llama-3.2-3B-Instruct-GGUF", file=name, sha256=sha)
            for status in (TaskStatus.DOWNLOADING, TaskStatus.COMPLETED):
                tasks.set_status(done.id, status)
            failed = tasks.add("url", models / "f.gguf", url="https://example.org/f.gguf")
            for status in (TaskStatus.DOWNLOADING, TaskStatus.FAILED):
                tasks.set_status(failed.id, status, "HTTP 404")
            cancelled = tasks.add("url", models / "c.gguf", url="https://example.org/c.gguf")
            tasks.set_status(cancelled.id, TaskStatus.CANCELLED)
            blob = app.runtime.config.cache_dir / "hub/models--org--m/blobs" / ("e5" * 32)
            paused = tasks.add("hf", blob, repo="unsloth/gemma-3-4b-it-GGUF", file="m.gguf", cache_ref="main")
            tasks.set_status(paused.id, TaskStatus.PAUSED)
            screen.refresh_table()
            await pilot.pause()
            table = screen.table
            assert table.render_line(0).text.split() == ["ID", "File", "To", "Status", "Size", "Speed", "ETA"]
            cells = {key: [str(c) for c in table.get_row(key)] for key in table.keys}
            assert cells[str(done.id)][2:4] == ["models", "verified"] and cells[str(cancelled.id)][3] == "cancelled"
            assert cells[str(paused.id)][2] == "cache"
            assert f"verified (sha256 {sha})" in str(screen.query_one("#downloads-detail").render())

            await pilot.press("end", "c")  # the paused one, in the cache
            assert isinstance(app.screen, ConfirmModal)
            question = drawn_question(app.screen)
            assert question.startswith("Cancel unsloth/gemma-3-4b-it-GGUF/m.gguf.")
            assert question.endswith("Delete its partial file too? (Keep it to resume later; Esc does not cancel.)")
            await pilot.press("escape")
            assert tasks.get(paused.id).status is TaskStatus.PAUSED  # backing out cancels nothing
            await pilot.press("a")
            assert isinstance(app.screen, TextPromptModal)
            title = app.screen.query_one("#title")
            assert app.screen.query_one(".dialog").region.contains_region(title.region)
            drawn = " ".join(s.text.strip() for s in title.render_lines(title.region.reset_offset))
            assert "ollama:NAME" in drawn and "https:// URL" in drawn
            await pilot.press("escape", "x")
            await pilot.pause()
            left = {t.id for t in tasks.all()}
            assert left == {paused.id}  # completed, failed and cancelled are cleared

    run(main())


@pytest.mark.parametrize(
    ("count", "said"),
    [
        (1, "1 download the last run left unfinished is paused"),
        (2, "2 downloads the last run left unfinished are paused"),
    ],
)
def test_start_up_says_how_many_downloads_it_paused_in_good_english(
    make_app: AppFactory, count: int, said: str
) -> None:
    app = make_app(screen="chat", launch=False)  # F3 itself would open (and so recover) the queue first
    tasks = app.runtime.store.downloads
    for n in range(count):  # left downloading by a process that is gone
        tasks.set_status(
            tasks.add("url", app.runtime.config.models_dir / f"{n}.gguf", url=f"https://x/{n}").id,
            TaskStatus.DOWNLOADING,
        )

    async def main() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: any(said in n.message for n in app._notifications), said)

    run(main())
