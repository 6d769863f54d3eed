"""The key sweep: every screen (F1-F8), modal and the command palette, in the states a user reaches, at 80x24 and
100x30. At each focus stop every key the focused widget, its screen and the app bind is pressed, plus navigation
keys and a few letters; after each key the app must still run, with nothing raised and the crash log empty."""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Iterator

import pytest
from textual.pilot import Pilot

from tests.tui.sweep_states import (
    SIZES,
    STATES,
    Env,
    State,
    crash_log_text,
    guard_quit,
    keys_here,
    press,
    problem,
    restore,
    widget_label,
)
from tui.app import LlmTuiApp


class Tally:
    """What the sweep pressed, for the summary the lead quotes."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, str, int, int, float]] = []
        """(state, size, focus stops, keys, seconds) per test."""

    def summary(self) -> str:
        """One line per figure: states x sizes, stops and keys in all, time."""
        if not self.runs:
            return "key sweep: nothing ran"
        screens = {name.split("/")[0] for name, *_ in self.runs}
        states = {name for name, *_ in self.runs}
        sizes = {size for _, size, *_ in self.runs}
        stops = sum(r[2] for r in self.runs)
        keys = sum(r[3] for r in self.runs)
        seconds = sum(r[4] for r in self.runs)
        return (
            f"key sweep: {len(screens)} screens, {len(states)} screen states x {len(sizes)} sizes = {len(self.runs)} "
            f"runs, {stops} focus stops, {keys} keys pressed, {seconds:.0f} s"
        )


@pytest.fixture(scope="module")
def tally(request: pytest.FixtureRequest) -> Iterator[Tally]:
    counts = Tally()
    yield counts
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("")
        reporter.write_line(counts.summary())
    print(counts.summary())


def widget_name(app: LlmTuiApp) -> str:
    """The focused widget, as a failure message names it."""
    return "nothing focused" if app.focused is None else widget_label(app.focused)


async def focus_stop(pilot: Pilot[int], index: int) -> bool:
    """Focus the `index`th stop of the screen's focus chain; False when the chain is shorter now."""
    chain = pilot.app.screen.focus_chain
    if index >= len(chain):
        return False
    if pilot.app.focused is not chain[index]:
        chain[index].focus()
        await pilot.pause(0)
    return True


def sweep(app: LlmTuiApp, state: State, env: Env, size: tuple[int, int]) -> tuple[int, int]:
    """Press every key at every focus stop; return (stops, keys). Fails naming the state, stop and key."""
    trail = ["starting"]
    counts = [0, 0]

    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            if state.setup is not None:
                await state.setup(pilot, env)
            await restore(pilot, state)
            assert problem(app) is None, problem(app)
            stops = max(1, len(app.screen.focus_chain))
            trail[0] = "setting up"
            pressed: set[tuple[str, str]] = set()
            for index in range(stops):
                await restore(pilot, state)
                if not await focus_stop(pilot, index) and index:
                    break
                counts[0] += 1
                for key in keys_here(app, pressed):
                    trail[0] = (
                        f"stop {index + 1}/{stops} ({widget_name(app)} on {type(app.screen).__name__}), key {key!r}"
                    )
                    await press(pilot, key)
                    counts[1] += 1
                    if (why := problem(app)) is not None:
                        raise AssertionError(why)
                    await restore(pilot, state)
                    await focus_stop(pilot, index)
            trail[0] = "after the last key"
            await pilot.pause()
            if (why := problem(app)) is not None:
                raise AssertionError(why)

    try:
        asyncio.run(main())
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        cause = app._exception or exc
        where = "".join(traceback.format_exception(cause))
        pytest.fail(f"{state.name} at {size[0]}x{size[1]}: {trail[0]}: {cause!r}\n{where}", pytrace=False)
    assert app._exception is None
    assert crash_log_text(app) == "", "the crash guard had to catch something (it must not be what saves the sweep)"
    return counts[0], counts[1]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("state", STATES, ids=[s.name for s in STATES])
def test_every_key_at_every_focus_stop(state: State, size: tuple[int, int], env: Env, tally: Tally) -> None:
    app = state.build(env)
    guard_quit(app)
    started = time.perf_counter()
    stops, keys = sweep(app, state, env, size)
    tally.runs.append((state.name, f"{size[0]}x{size[1]}", stops, keys, time.perf_counter() - started))
    assert keys > 0


def test_the_sweep_fails_on_a_key_that_raises(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """A key whose action raises fails the sweep naming the state, the focus stop and the key (the crash guard
    keeps the app running, and its log is what fails it)."""
    from tui.screens.modals.log_view import LogModal

    def broken(self: LogModal) -> None:
        raise RuntimeError("broken on purpose")

    monkeypatch.setattr(LogModal, "action_close", broken)
    state = next(s for s in STATES if s.name == "log-view")
    app = state.build(env)
    guard_quit(app)
    with pytest.raises(pytest.fail.Exception, match=r"log-view at 80x24: stop 1/\d+ .*key 'escape'.*broken on purpose"):
        sweep(app, state, env, (80, 24))
    app.crash_log_path.unlink()  # caught on purpose (make_app fails a test whose app's guard caught anything)
