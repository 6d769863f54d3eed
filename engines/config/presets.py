"""The [presets.NAME] tables of config.toml: a system prompt, sampling parameters, a model and how to launch it.

```toml
[presets.coder]
description = "Short, exact answers about code"
system = "You are a careful programmer. Answer with code first."
temperature = 0.2
max_tokens = 1024
stop = ["\\n\\n\\n"]
model = "qwen2.5-coder-1.5b"   # optional: `llm-tui chat --preset coder` then needs no MODEL

[presets.coder.launch]         # optional: how `model` is loaded when it is not running yet
n_ctx = 8192
n_gpu_layers = -1
```

A user's file and ./config.toml's merge by preset name: the user's `[presets.coder]` replaces the
whole `coder` of the file below it, and the other presets of both stay.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engines.config.tables import PARAM_KEYS, as_table, checked_params, file_value, param_value
from engines.config.values import Invalid, Parse, parse_float, parse_int, parse_parallel, parse_speculative, parse_text
from engines.errors import ConfigError
from engines.presets import Preset
from engines.types import LaunchOptions

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
"""A preset's name: typed after --preset and shown in the palette, so no spaces."""
DTYPES = ("auto", "float16", "bfloat16", "float32")
QUANTIZATIONS = ("none", "8bit", "4bit")
_DEVICE = re.compile(r"cpu|auto|mps|cuda(:\d+)?")


def _choice(choices: tuple[str, ...], none: str) -> Parse:
    """One of `choices`; `none` (the engine's own choice) is None."""

    def parse(raw: object, base: Path) -> str | None:
        text = raw.strip().lower() if isinstance(raw, str) else None
        if text not in choices:
            raise Invalid(" or ".join(f'"{c}"' for c in choices))
        return None if text == none else text

    return parse


def _device(raw: object, base: Path) -> str:
    text = raw.strip().lower() if isinstance(raw, str) else ""
    if not _DEVICE.fullmatch(text):
        raise Invalid('"cpu", "auto", "cuda", "cuda:N" or "mps"')
    return text


_LAUNCH: dict[str, Parse] = {
    "n_ctx": parse_int(16, "an integer of at least 16"),
    "n_threads": parse_int(1, 'a positive integer or "auto"', auto=True),
    "n_gpu_layers": parse_int(-1, "an integer of at least -1 (-1 = all layers)"),
    "device": _device,
    "dtype": _choice(DTYPES, "auto"),
    "quantization": _choice(QUANTIZATIONS, "none"),
    "parallel": parse_parallel,
    "speculative": parse_speculative,
    "chat_template": parse_text,
    "idle_unload_s": parse_float(lambda v: v > 0, "a positive number of seconds"),
}
LAUNCH_KEYS: tuple[str, ...] = tuple(_LAUNCH)
KEYS: tuple[str, ...] = ("description", "system", *PARAM_KEYS, "model", "launch")


def _text(raw: object, base: Path) -> str:
    if not isinstance(raw, str):
        raise Invalid("a string")
    return raw


def parse_presets(raw: object, label: str, warnings: list[str]) -> dict[str, Preset]:
    """The [presets] table: one Preset per [presets.NAME]; ConfigError names the key at fault."""
    table = as_table(raw, f"{label}: presets", "one [presets.NAME] table per preset")
    out: dict[str, Preset] = {}
    for name, body in table.items():
        where = f"{label}: presets.{name}"
        if not NAME.fullmatch(name):
            raise ConfigError(
                f"{where}: a preset name uses letters, digits and . _ + - (starting with a letter or digit), no spaces"
            )
        out[name] = _preset(name, as_table(body, where, "description, system, temperature, ..."), where, warnings)
    return out


def _preset(name: str, table: Mapping[str, object], where: str, warnings: list[str]) -> Preset:
    params: dict[str, Any] = {}
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key in PARAM_KEYS:
            params[key] = param_value(key, value, f"{where}.{key}")
        elif key == "description":
            values[key] = file_value(_text, value, Path(), f"{where}.{key}").strip()
        elif key == "system":
            values[key] = file_value(_text, value, Path(), f"{where}.{key}")
        elif key == "model":
            values[key] = file_value(parse_text, value, Path(), f"{where}.{key}")
        elif key == "launch":
            launch = _launch(value, f"{where}.launch", warnings)
            values["launch"] = LaunchOptions(**launch)
            values["launch_keys"] = tuple(launch)
        else:
            warnings.append(f"{where}: unknown key {key!r} ignored (known keys: {', '.join(KEYS)})")
    return Preset(name=name, params=checked_params(params, where), **values)


def _launch(raw: object, where: str, warnings: list[str]) -> dict[str, Any]:
    table = as_table(raw, where, "n_ctx, n_threads, n_gpu_layers, device, ...")
    out: dict[str, Any] = {}
    for key, value in table.items():
        if key in _LAUNCH:
            out[key] = file_value(_LAUNCH[key], value, Path(), f"{where}.{key}")
        else:
            warnings.append(f"{where}: unknown key {key!r} ignored (known keys: {', '.join(LAUNCH_KEYS)})")
    return out


def preset_table(preset: Preset) -> dict[str, object]:
    """The [presets.NAME] table that loads back into `preset` (what it sets, nothing else)."""
    out: dict[str, object] = {}
    if preset.description:
        out["description"] = preset.description
    if preset.system is not None:
        out["system"] = preset.system
    for key in PARAM_KEYS:
        value = getattr(preset.params, key)
        if value is not None and value != ():
            out[key] = list(value) if isinstance(value, tuple) else value
    if preset.model is not None:
        out["model"] = preset.model
    if preset.launch is not None and preset.launch_keys:
        out["launch"] = {key: _launch_text(key, getattr(preset.launch, key)) for key in preset.launch_keys}
    return out


def _launch_text(key: str, value: object) -> object:
    """None written as the word that loads back into it (TOML has no null)."""
    if value is not None:
        return value
    return {"n_threads": "auto", "dtype": "auto", "quantization": "none", "speculative": "off"}.get(key, value)


def presets_doc(presets: Mapping[str, Preset]) -> dict[str, object]:
    """The [presets] table of all of them."""
    return {name: preset_table(p) for name, p in presets.items()}


def show_presets(presets: Mapping[str, Preset]) -> dict[str, object]:
    """A JSON-ready view of the presets for Config.redacted() (they hold no secrets)."""
    return {name: {"name": name, **preset_table(p)} for name, p in presets.items()}
