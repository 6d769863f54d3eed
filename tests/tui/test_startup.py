"""Start-up stays light: the first frame needs no model library and no Markdown renderer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "transformers", "llama_cpp", "pynvml", "huggingface_hub", "gguf", "numpy")
DEFERRED = (
    "markdown_it",
    "tui.widgets.message_view",
    "tui.screens.modals.params",
    "engines.launch",
    "tui.screens.catalog",
    "tui.screens.gauges",
    "tui.screens.instances",
    "tui.screens.downloads",
    "engines.downloads.transfer",
    "httpx",
    "engines.telemetry.nvml",
    "engines.catalog.discover",
    "ollama",
    "engines.manager",
    "engines.store.compare_runs",
)


def loaded_after_import(module: str) -> list[str]:
    code = (
        f"import json, sys; import {module}\n"
        f"heavy, deferred = {HEAVY!r}, {DEFERRED!r}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m in deferred)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True, cwd=ROOT
    )
    return list(json.loads(result.stdout))


def test_importing_the_app_loads_no_model_library_and_no_markdown() -> None:
    assert loaded_after_import("tui.app") == []


def run_probe(code: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True, cwd=ROOT
    )
    return list(json.loads(result.stdout.strip().splitlines()[-1]))


def test_the_app_command_line_loads_no_subcommand_module() -> None:
    """`llm-tui` alone is parsed without the subcommands' parsers (the catalog, downloads and telemetry modules
    they import cost the first frame about a quarter of the start)."""
    code = (
        "import json, sys\n"
        "import cli.main as cli\n"
        "def fake_run_app(args):\n"
        "    print(json.dumps(sorted(m for m in sys.modules if m.endswith('_cli') or m.startswith(('engines.catalog',"
        " 'engines.downloads', 'engines.telemetry')))))\n"
        "    return 0\n"
        "cli.run_app = fake_run_app\n"
        "cli.main(['--screen', 'chat'])\n"
    )
    assert run_probe(code) == []


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--screen", "catalog"],
        ["--model", "chat"],
        ["--mod", "x"],
        ["--debug", "--config", "a.toml", "--screen", "settings"],
        ["--screen", "nope"],
        ["chat"],
        ["models", "list"],
        ["-h"],
        ["--model"],
        ["stray"],
    ],
)
def test_the_app_parser_agrees_with_the_full_parser(argv: list[str]) -> None:
    """The light parse is taken only where the full parser gives the same answer; anything else falls to it."""
    from cli.main import _app_args, build_parser

    light = _app_args(argv)
    if light is None:
        return  # the full parser decides, as before
    assert light == build_parser().parse_args(argv)


def test_an_empty_chat_paints_without_markdown_and_without_a_blank_default_screen(isolated_dirs: Path) -> None:
    """The first frame of a new user's chat loads no Markdown renderer, no engine manager and no saved-comparison
    code, and the chat is the first screen built (not Textual's blank default screen, styled and then switched
    away from)."""
    code = (
        "import asyncio, json, sys\n"
        "from engines.config.load import load_config\n"
        "from tui.app import LlmTuiApp\n"
        "from tui.runtime import Runtime\n"
        "async def main():\n"
        "    runtime = Runtime(load_config(env={}))\n"
        "    app = LlmTuiApp(runtime)\n"
        "    async with app.run_test(size=(80, 24)) as pilot:\n"
        "        await pilot.pause()\n"
        "        later = ('markdown_it', 'tui.widgets.message_view', 'engines.manager', 'engines.store.compare_runs')\n"
        "        loaded = [m for m in later if m in sys.modules]\n"
        "        modes = sorted(app._screen_stacks)\n"
        "    runtime.close()\n"
        "    print(json.dumps(loaded + modes))\n"
        "asyncio.run(main())\n"
    )
    assert run_probe(code) == ["chat"]


def test_collection_is_off_while_the_app_starts_and_on_after_its_first_frame(isolated_dirs: Path) -> None:
    """The entry point turns the garbage collector off for start-up; the app must turn it back on (else memory
    would only grow), freeze what start-up made, and only then resume the download queue."""
    code = (
        "import gc, json, sys\n"
        "import cli.main as cli\n"
        "import tui.app as app_module\n"
        "seen = {}\n"
        "original = app_module.LlmTuiApp._after_first_frame\n"
        "def after(self):\n"
        "    seen['off_before'] = not gc.isenabled()\n"
        "    original(self)\n"
        "    seen['on_after'] = gc.isenabled()\n"
        "    seen['frozen'] = gc.get_freeze_count() > 0\n"
        "    self.exit(0)\n"
        "app_module.LlmTuiApp._after_first_frame = after\n"
        "original_run = app_module.LlmTuiApp.run\n"
        "app_module.LlmTuiApp.run = lambda self, **kw: original_run(self, headless=True)\n"
        "code = cli.main([])\n"
        "print(json.dumps([code, seen]))\n"
    )
    assert run_probe(code) == [0, {"off_before": True, "on_after": True, "frozen": True}]


@pytest.mark.timeout(120)
def test_quitting_does_not_wait_for_an_embedding_queued_behind_a_long_reply(
    isolated_dirs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A thread worker waiting on an instance held asyncio.run's exit (it joins the workers) until its 300 s
    timeout; the instances must stop first, which ends the wait."""
    import argparse
    import threading

    from engines.adapters.fake import FakeEngine
    from engines.config.load import load_config
    from engines.types import ChatMessage, LaunchOptions, ModelSpec
    from tui import app as app_module

    embedding_queued = threading.Event()

    def on_mount(self: app_module.LlmTuiApp) -> None:
        manager = self.runtime.manager
        spec = ModelSpec("slow", format="fake", engines=("fake",))
        run_id = manager.start(spec, LaunchOptions(), FakeEngine(reply="word " * 1000, token_delay_s=0.3))
        manager.submit(run_id, [ChatMessage("user", "a long story")])  # about 5 minutes of reply

        def embed() -> None:
            embedding_queued.set()
            manager.embed(run_id, ["queued behind the reply"])

        self.run_worker(embed, thread=True, exit_on_error=False)
        self.set_interval(0.05, lambda: embedding_queued.is_set() and self.exit(0))

    monkeypatch.setattr(app_module.LlmTuiApp, "on_mount", on_mount)
    original = app_module.LlmTuiApp.run_async
    monkeypatch.setattr(app_module.LlmTuiApp, "run_async", lambda self, **kw: original(self, headless=True))
    args = argparse.Namespace(screen=None, model=None)
    assert app_module.run(args, load_config(env={}, cwd=isolated_dirs)) == 0
