"""Named presets: a system prompt and sampling parameters (and optionally a model and launch options) chosen by
name in the chat, the compare screen, `llm-tui chat --preset` and the API's `"model"`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace

from engines.types import ChatMessage, LaunchOptions, Params


@dataclass(frozen=True, slots=True)
class Preset:
    """One `[presets.NAME]` table of config.toml."""

    name: str
    system: str | None = None
    """The system prompt it puts first (replacing the conversation's own); "" removes theirs; None: leave it."""
    params: Params = field(default_factory=Params)
    """Sampling parameters; a None field leaves the request's own value."""
    model: str | None = None
    """A model reference (catalog id, alias, path...) to use; None: the one chosen."""
    launch: LaunchOptions | None = None
    """How to load `model` when it is not running yet; None: the usual defaults."""
    description: str = ""
    launch_keys: tuple[str, ...] = ()
    """The `launch` fields the preset sets ([presets.NAME.launch]); the others stay as the caller's options have
    them (preset_launch), since LaunchOptions' own defaults are not the configuration's."""


def preset_params(preset: Preset, params: Params) -> Params:
    """`params` with every value the preset sets put over it (stop sequences: the preset's when it has any)."""
    changes = {
        f.name: getattr(preset.params, f.name)
        for f in fields(Params)
        if f.name not in ("stop", "tools") and getattr(preset.params, f.name) not in (None, f.default)
    }
    if preset.params.stop:
        changes["stop"] = preset.params.stop
    return replace(params, **changes)


def preset_messages(preset: Preset, messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    """`messages` with the preset's system prompt first (in place of theirs), when it has one."""
    if preset.system is None:
        return list(messages)
    rest = [m for m in messages if m.role != "system"]
    return [ChatMessage("system", preset.system), *rest] if preset.system else rest


def preset_launch(preset: Preset, options: LaunchOptions) -> LaunchOptions:
    """`options` with the launch fields the preset sets put over them.

    A preset that offloads layers (n_gpu_layers) without naming a device gets device "auto", as the
    configuration's own n_gpu_layers does (engines.launch.default_options).
    """
    if preset.launch is None or not preset.launch_keys:
        return options
    changes = {key: getattr(preset.launch, key) for key in preset.launch_keys}
    if "n_gpu_layers" in changes and "device" not in changes:
        changes["device"] = "cpu" if changes["n_gpu_layers"] == 0 else "auto"
    return replace(options, **changes)


def preset_summary(preset: Preset) -> str:
    """The preset's key values in one short line: `temperature 0.2 · max_tokens 512 · system prompt`."""
    parts = [f"{key} {value}" for key, value in _set_params(preset.params).items()]
    if preset.system:
        parts.append("system prompt")
    elif preset.system == "":
        parts.append("no system prompt")
    return " · ".join(parts)


def _set_params(params: Params) -> Mapping[str, object]:
    out: dict[str, object] = {}
    for f in fields(Params):
        value = getattr(params, f.name)
        if f.name in ("json_schema", "tools") or value in (None, f.default):
            continue
        out[f.name] = ", ".join(repr(s) for s in value) if f.name == "stop" else value
    return out


def unknown_preset(name: str, presets: Mapping[str, Preset]) -> str:
    """The one line that says a preset name is unknown, with the names that are known."""
    if not presets:
        return f"no preset named {name!r}: the config has none (add a [presets.NAME] table to config.toml)"
    return f"no preset named {name!r} (known: {', '.join(sorted(presets))})"
