"""The Hub search screen, driven by keys against the fake Hub: results as you type in the Hub's order, a newer
query's results never replaced by an older one's late answer, the sort cycle, the wait on HTTP 429 and the error
of an unreachable endpoint, and snapshots at 100x30 and 80x24."""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from textual.pilot import Pilot

import tui.screens.hub_search as hub_search
from tests.engines.fake_hub import FakeHub
from tests.engines.hub_fixtures import search_corpus
from tests.tui.catalog_fixture import fixed_listing
from tests.tui.conftest import AppFactory
from tests.tui.hub_app import HubRepos, add_repos, on_hub
from tests.tui.test_chat_screen import until
from tests.tui.test_snapshots import settle
from tui.app import LlmTuiApp
from tui.screens.hub_files import HubFilesScreen
from tui.screens.hub_search import HubSearchScreen

SIZES = [pytest.param((100, 30), id="100x30"), pytest.param((80, 24), id="80x24")]
Test = Callable[[Pilot[int], HubSearchScreen], Coroutine[Any, Any, None]]


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with FakeHub() as server:
        yield server


@pytest.fixture
def repos(hub: FakeHub) -> HubRepos:
    return add_repos(hub)


def hub_app(make_app: AppFactory, endpoint: str, **kw: Any) -> LlmTuiApp:
    """The app on the catalog (its fixed listing: no scan of this machine), pointed at `endpoint`."""
    return on_hub(make_app(screen="catalog", launch=False, listing=fixed_listing), endpoint, **kw)


async def open_search(pilot: Pilot[int]) -> HubSearchScreen:
    """`h` on the catalog."""
    app = pilot.app
    await until(pilot, lambda: app.screen.name == "catalog", "the catalog")
    await pilot.press("h")
    await until(pilot, lambda: isinstance(app.screen, HubSearchScreen), "the Hub search screen")
    screen = app.screen
    assert isinstance(screen, HubSearchScreen)
    return screen


def drive(app: LlmTuiApp, test: Test, size: tuple[int, int] = (100, 30)) -> None:
    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await test(pilot, await open_search(pilot))

    asyncio.run(main())


async def searched(pilot: Pilot[int], screen: HubSearchScreen, query: str) -> None:
    """Wait for the search for `query` to end."""
    await until(pilot, lambda: screen.searched == query and not screen.searching, f"the search for {query!r}")


def status(screen: HubSearchScreen) -> str:
    return str(screen.query_one("#hub-status").render())


def shown(screen: HubSearchScreen) -> list[str]:
    """The repo ids in the table, top to bottom."""
    table = screen.table
    return [str(table.get_row_at(i)[0]) for i in range(table.row_count)]


def searches(hub: FakeHub) -> list[str]:
    """The `search=` of every search request the Hub answered or refused, in order."""
    out = []
    for request in hub.requests:
        url = urlsplit(request.path)
        if url.path == "/api/models":
            out.append(parse_qs(url.query).get("search", [""])[-1])
    return out


def test_typing_lists_the_matching_repos_in_downloads_order_then_enter_opens_one(
    make_app: AppFactory, hub: FakeHub, repos: HubRepos
) -> None:
    async def test(pilot: Pilot[int], screen: HubSearchScreen) -> None:
        assert screen.focused is screen.query_input
        await pilot.press(*"llama")
        await searched(pilot, screen, "llama")
        assert shown(screen) == [repos.safetensors.repo, repos.series.repo, repos.split.repo, repos.gated.repo]
        assert status(screen).startswith("4 repos · sorted by downloads")
        row = screen.table.get_row_at(1)
        assert [str(c) for c in row[1:]] == ["412.3k", "1.2k", "2025-06-02", "gguf"]
        assert str(screen.table.get_row_at(3)[-1]) == "gguf gated"
        assert searches(hub) == ["llama"]  # one request for the word, not one per key
        await pilot.press("down", "down", "enter")  # into the list, onto the second repo, open it
        await until(pilot, lambda: isinstance(pilot.app.screen, HubFilesScreen), "the files screen")
        files = pilot.app.screen
        assert isinstance(files, HubFilesScreen) and files.repo == repos.series.repo
        await pilot.press("escape")
        await until(pilot, lambda: pilot.app.screen is screen, "back to the search")
        await pilot.press("escape")
        await until(pilot, lambda: pilot.app.screen.name == "catalog", "back to the catalog")

    drive(hub_app(make_app, hub.endpoint), test)


def test_pages_stream_in_and_the_sort_key_cycles_downloads_likes_modified(make_app: AppFactory, hub: FakeHub) -> None:
    by_downloads = search_corpus(hub, "qwen", count=120)
    hub.max_page_size = 10  # 12 requests for 120 repos, shown a hundred at a time

    async def test(pilot: Pilot[int], screen: HubSearchScreen) -> None:
        await pilot.press(*"qwen", "enter")
        await searched(pilot, screen, "qwen")
        assert shown(screen) == by_downloads
        assert screen.focused is screen.table  # Enter in the field went to the list once results came
        by = {"likes": lambda r: hub.repos[r].likes, "last_modified": lambda r: hub.repos[r].last_modified}
        for sort in ("likes", "last_modified"):
            await pilot.press("s")
            await until(pilot, lambda s=sort: screen.sort_key == s and not screen.searching, f"sorted by {sort}")
            assert shown(screen) == sorted(by_downloads, key=by[sort], reverse=True)
            assert "sorted by " + ("likes" if sort == "likes" else "modified") in status(screen)
        await pilot.press("s")
        await until(pilot, lambda: screen.sort_key == "downloads" and not screen.searching, "downloads again")
        assert shown(screen) == by_downloads

    drive(hub_app(make_app, hub.endpoint), test)


