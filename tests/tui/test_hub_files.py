"""The Hub files screen, driven by keys against the fake Hub: each model's verdict from its real header as it
lands, the best marked with the reason the next one up does not fit, `+`/`-` without a request, `d` queueing
exactly the model's files pinned to the commit, Enter offering the download or opening the launch dialog with the
fit's context and GPU layers, the gated repo's token hint, an unreachable Hub; snapshots at 100x30 and 80x24."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

import tui.screens.hub_files as hub_files
from engines.downloads.tasks import DownloadTask
from tests.engines.fake_hub import FakeHub
from tests.tui.catalog_fixture import fixed_listing
from tests.tui.conftest import AppFactory
from tests.tui.hub_app import HubRepos, add_repos, on_hub
from tests.tui.test_chat_screen import until
from tests.tui.test_snapshots import settle
from tui.app import LlmTuiApp
from tui.screens.hub_files import HubFilesScreen
from tui.screens.modals.confirm import ConfirmModal
from tui.screens.modals.launch import LaunchModal

SIZES = [pytest.param((100, 30), id="100x30"), pytest.param((80, 24), id="80x24")]
Test = Callable[[Pilot[int], HubFilesScreen], Coroutine[Any, Any, None]]
VERDICTS = {
    "Q2_K": "✓ fits on GPU 0",
    "Q3_K_M": "✓ fits on GPU 0",
    "Q4_K_M": "✓ fits on GPU 0",
    "Q5_K_M": "✓ fits on GPU 0",
    "Q6_K": "✓ fits on GPU 0",
    "Q8_0": "~ partial offload",
    "F16": "~ partial offload",
}
"""The 8B at 4,096 tokens on an 8 GB GPU with 16 GB of RAM."""


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with FakeHub() as server:
        yield server


@pytest.fixture
def repos(hub: FakeHub) -> HubRepos:
    return add_repos(hub)


def hub_app(make_app: AppFactory, endpoint: str, **kw: Any) -> LlmTuiApp:
    return on_hub(make_app(screen="catalog", launch=False, listing=fixed_listing), endpoint, **kw)


def drive(app: LlmTuiApp, repo: str, test: Test, size: tuple[int, int] = (100, 30)) -> None:
    """Open `repo`'s files over the catalog, then run `test`."""

    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await until(pilot, lambda: app.screen.name == "catalog", "the catalog")
            screen = HubFilesScreen(repo)
            await app.push_screen(screen)
            await test(pilot, screen)

    asyncio.run(main())


async def all_read(pilot: Pilot[int], screen: HubFilesScreen) -> None:
    await until(pilot, lambda: bool(screen.fits) and None not in screen.fits, "every header", timeout=60)
    await pilot.pause()


def column(screen: HubFilesScreen, index: int) -> list[str]:
    table = screen.table
    return [str(table.get_row_at(i)[index]) for i in range(table.row_count)]


def text(screen: HubFilesScreen, widget_id: str) -> str:
    return str(screen.query_one(f"#{widget_id}").render())


def test_verdicts_land_with_the_best_marked_and_the_reason_and_context_keys_ask_nothing(
    make_app: AppFactory, hub: FakeHub, repos: HubRepos
) -> None:
    async def test(pilot: Pilot[int], screen: HubFilesScreen) -> None:
        await all_read(pilot, screen)
        assert column(screen, 1) == list(VERDICTS)
        assert column(screen, 5) == list(VERDICTS.values())
        assert column(screen, 0)[4] == "★ Llama-3-8B-Instruct-Q6_K.gguf"
        assert text(screen, "files-status") == "7/7 headers read"
        reason = "★ Q6_K is the largest that fits entirely on the GPU; Q8_0 needs 9.6 GB VRAM, 8.0 GB free"
        assert text(screen, "files-reason") == reason
        assert screen.table.cursor_row == 4  # on the best once every header is read
        await pilot.press("home")
        assert "7 models · fit at ctx 4,096 (+/-)" in text(screen, "files-title")
        detail = text(screen, "files-detail")
        assert "gguf: 2 files to download (3.8 GB), with the projector mmproj-model-f16.gguf" in detail
        assert "KV cache at 4,096 tokens: 537 MB · fits on GPU 0" in detail
        assert f"commit {repos.series.hub_repo.commit[:12]}" in detail

        asked = len(hub.requests)
        await pilot.press("plus", "plus")  # 16,384 tokens: the KV cache pushes Q5_K_M off the GPU
        assert column(screen, 0)[2] == "★ Llama-3-8B-Instruct-Q4_K_M.gguf"
        assert column(screen, 5)[3] == "~ partial offload"
        assert "fit at ctx 16,384" in text(screen, "files-title")
        assert text(screen, "files-reason").startswith("★ Q4_K_M is the largest that fits entirely on the GPU; Q5_K_M")
        await pilot.press("minus", "minus")
        assert column(screen, 5) == list(VERDICTS.values())
        assert len(hub.requests) == asked  # checked again from the headers already read

    drive(hub_app(make_app, hub.endpoint), repos.series.repo, test)


