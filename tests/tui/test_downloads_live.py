"""The downloads screen redraws when the queue says a task changed, not on a timer."""

from __future__ import annotations

import asyncio

from textual.pilot import Pilot

from engines.downloads.tasks import TaskStatus
from tests.engines.test_download_queue import wait_for
from tests.tui.conftest import AppFactory
from tests.tui.test_chat_screen import until
from tests.tui.test_downloads_screen import HeldTransfer, drive, held, status_of
from tui.app import LlmTuiApp
from tui.screens.downloads import DownloadsScreen

__all__ = ["held"]  # the fixture, imported for its name


def test_a_download_finishing_on_its_thread_shows_at_the_next_frame(make_app: AppFactory, held: HeldTransfer) -> None:
    app = make_app(screen="downloads", launch=False, transfer=held)

    async def test(app: LlmTuiApp, screen: DownloadsScreen, pilot: Pilot[int]) -> None:
        task = app.runtime.downloads.add("url", app.runtime.config.models_dir / "z.gguf", url="http://127.0.0.1:9/z")
        await until(pilot, lambda: held.urls != [], "the transfer starts")
        await pilot.pause()
        assert "1 downloading" in str(screen.query_one("#downloads-status").render())
        held.release.set()
        # Well inside the old 0.5 s poll: only the queue's own message can have redrawn the table by now.
        await asyncio.to_thread(wait_for, lambda: status_of(app, task.id) is TaskStatus.COMPLETED, "completed")
        await pilot.pause()  # the messages already posted, and nothing else
        assert "0 downloading · 0 queued · 1 in the list" in str(screen.query_one("#downloads-status").render())
        row = screen.table.get_row_at(0)
        assert str(row[3]) == "completed"

    drive(app, test)
