"""Engine name → adapter class and the extra that installs it.

Adapters are imported only when asked for, so listing engines never pulls in
torch or llama_cpp. A new engine is one file in this package plus one line here.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

from engines.adapters.base import Engine
from engines.errors import EngineUnavailable


@dataclass(frozen=True, slots=True)
class EngineEntry:
    """How to find an engine and what it needs installed."""

    name: str
    module: str
    cls: str
    requires: tuple[str, ...]
    """Top-level modules that must be importable for the engine to work."""
    extra: str
    """The pip extra that installs it, as in `pip install 'llm-tui[extra]'`."""
    formats: tuple[str, ...]
    options: tuple[str, ...] = (
        "device",
        "n_ctx",
        "n_gpu_layers",
        "n_threads",
        "lora_path",
        "idle_unload_s",
        "chat_template",
        "parallel",
        "speculative",
    )
    """The LaunchOptions fields this engine honours (the launch dialog offers only these)."""

    @property
    def install_hint(self) -> str:
        """The command that installs this engine."""
        return f"pip install 'llm-tui[{self.extra}]'"


ENGINES: dict[str, EngineEntry] = {
    e.name: e
    for e in (
        EngineEntry("llama.cpp", "engines.adapters.llama_cpp", "LlamaCppEngine", ("llama_cpp",), "llama", ("gguf",)),
        EngineEntry(
            "transformers",
            "engines.adapters.transformers_engine",
            "TransformersEngine",
            ("torch", "transformers"),
            "transformers",
            ("hf", "gguf"),
            (
                "device",
                "n_ctx",
                "n_threads",
                "dtype",
                "quantization",
                "lora_path",
                "idle_unload_s",
                "chat_template",
                "parallel",
            ),
        ),
        EngineEntry(
            "ollama",
            "engines.adapters.ollama_engine",
            "OllamaEngine",
            ("ollama",),
            "ollama",
            ("ollama",),
            ("n_ctx", "n_threads", "idle_unload_s"),
        ),
        EngineEntry("remote", "engines.adapters.remote", "RemoteEngine", (), "all", ("remote",), ("idle_unload_s",)),
        EngineEntry(
            "fake",
            "engines.adapters.fake",
            "FakeEngine",
            (),
            "dev",
            ("gguf", "hf", "fake"),
            (
                "device",
                "n_ctx",
                "n_gpu_layers",
                "n_threads",
                "dtype",
                "quantization",
                "lora_path",
                "idle_unload_s",
                "parallel",
            ),
        ),
    )
}

ALIASES = {"llama": "llama.cpp", "llama-cpp": "llama.cpp", "llamacpp": "llama.cpp"}


def entry(name: str) -> EngineEntry:
    """The registry entry for an engine name or alias; EngineUnavailable if unknown."""
    key = ALIASES.get(name, name)
    try:
        return ENGINES[key]
    except KeyError:
        known = ", ".join(sorted(ENGINES))
        raise EngineUnavailable(name, f"unknown engine (known: {known})") from None


def is_installed(name: str) -> bool:
    """True when the engine's Python packages can be imported (without importing them)."""
    return all(importlib.util.find_spec(mod) is not None for mod in entry(name).requires)


def engine_class(name: str) -> type[Engine]:
    """Import and return the adapter class; EngineUnavailable names the extra to install."""
    e = entry(name)
    missing = [m for m in e.requires if importlib.util.find_spec(m) is None]
    if missing:
        raise EngineUnavailable(e.name, f"Python package {missing[0]!r} is not installed", e.install_hint)
    module = importlib.import_module(e.module)
    cls: type[Engine] = getattr(module, e.cls)
    return cls


def create(name: str) -> Engine:
    """A new, unloaded adapter instance for `name`."""
    return engine_class(name)()


def engines_for_format(fmt: str) -> list[str]:
    """Names of registered engines that load `fmt`, real engines first."""
    return [e.name for e in ENGINES.values() if fmt in e.formats and e.name != "fake"]
