"""SVG snapshots of the compare screen at 100x30 and 80x24: running (mid-stream), finished (ranked), sequential
(one done, one loading, one waiting). Clocks, memory and free RAM are fixed so the pictures are stable."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from textual.pilot import Pilot

from engines import footprint
from engines.adapters.fake import FakeEngine
from engines.compare.types import CompareModel
from engines.telemetry.fake import FakeGpuSource
from engines.telemetry.poller import TelemetryPoller
from engines.telemetry.snapshot import HostStats
from engines.types import ChatMessage, Delta, LaunchOptions, Params, StreamEvent
from tests.engines.gguf_corpus import write_gguf
from tests.tui.conftest import AppFactory
from tests.tui.test_chat_screen import until
from tests.tui.test_snapshots import SIZES, settle
from tui.app import LlmTuiApp
from tui.screens.compare import CompareScreen
from tui.widgets.prompt import PromptInput

MB = 10**6
OPTIONS = LaunchOptions(n_ctx=1024)
REPLIES = {
    "alpha": "Red, green and blue are the **primary colours** of light. Mixed together they make white.",
    "beta": "Three colours:\n\n1. Crimson\n2. Teal\n3. Amber",
    "gamma": "Yellow, cyan and magenta.",
}


class ThreadClock:
    """A scripted clock per thread: each instance thread ticks at its own pace (so each model has its own
    speed), the runner thread slowly; the same readings in the same order every run."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self) -> float:
        name = threading.current_thread().name
        with self._lock:
            count = self._counts[name] = self._counts.get(name, 0) + 1
        if name.startswith("instance-r"):
            number = int(name.removeprefix("instance-r").split("-")[0])
            return 0.1 * number + count * 0.004 * number
        return count * 0.001