def test_rows_say_reading_and_the_count_grows_as_headers_land(
    make_app: AppFactory, hub: FakeHub, repos: HubRepos, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    real = hub_files.fit_repo

    def held_fit_repo(*args: Any, on_result: Callable[[int, Any], None], **kw: Any) -> Any:
        def landed(index: int, result: Any) -> None:
            if index >= 3:
                release.wait(30)  # the last four wait until the test has seen the first three
            on_result(index, result)

        return real(*args, on_result=landed, **kw)

    monkeypatch.setattr(hub_files, "fit_repo", held_fit_repo)

    async def test(pilot: Pilot[int], screen: HubFilesScreen) -> None:
        try:
            await until(pilot, lambda: text(screen, "files-status") == "3/7 headers read…", "three headers")
            assert column(screen, 5)[3:] == ["reading header…"] * 4
            assert text(screen, "files-reason") == ""  # the best is named once every header is read
            assert "★" not in "".join(column(screen, 0))
        finally:
            release.set()
        await all_read(pilot, screen)
        assert column(screen, 5) == list(VERDICTS.values())

    drive(hub_app(make_app, hub.endpoint), repos.series.repo, test)


def test_d_queues_exactly_the_models_files_pinned_to_the_commit(
    make_app: AppFactory, hub: FakeHub, repos: HubRepos
) -> None:
    app = hub_app(make_app, hub.endpoint)
    models_dir = app.runtime.config.models_dir

    async def series(pilot: Pilot[int], screen: HubFilesScreen) -> None:
        await all_read(pilot, screen)
        await pilot.press("up", "up", "d")  # from the best (Q6_K) to Q4_K_M
        tasks = await wait_tasks(pilot, app, 2)
        q4 = repos.series.ggufs["Q4_K_M"]
        assert {t.file for t in tasks} == {q4.path, repos.series.mmproj.path}
        assert {t.repo for t in tasks} == {repos.series.repo}
        assert {t.revision for t in tasks} == {repos.series.hub_repo.commit}
        assert {t.target_path for t in tasks} == {models_dir / "Llama-3-8B-Instruct-GGUF" / f for f in (q4.path,)} | {
            models_dir / "Llama-3-8B-Instruct-GGUF" / repos.series.mmproj.path
        }
        assert next(t for t in tasks if t.file == q4.path).sha256 == q4.sha256

    drive(app, repos.series.repo, series)


def test_d_on_a_split_and_a_safetensors_set_queues_every_part_into_one_folder(
    make_app: AppFactory, hub: FakeHub, repos: HubRepos
) -> None:
    app = hub_app(make_app, hub.endpoint)
    models_dir = app.runtime.config.models_dir

    async def split(pilot: Pilot[int], screen: HubFilesScreen) -> None:
        await all_read(pilot, screen)
        assert column(screen, 0) == ["Llama-3-70B-Instruct-Q4_K_M (3 parts)"]
        assert column(screen, 5) == ["✗ does not fit"]
        await pilot.press("d")
        tasks = await wait_tasks(pilot, app, 3)
        assert sorted(t.file or "" for t in tasks) == [p.path for p in repos.split.parts]
        assert {t.revision for t in tasks} == {repos.split.hub_repo.commit}

    drive(app, repos.split.repo, split)
    app = hub_app(make_app, hub.endpoint)  # an app runs once; this one shares the first one's queue

    async def safetensors(pilot: Pilot[int], screen: HubFilesScreen) -> None:
        await all_read(pilot, screen)
        assert column(screen, 0) == ["safetensors (2 shards)"]
        await pilot.press("d")
        wanted = sorted(p for p in repos.safetensors.files if p != "README.md")
        tasks = [t for t in await wait_tasks(pilot, app, 3 + len(wanted)) if t.repo == repos.safetensors.repo]
        assert sorted(t.file or "" for t in tasks) == wanted
        assert {t.target_path.parent for t in tasks} == {models_dir / "Llama-3-8B-Instruct"}
        assert {t.revision for t in tasks} == {repos.safetensors.hub_repo.commit}

    drive(app, repos.safetensors.repo, safetensors)


async def wait_tasks(pilot: Pilot[int], app: LlmTuiApp, count: int) -> list[DownloadTask]:
    await until(pilot, lambda: len(app.runtime.store.downloads.all()) >= count, f"{count} queued files")
    return app.runtime.store.downloads.all()


def test_enter_offers_the_download_of_a_model_not_here_and_launches_one_that_is(
    make_app: AppFactory, hub: FakeHub, repos: HubRepos
) -> None:
    app = hub_app(make_app, hub.endpoint)
    folder = app.runtime.config.models_dir / "Llama-3-8B-Instruct-GGUF"

    async def test(pilot: Pilot[int], screen: HubFilesScreen) -> None:
        await all_read(pilot, screen)
        await pilot.press("up", "up", "enter")  # from the best (Q6_K) to Q4_K_M, not downloaded
        await until(pilot, lambda: isinstance(app.screen, ConfirmModal), "the download offer")
        question = app.screen.query_one("#question").render()
        assert str(question) == "Llama-3-8B-Instruct-Q4_K_M.gguf is not downloaded. Download it now (2 files, 5.6 GB)?"
        await pilot.press("n")
        await until(pilot, lambda: app.screen is screen, "back to the files")
        assert app.runtime.store.downloads.all() == []

        for model in (repos.series.ggufs["Q8_0"], repos.series.mmproj):  # as if downloaded: sparse, full size
            folder.mkdir(parents=True, exist_ok=True)
            with open(folder / model.path, "wb") as f:
                f.truncate(model.size)
        await pilot.press("down", "down", "down", "enter")  # Q8_0: here, and a partial offload
        await until(pilot, lambda: isinstance(app.screen, LaunchModal), "the launch dialog")
        dialog = app.screen
        assert isinstance(dialog, LaunchModal)
        assert dialog.target.ref == str(folder / repos.series.ggufs["Q8_0"].path)
        assert dialog.query_one("#n_ctx", Input).value == "4096"
        layers = dialog.query_one("#n_gpu_layers", Input).value
        assert layers.isdigit() and 0 < int(layers) < 32, layers  # the partial offload's split
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is screen, "back to the files")
        await pilot.press("d")
        await until(pilot, lambda: any("here already" in n.message for n in app._notifications), "said it is here")
        assert app.runtime.store.downloads.all() == []

    drive(app, repos.series.repo, test)


