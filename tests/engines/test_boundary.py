"""engines/ is a plain library: no UI imports, nothing from the app (tui/) or the command line (cli/) above it,
heavy libraries only where used."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ENGINES = Path(__file__).resolve().parents[2] / "engines"
FORBIDDEN = ("textual", "rich", "torch", "transformers", "llama_cpp", "pynvml", "huggingface_hub", "tui", "cli")
ABOVE = ("textual", "rich", "tui", "cli")
"""What engines/ may never import, at the top of a module or inside a function: the UI libraries and the two
packages built on engines/."""


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


def imports_from_above(root: Path) -> list[str]:
    """`file: module` for every import under `root` of a module in ABOVE (lazy imports in functions included)."""
    offenders = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            offenders += [f"{path.relative_to(root)}: {n}" for n in names if n.split(".")[0] in ABOVE]
    return offenders


def test_no_module_in_engines_imports_the_ui_the_app_or_the_cli() -> None:
    assert imports_from_above(ENGINES) == []


def test_a_planted_import_of_the_app_or_the_cli_is_found(tmp_path: Path) -> None:
    (tmp_path / "deep").mkdir()
    (tmp_path / "ok.py").write_text("import json\nfrom engines.types import Usage\n")
    (tmp_path / "top.py").write_text("import tui\n")
    (tmp_path / "deep" / "lazy.py").write_text("def f():\n    from cli.main import main\n    return main\n")
    assert imports_from_above(tmp_path) == ["deep/lazy.py: cli.main", "top.py: tui"]
