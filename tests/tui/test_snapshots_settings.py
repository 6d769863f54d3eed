"""SVG snapshots of the settings screen at 100x30 and 80x24: a file with a few values, a token (masked), one
endpoint and one alias; a field refusing a value; the endpoint dialog."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot

from tests.tui.conftest import AppFactory
from tests.tui.test_chat_screen import until
from tests.tui.test_settings_screen import settings, type_into
from tests.tui.test_snapshots import SIZES, settle
from tui.screens.modals.endpoint_edit import EndpointModal

TOKEN = "hf_NeverOnScreen42"
SNAPSHOT_FILE = f"""\
# my settings
hf_token = "{TOKEN}"
ollama_host = "http://gpu-box:11434"

[aliases]
tiny = "gemma-3-270m"

[defaults]
temperature = 0.7
max_tokens = 512

[[remote_endpoints]]
name = "vllm"
url = "http://gpu-box:8000/v1"
api_key_env = "VLLM_KEY"
"""


@pytest.fixture
def snapshot_file(isolated_dirs: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user's config file; HOME is the test folder so paths show the same (~/…) on every run."""
    monkeypatch.setenv("HOME", str(isolated_dirs))
    from engines.config.load import user_config_path

    path = user_config_path()
    path.parent.mkdir(parents=True)
    path.write_text(SNAPSHOT_FILE)
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("size", SIZES)
def test_settings(snap_compare, make_app: AppFactory, snapshot_file: Path, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    async def show(pilot: Pilot[int]) -> None:
        await settle(pilot)
        assert TOKEN not in pilot.app.export_screenshot()

    assert snap_compare(make_app(screen="settings", launch=False), terminal_size=size, run_before=show)


@pytest.mark.parametrize("size", SIZES)
def test_settings_field_error(snap_compare, make_app: AppFactory, snapshot_file: Path, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    async def refuse(pilot: Pilot[int]) -> None:
        await type_into(pilot, "gpu_memory_fraction", "1.5")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: settings(pilot.app).row("gpu_memory_fraction").error is not None, "the error")  # type: ignore[arg-type]
        await settle(pilot)

    assert snap_compare(make_app(screen="settings", launch=False), terminal_size=size, run_before=refuse)


def test_settings_endpoint_dialog(snap_compare, make_app: AppFactory, snapshot_file: Path) -> None:  # type: ignore[no-untyped-def]
    async def open_dialog(pilot: Pilot[int]) -> None:
        settings(pilot.app).query_one("#endpoints").focus()  # type: ignore[arg-type]
        await pilot.press("e")
        await until(pilot, lambda: isinstance(pilot.app.screen, EndpointModal), "the dialog")
        await settle(pilot)

    assert snap_compare(make_app(screen="settings", launch=False), terminal_size=(80, 24), run_before=open_dialog)