def test_a_gated_repo_shows_the_token_hint_and_reads_with_the_token(
    make_app: AppFactory, hub: FakeHub, repos: HubRepos
) -> None:
    async def without(pilot: Pilot[int], screen: HubFilesScreen) -> None:
        await all_read(pilot, screen)
        assert column(screen, 5) == ["✗ gated: hf_token"]
        reason = text(screen, "files-reason")
        assert "gated" in reason and "set hf_token (Settings, or the HF_TOKEN environment variable)" in reason
        assert "header not read" in text(screen, "files-detail")
        await pilot.press("d")  # the transfer would be refused the same way: nothing is queued
        await pilot.pause()
        assert screen.app.runtime.store.downloads.all() == []

    drive(hub_app(make_app, hub.endpoint), repos.gated.repo, without)

    async def with_token(pilot: Pilot[int], screen: HubFilesScreen) -> None:
        await all_read(pilot, screen)
        assert column(screen, 5) == ["✓ fits on GPU 0"]

    drive(hub_app(make_app, hub.endpoint, token=repos.gated.token), repos.gated.repo, with_token)

    async def other_token(pilot: Pilot[int], screen: HubFilesScreen) -> None:
        await all_read(pilot, screen)
        assert column(screen, 5) == ["✗ gated: hf_token"]
        assert text(screen, "files-reason").startswith(f"The Hub refused hf_token for {repos.gated.repo}")

    drive(hub_app(make_app, hub.endpoint, token="hf_not_this_one"), repos.gated.repo, other_token)


def test_an_unreachable_hub_is_said(make_app: AppFactory) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()

    async def test(pilot: Pilot[int], screen: HubFilesScreen) -> None:
        await until(pilot, lambda: screen.error is not None, "the error")
        assert text(screen, "files-status").startswith(f"cannot reach http://127.0.0.1:{port}")
        await pilot.press("enter", "d", "plus")  # nothing to act on: no key fails
        assert app.is_running

    app = hub_app(make_app, f"http://127.0.0.1:{port}")
    drive(app, "org/Llama-3-8B-Instruct-GGUF", test)


@pytest.mark.parametrize("size", SIZES)
def test_snapshot_files_with_verdicts(  # type: ignore[no-untyped-def]
    snap_compare, make_app: AppFactory, hub: FakeHub, repos: HubRepos, size: tuple[int, int], tmp_path: Path
) -> None:
    async def read(pilot: Pilot[int]) -> None:
        await until(pilot, lambda: pilot.app.screen.name == "catalog", "the catalog")
        screen = HubFilesScreen(repos.series.repo)
        await pilot.app.push_screen(screen)
        await all_read(pilot, screen)
        await settle(pilot)  # the cursor on the best, its detail below

    assert snap_compare(hub_app(make_app, hub.endpoint), terminal_size=size, run_before=read)
