"""The registry and the adapters say the same thing: each registered engine's class carries the registry's name
and formats, and importing an adapter module (to read them) pulls in none of the heavy libraries."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from engines.adapters.registry import ENGINES, EngineEntry

HEAVY = ("torch", "transformers", "llama_cpp", "ollama", "huggingface_hub", "gguf", "numpy", "pynvml")

READ_ADAPTERS = """
import importlib, json, sys
from engines.adapters.registry import ENGINES
declared = {}
for e in ENGINES.values():
    cls = getattr(importlib.import_module(e.module), e.cls)
    declared[e.name] = [cls.name, list(cls.formats)]
heavy = sorted({m.split('.')[0] for m in sys.modules} & set(sys.argv[1:]))
print(json.dumps({"declared": declared, "heavy": heavy}))
"""


def disagreements(entries: dict[str, EngineEntry], declared: dict[str, tuple[str, list[str]]]) -> list[str]:
    """Each engine whose class declares another name or other formats than its registry line, said."""
    out = []
    for key, e in entries.items():
        name, formats = declared[key]
        if key != e.name or name != e.name or tuple(formats) != e.formats:
            out.append(f"{key}: registry {e.name} {e.formats}, {e.cls} {name} {tuple(formats)}")
    return out


def test_every_registered_adapter_declares_the_registrys_name_and_formats() -> None:
    root = Path(__file__).parents[3]
    result = subprocess.run(
        [sys.executable, "-c", READ_ADAPTERS, *HEAVY], cwd=root, capture_output=True, text=True, check=True, timeout=60
    )
    seen = json.loads(result.stdout)
    assert seen["heavy"] == []  # adapters import their libraries when they load a model, not when imported
    assert sorted(seen["declared"]) == sorted(ENGINES)
    assert disagreements(ENGINES, seen["declared"]) == []


def test_a_disagreement_is_named() -> None:
    llama = ENGINES["llama.cpp"]
    said = disagreements({"llama.cpp": llama}, {"llama.cpp": ("llama.cpp", ["gguf", "hf"])})
    assert said == ["llama.cpp: registry llama.cpp ('gguf',), LlamaCppEngine llama.cpp ('gguf', 'hf')"]