class BackOff:
    """huggingface_hub's wait after a 429, held until the test lets it go (the library sleeps in the search's
    thread; every other sleep in the process goes through untouched)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import huggingface_hub.utils._http as hf_http

        self.release = threading.Event()
        self.asked: list[float] = []
        real = hf_http.time.sleep

        def sleep(seconds: float) -> None:
            if sys._getframe(1).f_globals.get("__name__") != hf_http.__name__:
                real(seconds)
                return
            self.asked.append(seconds)
            self.release.wait(30)

        monkeypatch.setattr(hf_http.time, "sleep", sleep)


def test_a_newer_query_is_never_replaced_by_an_older_ones_late_answer(
    make_app: AppFactory, hub: FakeHub, repos: HubRepos, monkeypatch: pytest.MonkeyPatch
) -> None:
    back_off = BackOff(monkeypatch)
    hub.rate_limit(1, retry_after=5, route="/api/models")  # the first search waits, then asks again
    ended = threading.Event()
    real_search = hub_search.search_models

    def search_models(query: str, **kw: Any) -> Iterator[list[Any]]:
        try:
            yield from real_search(query, **kw)
        finally:
            if query == "8B":
                ended.set()

    monkeypatch.setattr(hub_search, "search_models", search_models)

    async def test(pilot: Pilot[int], screen: HubSearchScreen) -> None:
        await pilot.press(*"8B")
        await until(pilot, lambda: back_off.asked == [6.0], "the first search to back off")
        await until(pilot, lambda: "retrying in 6 s" in status(screen), "the wait to be said")
        assert status(screen) == "rate limited by the Hub (HTTP 429): retrying in 6 s…"
        await pilot.press("ctrl+u", *"70B")
        await searched(pilot, screen, "70B")
        assert shown(screen) == [repos.split.repo]
        back_off.release.set()  # the first search now asks again and gets its (stale) answer
        await until(pilot, lambda: searches(hub) == ["8B", "70B", "8B"], "the first search's second request")
        await until(pilot, ended.is_set, "the first search's thread to end")
        await pilot.pause()
        assert shown(screen) == [repos.split.repo]
        assert status(screen).startswith("1 repo · sorted by downloads")

    drive(hub_app(make_app, hub.endpoint), test)


def test_a_429_that_persists_and_an_unreachable_hub_are_said_not_raised(
    make_app: AppFactory, hub: FakeHub, repos: HubRepos, monkeypatch: pytest.MonkeyPatch
) -> None:
    back_off = BackOff(monkeypatch)
    back_off.release.set()  # no wait: the library gives up after five retries
    hub.rate_limit(6, retry_after=0, route="/api/models")

    async def test(pilot: Pilot[int], screen: HubSearchScreen) -> None:
        await pilot.press(*"llama", "enter")
        await searched(pilot, screen, "llama")
        assert "rate limiting requests (HTTP 429)" in status(screen) and "hf_token" in status(screen)
        assert shown(screen) == []
        await pilot.press("enter")  # Enter in the field tries again, now answered
        await searched(pilot, screen, "llama")
        assert len(shown(screen)) == 4
        await pilot.press("slash", "ctrl+u", *"bad$query")  # / back to the field from the list
        await until(pilot, lambda: "letters, digits" in status(screen), "the query refused")
        assert searches(hub).count("bad$query") == 0

    drive(hub_app(make_app, hub.endpoint), test)

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()

    async def unreachable(pilot: Pilot[int], screen: HubSearchScreen) -> None:
        await pilot.press(*"llama")
        await searched(pilot, screen, "llama")
        assert status(screen).startswith(f"cannot reach http://127.0.0.1:{port}")
        assert "HF_ENDPOINT" in status(screen)

    drive(hub_app(make_app, f"http://127.0.0.1:{port}"), unreachable)


def test_the_palette_opens_the_search(make_app: AppFactory, hub: FakeHub) -> None:
    from tests.tui.test_screen_list import from_palette

    app = hub_app(make_app, hub.endpoint)

    async def main() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("f1")
            await until(pilot, lambda: app.screen.name == "chat", "the chat")
            await from_palette(pilot, "Search the Hugging Face Hub")
            await until(pilot, lambda: isinstance(app.screen, HubSearchScreen), "the Hub search screen")
            assert app.current_mode == "catalog"

    asyncio.run(main())


@pytest.mark.parametrize("size", SIZES)
def test_snapshot_search_results(  # type: ignore[no-untyped-def]
    snap_compare, make_app: AppFactory, hub: FakeHub, repos: HubRepos, size: tuple[int, int], tmp_path: Path
) -> None:
    async def results(pilot: Pilot[int]) -> None:
        screen = await open_search(pilot)
        await pilot.press(*"llama", "enter")
        await searched(pilot, screen, "llama")
        await pilot.press("down")
        await settle(pilot)

    assert snap_compare(hub_app(make_app, hub.endpoint), terminal_size=size, run_before=results)
