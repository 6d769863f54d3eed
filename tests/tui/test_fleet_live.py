"""Three real `llm-tui serve` processes on loopback ports, with fake engines and fake GPUs of different sizes, as
one fleet: the poller and the fleet screen see all three, an admin key launches and stops a model on a remote host,
an infer key is refused (403), and a killed host shows as unreachable within two polls while the others stay up."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest
from textual.pilot import Pilot

from engines.fleet.admin import launch_on, stop_on
from engines.fleet.errors import FleetError
from engines.fleet.poller import FleetPoller
from engines.fleet.types import FleetMember, HostView
from tests.serve_process import ServeProcess, serve_env, serve_process
from tests.tui.conftest import AppFactory
from tests.tui.test_chat_screen import until
from tests.tui.test_instances_screen import drive, table_text
from tui.app import LlmTuiApp
from tui.screens.fleet import FleetScreen

ADMIN = "sk-fleet-admin-0123456789"
INFER = "sk-fleet-infer-0123456789"
MODEL_FILE = "tiny.gguf"
GPUS = {"big": "80,80", "mid": "24", "cpu": ""}
"""Each member's fake GPUs, in GiB."""


@dataclass
class Fleet:
    members: dict[str, FleetMember]
    served: dict[str, ServeProcess]
    env: dict[str, str]

    def member(self, name: str, key_env: str = "FLEET_ADMIN") -> FleetMember:
        return replace(self.members[name], key_env=key_env)


def _config(home: Path, models: Path) -> Path:
    config = home / "config.toml"
    config.write_text(
        f"models_dir = {str(models)!r}\n"
        "[serve]\n"
        "[[serve.keys]]\n"
        'name = "ops"\nkey_env = "FLEET_ADMIN"\nscopes = ["admin"]\n'
        "[[serve.keys]]\n"
        'name = "apps"\nkey_env = "FLEET_INFER"\nscopes = ["infer"]\n',
        encoding="utf-8",
    )
    return config


@pytest.fixture(scope="module")
def fleet(gemma_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    env_keys = {"FLEET_ADMIN": ADMIN, "FLEET_INFER": INFER}
    with ExitStack() as stack:
        served: dict[str, ServeProcess] = {}
        for name, gpus in GPUS.items():
            home = tmp_path_factory.mktemp(f"fleet-{name}")
            models = home / "models"
            models.mkdir()
            (models / MODEL_FILE).symlink_to(gemma_path)  # the fake engine loads it; its header is real
            args = ["--config", str(_config(home, models)), "--port", "0", "--engine", "fake"]
            if name != "cpu":
                args += ["--model", str(models / MODEL_FILE)]
            launcher = ("-m", "tests.fleet.fleet_member", "--gpus", gpus, "--gpu-name", name.upper(), "--")
            served[name] = stack.enter_context(
                serve_process(home, *args, env=serve_env(home, **env_keys), start_s=60, launcher=launcher)
            )
        members = {name: FleetMember(name, s.base, key_env="FLEET_ADMIN") for name, s in served.items()}
        yield Fleet(members, served, {**os.environ, **env_keys})


def test_the_poller_sees_three_hosts_with_their_gpus_and_models(fleet: Fleet) -> None:
    async def go() -> list[HostView]:
        poller = FleetPoller(list(fleet.members.values()), fleet.env)
        try:
            return await poller.poll()
        finally:
            await poller.aclose()

    big, mid, cpu = asyncio.run(go())
    assert all(v.reachable for v in (big, mid, cpu)), [v.error for v in (big, mid, cpu)]
    assert [g.memory_total_bytes for g in big.gpus] == [80 << 30, 80 << 30]
    assert [g.memory_total_bytes for g in mid.gpus] == [24 << 30] and cpu.gpus == ()
    assert big.free_vram_bytes == 120 << 30  # a quarter of each used
    assert [i.engine for i in big.instances] == ["fake"] and big.instances[0].state == "ready"
    assert cpu.instances == () and MODEL_FILE.removesuffix(".gguf") in " ".join(cpu.models)


def test_an_infer_key_may_not_launch_and_an_admin_key_launches_and_stops(fleet: Fleet) -> None:
    cpu = fleet.served["cpu"].base
    refused = httpx.post(
        f"{cpu}/v1/llm-tui/instances",
        json={"model": "tiny", "engine": "fake"},
        headers={"Authorization": f"Bearer {INFER}"},
        timeout=30,
    )
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "insufficient_scope"
    with pytest.raises(FleetError, match="admin"):
        asyncio.run(launch_on(fleet.member("cpu", "FLEET_INFER"), fleet.env, "tiny", "fake"))

    instance = asyncio.run(launch_on(fleet.member("cpu"), fleet.env, "tiny", "fake"))
    assert instance.state == "ready" and instance.engine == "fake"
    listed = httpx.get(f"{cpu}/v1/llm-tui/instances", headers={"Authorization": f"Bearer {ADMIN}"}).json()
    assert [i["run_id"] for i in listed["data"]] == [instance.run_id]
    asyncio.run(stop_on(fleet.member("cpu"), fleet.env, instance.run_id))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        listed = httpx.get(f"{cpu}/v1/llm-tui/instances", headers={"Authorization": f"Bearer {ADMIN}"}).json()
        if not [i for i in listed["data"] if i["state"] != "stopped"]:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"still running after the stop: {listed}")


def test_the_fleet_screen_shows_three_hosts_and_a_killed_one_goes_down_within_two_polls(
    fleet: Fleet, make_app: AppFactory
) -> None:
    """Last in the module: it kills one member."""
    app = make_app(screen="fleet", launch=False)
    members = tuple(replace(m, timeout_s=1.0) for m in fleet.members.values())
    app.runtime.config = replace(app.runtime.config, fleet=members, env=fleet.env)

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        screen = app.screen
        assert isinstance(screen, FleetScreen)
        await until(pilot, lambda: sum(v.reachable for v in screen.views) == 4, "three hosts and this box up", 30)
        text = table_text(app)
        assert "BIG (fake) ×2" in text and "MID (fake)" in text and "tiny" in text
        mid = next(v for v in screen.views if v.member.name == "mid")
        fleet.served["mid"].process.send_signal(signal.SIGKILL)
        fleet.served["mid"].process.wait(10)
        killed = time.monotonic()
        polls = screen.poll_s * 2 + 1.0  # two polls and one host timeout
        await until(pilot, lambda: not screen.views[2].reachable, "the killed host shown as down", polls + 2)
        took = time.monotonic() - killed
        assert took <= polls, took
        down = screen.views[2]
        assert down.member.name == "mid" and down.error and down.last_seen == mid.last_seen
        assert all(v.reachable for v in screen.views if v.member.name != "mid")
        assert "down" in table_text(app)

    drive(app, test)
