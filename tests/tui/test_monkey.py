"""The monkey run: thousands of seeded random keys (every binding of every screen, widget and modal, navigation,
letters, F1-F8) roaming over all screens from a few starting states, at 80x24 and 100x30. After each key the app
must still run, with nothing raised and the crash log empty.

A failure names its seed and key number; `LLM_TUI_MONKEY_SEED=<seed> pytest tests/tui/test_monkey.py` replays the
same keys (the key sequence is fixed by the seed; worker threads may still interleave differently).
LLM_TUI_MONKEY_KEYS sets the keys per run (default 500: 4 runs, 2,000 keys)."""

from __future__ import annotations

import asyncio
import os
import random
import time
import traceback

import pytest

from tests.tui.sweep_states import SIZES, STATES, Env, State, all_keys, crash_log_text, guard_quit, press, problem

# Read at import: the isolated_dirs fixture removes LLM_TUI_* variables before a test runs.
SEED = int(os.environ.get("LLM_TUI_MONKEY_SEED", "17"))
KEYS_PER_RUN = int(os.environ.get("LLM_TUI_MONKEY_KEYS", "500"))
STARTS = [s for s in STATES if s.name in ("chat/streaming", "catalog/every-kind-of-row")]
"""Where the monkey starts: a reply streaming (the busiest state) and the catalog with every kind of row."""


def keys_for(seed: int, state: State, size: tuple[int, int], count: int) -> list[str]:
    """The run's keys: the same for the same seed, start and size."""
    chooser = random.Random(f"{seed}/{state.name}/{size[0]}x{size[1]}")
    alphabet = all_keys()
    return [chooser.choice(alphabet) for _ in range(count)]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("state", STARTS, ids=[s.name for s in STARTS])
def test_random_keys_never_end_the_app(state: State, size: tuple[int, int], env: Env) -> None:
    keys = keys_for(SEED, state, size, KEYS_PER_RUN)
    app = state.build(env)
    quits = guard_quit(app)
    where = ["setting up"]
    visited: set[str] = set()
    replay = f"LLM_TUI_MONKEY_SEED={SEED} pytest 'tests/tui/test_monkey.py::test_random_keys_never_end_the_app'"

    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            if state.setup is not None:
                await state.setup(pilot, env)
            for number, key in enumerate(keys, 1):
                recent = keys[max(0, number - 8) : number]
                where[0] = f"key {number}/{len(keys)} {key!r} on {type(app.screen).__name__}, last keys {recent}"
                await press(pilot, key)
                visited.add(type(app.screen).__name__)
                if (why := problem(app)) is not None:
                    raise AssertionError(why)
            where[0] = "after the last key"
            await pilot.pause()
            if (why := problem(app)) is not None:
                raise AssertionError(why)

    started = time.perf_counter()
    try:
        asyncio.run(main())
    except Exception as exc:
        cause = app._exception or exc
        detail = "".join(traceback.format_exception(cause))
        pytest.fail(
            f"seed {SEED}, {state.name} at {size[0]}x{size[1]}: {where[0]}\nreplay: {replay}\n{detail}", pytrace=False
        )
    seconds = time.perf_counter() - started
    assert app._exception is None
    assert crash_log_text(app) == "", "the crash guard had to catch something (it must not be what saves the run)"
    size_name = f"{size[0]}x{size[1]}"
    figures = f"{len(keys)} keys in {seconds:.0f} s over {len(visited)} screens, {len(quits)} quits refused"
    print(f"monkey: seed {SEED}, {state.name} at {size_name}: {figures}")
