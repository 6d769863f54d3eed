"""engines/ is a plain library: no UI imports, heavy libraries only where used."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ENGINES = Path(__file__).resolve().parents[2] / "engines"
FORBIDDEN = ("textual", "rich", "torch", "transformers", "llama_cpp", "pynvml", "huggingface_hub")


def test_importing_engines_loads_no_ui_and_no_heavy_library() -> None:
    modules = sorted(
        "engines." + ".".join(p.relative_to(ENGINES).with_suffix("").parts)
        for p in ENGINES.rglob("*.py")
        if p.name != "__init__.py" and p.stem != "__main__"
    )
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(result.stdout) == []


def test_no_module_in_engines_imports_textual_or_rich() -> None:
    offenders = []
    for path in ENGINES.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in ("textual", "rich")]
    assert offenders == []
