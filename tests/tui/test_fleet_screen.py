"""The fleet screen driven by keys over canned host views: rows of every kind, sort, chat, launch and stop on
another host, refusals that say why; and its snapshots at 100x30 and 80x24."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from textual.pilot import Pilot

import engines.fleet.admin as admin
from engines.errors import LlmTuiError
from engines.fleet.types import FleetInstance, FleetMember
from tests.tui.conftest import AppFactory
from tests.tui.fleet_views import MEMBERS, NOW, CannedPoller, use_canned_fleet, views
from tests.tui.test_chat_screen import until
from tests.tui.test_instances_screen import drive, table_text
from tests.tui.test_snapshots import SIZES, settle
from tui.app import LlmTuiApp
from tui.screens.fleet import FLEET_HINT, FleetScreen
from tui.screens.modals.confirm import ConfirmModal
from tui.screens.modals.host_models import HostModelsModal


def fleet_app(make_app: AppFactory, members: tuple[FleetMember, ...] = MEMBERS) -> LlmTuiApp:
    app = make_app(screen="fleet", launch=False)
    app.runtime.config = replace(app.runtime.config, fleet=members)
    return app


def screen_of(app: LlmTuiApp) -> FleetScreen:
    screen = app.screen
    assert isinstance(screen, FleetScreen)
    return screen


async def polled(pilot: Pilot[int]) -> FleetScreen:
    screen = screen_of(pilot.app)  # type: ignore[arg-type]
    screen.clock = lambda: NOW
    await until(pilot, lambda: CannedPoller.polls >= 1 and len(screen.views) == 5, "the first poll")
    screen.show_rows()
    return screen


def toasts(app: LlmTuiApp) -> str:
    return "\n".join(str(n.message) for n in app._notifications)


def select(screen: FleetScreen, key: str) -> None:
    screen.table.move_cursor(row=screen.table.keys.index(key))


def test_every_host_and_model_shows_with_its_state(make_app: AppFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    use_canned_fleet(monkeypatch)

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        screen = await polled(pilot)
        text = table_text(app)
        for expected in ("local", "gpu-a", "A100 ×2", "qwen2.5-32b-q4_k_m", "gpu-b", "4 +6", "vllm-1"):
            assert expected in text, expected
        assert "Llama-3.1-70B" in text and "kv 37%" in text and "412.0" in text
        assert "timed out after 2.0 s" in text and "8 s ago" in text  # the dead host, as last seen
        assert "85.9 GB free" in text  # gpu-a: 80 GiB free over its two GPUs
        status = str(screen.query_one("#fleet-status").render())
        assert "4 of 5 hosts up" in status and "5 models running" in status  # not the down host's
        select(screen, "h:gpu-c")
        await pilot.pause()
        detail = str(screen.query_one("#fleet-detail").render())
        assert "unreachable: timed out after 2.0 s · last seen 8 s ago" in detail
        assert "denied" not in text
        select(screen, "i:vllm-1:meta-llama/Llama-3.1-70B-Instruct")
        await pilot.pause()
        detail = str(screen.query_one("#fleet-detail").render())
        assert "KV cache 37%" in detail and "TTFT 182 ms" in detail

    drive(fleet_app(make_app), test, size=(160, 30))


def test_v_sorts_hosts_by_free_vram(make_app: AppFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    use_canned_fleet(monkeypatch)

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        screen = await polled(pilot)
        hosts = [k for k in screen.table.keys if k.startswith("h:")]
        assert hosts == ["h:local", "h:gpu-a", "h:gpu-b", "h:vllm-1", "h:gpu-c"]
        await pilot.press("v")
        hosts = [k for k in screen.table.keys if k.startswith("h:")]
        # gpu-a has 80 GiB free of 160, gpu-c 22 of 24 (as last seen), gpu-b 4 of 24; no GPU reading last.
        assert hosts[:3] == ["h:gpu-a", "h:gpu-c", "h:gpu-b"]
        assert "sorted by free VRAM" in str(screen.query_one("#fleet-status").render())

    drive(fleet_app(make_app), test)


def test_enter_chats_with_another_hosts_model_through_the_remote_engine(
    make_app: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_canned_fleet(monkeypatch)
    launched: list[tuple[Any, ...]] = []

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        monkeypatch.setattr(app, "launch_model", lambda *a, **k: launched.append(a))
        screen = await polled(pilot)
        select(screen, "h:gpu-a")
        await pilot.press("enter")  # a host row: says what to do
        assert "Select one of the host's models" in toasts(app)
        await pilot.press("down", "enter")
        assert launched == [("remote:gpu-a/r1-llama.cpp", "remote")]
        assert app.current_mode == "chat"

    drive(fleet_app(make_app), test)


def test_enter_on_a_dead_hosts_model_says_it_does_not_answer(
    make_app: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_canned_fleet(monkeypatch)

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        monkeypatch.setattr(app, "launch_model", lambda *a, **k: pytest.fail("launched a model on a dead host"))
        screen = await polled(pilot)
        select(screen, "i:gpu-c:r3-llama.cpp")
        await pilot.press("enter")
        assert "gpu-c does not answer: timed out after 2.0 s" in toasts(app)
        assert app.current_mode == "fleet"

    drive(fleet_app(make_app), test)


def test_n_launches_a_model_on_another_host_and_s_stops_one(
    make_app: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_canned_fleet(monkeypatch)
    calls: list[tuple[str, str, str]] = []

    async def launch_on(member: FleetMember, env: object, model: str, engine: str | None = None) -> FleetInstance:
        calls.append(("launch", member.name, model))
        return FleetInstance("r3-llama.cpp", model, "llama.cpp", "ready")

    async def stop_on(member: FleetMember, env: object, run_id: str) -> None:
        calls.append(("stop", member.name, run_id))

    monkeypatch.setattr(admin, "launch_on", launch_on)
    monkeypatch.setattr(admin, "stop_on", stop_on)

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        screen = await polled(pilot)
        select(screen, "h:gpu-b")
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, HostModelsModal), "the host's models")
        await pilot.press(*"mistral", "enter")
        await until(pilot, lambda: calls == [("launch", "gpu-b", "mistral-7b-q4_k_m")], "the launch")
        await until(pilot, lambda: "mistral-7b-q4_k_m is ready on gpu-b as r3-llama.cpp" in toasts(app), "its toast")
        select(screen, "i:gpu-b:r1-llama.cpp")
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, ConfirmModal), "the question")
        await pilot.press("n")  # no: nothing is stopped
        await pilot.pause()
        assert calls[1:] == []
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, ConfirmModal), "the question")
        await pilot.press("y")
        await until(pilot, lambda: calls[1:] == [("stop", "gpu-b", "r1-llama.cpp")], "the stop")

    drive(fleet_app(make_app), test)


def test_refusals_say_why(make_app: AppFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """A read-only member, a key without admin scope, a host without models: each says so, nothing breaks."""
    use_canned_fleet(monkeypatch)

    async def launch_on(member: FleetMember, env: object, model: str, engine: str | None = None) -> FleetInstance:
        raise LlmTuiError(f"host {member.name}: this key has no admin scope (the key 'ci' may use infer, not admin)")

    monkeypatch.setattr(admin, "launch_on", launch_on)

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        screen = await polled(pilot)
        select(screen, "h:vllm-1")
        await pilot.press("n")
        assert "vllm-1 is read-only here (kind openai)" in toasts(app)
        select(screen, "i:vllm-1:meta-llama/Llama-3.1-70B-Instruct")
        await pilot.press("s")
        assert not isinstance(app.screen, ConfirmModal)
        select(screen, "h:gpu-a")
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, HostModelsModal), "the host's models")
        await pilot.press("enter")
        await until(pilot, lambda: "this key has no admin scope" in toasts(app), "the refusal")
        assert app.current_mode == "fleet"

    drive(fleet_app(make_app), test)


def test_without_hosts_it_shows_this_box_and_how_to_add_hosts(
    make_app: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_canned_fleet(monkeypatch)

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        screen = screen_of(app)
        await pilot.pause()
        assert screen.table.keys == ["h:local", "i:local:r1-fake"]
        assert str(screen.query_one("#fleet-status").render()) == FLEET_HINT

    drive(fleet_app(make_app, ()), test)


def test_a_host_that_stops_answering_shows_as_down_with_its_last_data(
    make_app: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = views()
    use_canned_fleet(monkeypatch, answers)

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        screen = await polled(pilot)
        answers[0] = replace(answers[0], reachable=False, error="connection refused", last_seen=NOW - 3)
        await pilot.press("r")  # poll now
        await until(pilot, lambda: not screen.views[1].reachable, "the next poll")
        text = table_text(app)
        assert "connection refused" in text and "qwen2.5-32b-q4_k_m" in text

    drive(fleet_app(make_app), test, size=(160, 30))


@pytest.mark.parametrize("size", SIZES)
def test_fleet_snapshot(  # type: ignore[no-untyped-def]
    snap_compare, make_app: AppFactory, monkeypatch: pytest.MonkeyPatch, size
) -> None:
    use_canned_fleet(monkeypatch)

    async def show(pilot: Pilot[int]) -> None:
        screen = await polled(pilot)
        select(screen, "i:gpu-b:r1-llama.cpp")
        await settle(pilot)

    assert snap_compare(fleet_app(make_app), terminal_size=size, run_before=show)


def test_the_cursor_stays_on_its_row_when_a_host_gains_a_model(
    make_app: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = views()
    use_canned_fleet(monkeypatch, answers)

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        screen = await polled(pilot)
        select(screen, "h:gpu-a")
        await pilot.pause()
        extra = FleetInstance("r3-llama.cpp", "a-model-with-a-much-longer-name-than-before", "llama.cpp", "ready")
        answers[0] = replace(answers[0], instances=(*answers[0].instances, extra))
        await pilot.press("r")
        await until(pilot, lambda: "i:gpu-a:r3-llama.cpp" in screen.table.keys, "the next poll")
        await pilot.pause()
        assert screen.table.current_key == "h:gpu-a"
        assert str(screen.query_one("#fleet-detail").render()).startswith("gpu-a")

    drive(fleet_app(make_app), test)


def test_a_host_that_refuses_the_key_is_denied_not_down(make_app: AppFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    answers = views()
    answers[1] = replace(answers[1], reachable=False, error="HTTP 403: the key 'apps' may use infer, not metrics")
    use_canned_fleet(monkeypatch, answers)

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        screen = await polled(pilot)
        select(screen, "h:gpu-b")
        await pilot.pause()
        assert "denied" in table_text(app)
        assert "refused: HTTP 403: the key 'apps'" in str(screen.query_one("#fleet-detail").render())

    drive(fleet_app(make_app), test, size=(160, 30))