class HeldEngine(FakeEngine):
    """Streams its first `words` words, then holds the rest until `hold` is set (or the request is cancelled)."""

    def __init__(self, *, words: int, hold: threading.Event, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.words = words
        self.hold = hold

    def chat(
        self, messages: Sequence[ChatMessage], params: Params, cancel: threading.Event, session: str | None = None
    ) -> Iterator[StreamEvent]:
        sent = 0
        for event in super().chat(messages, params, cancel, session):
            if isinstance(event, Delta):
                if sent == self.words:
                    while not self.hold.wait(0.01) and not cancel.is_set():
                        pass
                sent += 1
            yield event


class FixedHost:
    """A 16 GB host with `free` bytes available, less what the app's instances hold."""

    def __init__(self, app: LlmTuiApp, free: int) -> None:
        self.app = app
        self.free = free

    def sample(self) -> HostStats:
        held = sum(i.footprint.ram_bytes or 0 for i in self.app.runtime.manager.instances())
        available = max(0, self.free - held)
        return HostStats(
            ram_total_bytes=16_000 * MB, ram_available_bytes=available, ram_used_bytes=16_000 * MB - available
        )


@pytest.fixture
def release() -> Iterator[threading.Event]:
    hold = threading.Event()
    yield hold
    hold.set()


@pytest.fixture(autouse=True)
def declared_memory_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """RSS growth across a fake load is noise: report what the engine declares (64 MiB) in the pictures."""
    monkeypatch.setattr(footprint, "measure", lambda change, **_: (change(), footprint.Growth(None, None))[1])


def compare_app(make_app: AppFactory, engines: dict[str, FakeEngine], free: int) -> LlmTuiApp:
    app = make_app(screen="compare", launch=False, gpu_source=lambda: FakeGpuSource(gpus=[]))
    clock = ThreadClock()
    app.runtime.manager._clock = clock
    app.runtime._engine_choice = lambda ref: engines[Path(ref).stem]
    app.runtime._telemetry = TelemetryPoller(FakeGpuSource(gpus=[]), FixedHost(app, free), interval_s=3600)  # type: ignore[arg-type]
    return app


async def start(pilot: Pilot[int], folder: Path, names: Sequence[str], prompt: str) -> CompareScreen:
    screen = pilot.app.screen
    assert isinstance(screen, CompareScreen)
    screen.clock = ThreadClock()  # type: ignore[method-assign]
    for name in names:
        path = write_gguf(folder / f"{name}.gguf")
        screen.add_model(CompareModel(ref=str(path), engine="llama.cpp", options=OPTIONS, label=f"{name} · llama.cpp"))
    await pilot.pause()
    screen.query_one(PromptInput).text = prompt
    screen.action_run()
    return screen


async def drawn(pilot: Pilot[int], screen: CompareScreen) -> None:
    """Every streamed piece applied (frames are timer-driven), no text cursor (its blink phase is not ours to fix),
    then the usual settling."""
    screen.set_focus(None)
    await pilot.pause()
    for pane in screen.panes:
        view = pane.log_view.reply(pane._key)
        if view is not None:
            await view.flush()
    # The metrics lines are packed to each pane's width; a line that grew after the last layout would show cut.
    await pilot.pause()
    for pane in screen.panes:
        pane._show_metrics()
    screen.refresh(layout=True)
    await settle(pilot)


@pytest.mark.parametrize("size", SIZES)
def test_compare_running(snap_compare, make_app: AppFactory, tmp_path: Path, release: threading.Event, size) -> None:  # type: ignore[no-untyped-def]
    engines: dict[str, FakeEngine] = {
        "alpha": HeldEngine(words=6, hold=release, reply=REPLIES["alpha"]),
        # Held before the list: how Textual's streamed Markdown draws a list item cut at "1." depends on whether
        # it arrived in one append or two, which the UI's frame timing decides.
        "beta": HeldEngine(words=1, hold=release, reply=REPLIES["beta"]),
    }
    app = compare_app(make_app, engines, free=8000 * MB)

    async def show(pilot: Pilot[int]) -> None:
        screen = await start(pilot, tmp_path, ["alpha", "beta"], "Name the three primary colours.")
        partial = {0: "Red, green and blue are the", 1: "Three"}
        for index, text in partial.items():
            await until(pilot, lambda i=index, t=text: screen.panes[i].reply_text == t, f"pane {index + 1} mid-stream")  # type: ignore[misc]
        await drawn(pilot, screen)

    assert snap_compare(app, terminal_size=size, run_before=show)


@pytest.mark.parametrize("size", SIZES)
def test_compare_finished(snap_compare, make_app: AppFactory, tmp_path: Path, size) -> None:  # type: ignore[no-untyped-def]
    engines: dict[str, FakeEngine] = {name: FakeEngine(reply=REPLIES[name]) for name in ("alpha", "beta")}
    app = compare_app(make_app, engines, free=8000 * MB)

    async def show(pilot: Pilot[int]) -> None:
        screen = await start(pilot, tmp_path, ["alpha", "beta"], "Name the three primary colours.")
        await until(pilot, lambda: screen.runner is None and screen.shown is not None, "the run to end")
        await drawn(pilot, screen)

    assert snap_compare(app, terminal_size=size, run_before=show)


@pytest.mark.parametrize("size", SIZES)
def test_compare_sequential(snap_compare, make_app: AppFactory, tmp_path: Path, release: threading.Event, size) -> None:  # type: ignore[no-untyped-def]
    engines: dict[str, FakeEngine] = {
        "alpha": FakeEngine(reply=REPLIES["alpha"]),
        "beta": FakeEngine(reply=REPLIES["beta"], load_gate=release),
        "gamma": FakeEngine(reply=REPLIES["gamma"]),
    }
    app = compare_app(make_app, engines, free=950 * MB)  # one ~100 MB model and its 800 MB margin fit, two do not

    async def show(pilot: Pilot[int]) -> None:
        screen = await start(pilot, tmp_path, ["alpha", "beta", "gamma"], "Name three colours.")
        await until(pilot, lambda: [p.state for p in screen.panes] == ["done", "loading", "waiting"], "2 loading")
        await until(pilot, lambda: screen.panes[0].border_subtitle == "done · unloaded", "1 unloaded")
        await drawn(pilot, screen)

    assert snap_compare(app, terminal_size=size, run_before=show)
