"""The Hub search and files screens' states for the key sweep, the monkey run and the rule tests: search results, a
search error, a repo's files while headers are read, every header read with the best starred, and a gated repo.

Both screens are pushed over the catalog, so each state's `open` pushes its screen (and marks it) and brings it to
its state against one fake Hub per test, stopped when the test ends (Env.closers)."""

from __future__ import annotations

import socket
import threading
from typing import Any

from textual.pilot import Pilot

from tests.engines.fake_hub import FakeHub
from tests.tui.hub_app import add_repos, on_hub
from tests.tui.sweep_states import Env, Keyed, State, app_for, catalog_listed, mark, shell
from tests.tui.test_chat_screen import until
from tui.app import LlmTuiApp

SERIES = "org/Llama-3-8B-Instruct-GGUF"
GATED = "meta-llama/Llama-3.1-8B-Instruct-GGUF"


def fake_hub(env: Env) -> FakeHub:
    """The test's fake Hub with the builders' repos, started once and stopped when the test ends."""
    if env.hub is None:
        hub = FakeHub().__enter__()
        env.closers.append(lambda: hub.__exit__(None, None, None))
        add_repos(hub)
        env.hub = hub
    assert isinstance(env.hub, FakeHub)
    return env.hub


def closed_port() -> str:
    """An endpoint nothing listens on."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return f"http://127.0.0.1:{port}"


def hub_app(*, unreachable: bool = False) -> Any:
    """The catalog's app, pointed at the test's fake Hub (or at a port nothing listens on)."""

    def build(env: Env) -> LlmTuiApp:
        endpoint = closed_port() if unreachable else fake_hub(env).endpoint
        return on_hub(app_for(env, mode="catalog", launch=False), endpoint)

    return build


def held_headers(env: Env) -> None:
    """Header reads past the third wait until the test ends: the files screen stays 'reading' (3 of 7 read)."""
    import tui.screens.hub_files as hub_files

    release = env.hold()
    real = hub_files.fit_repo

    def fit_repo(*args: Any, on_result: Any, cancel: threading.Event, **kw: Any) -> Any:
        def landed(index: int, result: Any) -> None:
            # Until the test ends, or the screen goes (it sets `cancel` when unmounted: the app's exit waits for
            # its worker thread).
            while index >= 3 and not release.wait(0.05) and not cancel.is_set():
                pass
            on_result(index, result)

        return real(*args, on_result=landed, cancel=cancel, **kw)

    env.monkeypatch.setattr(hub_files, "fit_repo", fit_repo)


async def _push(pilot: Pilot[int], screen: Any) -> Any:
    app = shell(pilot)
    if app.current_mode != "catalog":
        await app.switch_mode("catalog")
    before = app.screen
    app.push_screen(screen)
    await until(pilot, lambda: app.screen is not before and app.screen is screen, type(screen).__name__)
    await pilot.pause()
    mark(screen)
    return screen


def search_for(query: str, *, error: bool = False) -> Keyed:
    """The search screen with `query` typed and answered (or refused)."""

    async def open_it(pilot: Pilot[int]) -> None:
        from tui.screens.hub_search import HubSearchScreen

        screen = await _push(pilot, HubSearchScreen())
        await pilot.press(*query, "enter")
        await until(pilot, lambda: screen.searched == query and not screen.searching, f"the search for {query!r}")
        await pilot.pause()
        assert bool(screen.repos) != error, str(screen.query_one("#hub-status").render())

    return open_it


def files_of(repo: str, *, read: int | None = None) -> Keyed:
    """The files screen of `repo` once `read` headers (all, by default) have landed."""

    async def open_it(pilot: Pilot[int]) -> None:
        from tui.screens.hub_files import HubFilesScreen

        screen = await _push(pilot, HubFilesScreen(repo))

        def landed() -> bool:
            count = sum(1 for f in screen.fits if f is not None)
            return bool(screen.fits) and count == (len(screen.fits) if read is None else read)

        await until(pilot, landed, f"{read or 'every'} header of {repo}", timeout=60)
        await pilot.pause()

    return open_it


async def _listed_and_held(pilot: Pilot[int], env: Env) -> None:
    held_headers(env)
    await catalog_listed(pilot, env)


def hub_states() -> list[State]:
    """Search with results and with an error; a repo's files being read, read with the best starred, and gated."""
    return [
        State("hub-search/results", "catalog", hub_app(), catalog_listed, open=search_for("llama")),
        State(
            "hub-search/error",
            "catalog",
            hub_app(unreachable=True),
            catalog_listed,
            open=search_for("llama", error=True),
        ),
        State("hub-files/reading", "catalog", hub_app(), _listed_and_held, open=files_of(SERIES, read=3)),
        State("hub-files/best", "catalog", hub_app(), catalog_listed, open=files_of(SERIES)),
        State("hub-files/gated", "catalog", hub_app(), catalog_listed, open=files_of(GATED)),
    ]
