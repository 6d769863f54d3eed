"""Start-up stays light: the first frame needs no model library and no Markdown renderer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
