"""The embeddings screen driven by keys: texts in, dimensions, timing and a cosine-similarity matrix out."""

from __future__ import annotations

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Select

from engines.adapters.fake import FakeEngine
from engines.types import Capability
from tests.tui.conftest import AppFactory
from tests.tui.test_chat_screen import run, until
from tests.tui.test_snapshots import settle
from tui.app import LlmTuiApp
from tui.screens.embeddings import EmbeddingsScreen

SIZES = [pytest.param((100, 30), id="100x30"), pytest.param((80, 24), id="80x24")]


async def embed_three(pilot: Pilot[int]) -> None:
    app = pilot.app
    assert isinstance(app, LlmTuiApp)
    await until(pilot, lambda: app.runtime.active_info() is not None, "the fake model is loaded")
    await until(pilot, lambda: app.runtime.active_info().state.value == "ready", "ready")  # type: ignore[union-attr]
    screen = app.screen
    assert isinstance(screen, EmbeddingsScreen)
    screen.action_refresh_instances()
    await pilot.press(*"abc", "enter", *"abd", "enter", *"xyz", "ctrl+e")
    await until(pilot, lambda: screen.query_one(DataTable).row_count == 3, "the matrix is shown")
    await pilot.pause()


def test_texts_are_embedded_on_the_instance_and_compared(make_app: AppFactory) -> None:
    app = make_app(screen="embeddings")

    async def main() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await embed_three(pilot)
            screen = app.screen
            assert isinstance(screen, EmbeddingsScreen)
            status = str(screen.query_one("#embed-status").render())
            assert "3 vectors of 26 dimensions in" in status
            table = screen.query_one(DataTable)
            assert str(table.get_cell_at((0, 1))) == "+1.000"
            assert str(table.get_cell_at((0, 2))) == "+0.667"  # abc · abd: two letters of three shared
            assert str(table.get_cell_at((0, 3))) == "+0.000"
            assert app.runtime.active_info().requests_served == 1  # type: ignore[union-attr]

    run(main())


def test_without_an_instance_that_can_embed_it_says_what_to_do(make_app: AppFactory) -> None:
    class ChatOnly(FakeEngine):
        capabilities = Capability.CHAT | Capability.STREAM

    app = make_app(screen="embeddings", engine=ChatOnly())

    async def main() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: app.runtime.active_info() is not None, "loaded")
            screen = app.screen
            assert isinstance(screen, EmbeddingsScreen)
            screen.action_refresh_instances()
            await pilot.press(*"abc", "ctrl+e")
            await pilot.pause()
            assert not isinstance(screen.query_one(Select).value, str)  # nothing to choose
            assert "Choose an instance that can embed first" in str(screen.query_one("#embed-status").render())
            assert screen.query_one(DataTable).row_count == 0

    run(main())


async def embed_three_and_settle(pilot: Pilot[int]) -> None:
    """The matrix as it stays: without settle() the "Model loaded" toast (shown 4 s) was in or out of the frame
    depending on how fast the machine ran."""
    await embed_three(pilot)
    await settle(pilot)


@pytest.mark.parametrize("size", SIZES)
def test_snapshot_after_embedding(snap_compare, make_app: AppFactory, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(make_app(screen="embeddings"), terminal_size=size, run_before=embed_three_and_settle)
