"""`llm-tui chat --preset NAME`: which model and prompt the command line means, and the preset's options with the
flags given on top."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path

from engines.config.load import Config
from engines.launch import default_options
from engines.presets import Preset, preset_launch, preset_params, unknown_preset
from engines.types import LaunchOptions, Params


class ChatUsage(Exception):
    """The command line cannot be run as given (exit status 2, as for argparse's own errors)."""


@dataclass(frozen=True, slots=True)
class ChatTarget:
    """What to run: the model reference, the prompt (None: stdin or the line chat), the preset chosen."""

    model: str
    prompt: str | None
    preset: Preset | None = None


def chat_target(args: argparse.Namespace, config: Config) -> ChatTarget:
    """The model, prompt and preset of `llm-tui chat [MODEL] [PROMPT] [--preset NAME]`; ChatUsage when the preset
    is unknown or no model is named.

    With a preset that names a model, MODEL may be left out; a lone positional is then the model only when it
    names one (an alias, a catalog id, `ollama:`/`remote:`, a file or folder, or any word with --endpoint),
    else it is the prompt.
    """
    preset: Preset | None = None
    if args.preset is not None:
        preset = config.presets.get(args.preset)
        if preset is None:
            raise ChatUsage(unknown_preset(args.preset, config.presets))
    model, prompt = args.model, args.prompt
    if preset is not None and preset.model is not None:
        if model is None:
            return ChatTarget(preset.model, None, preset)
        if prompt is None and not names_model(model, config, endpoint=bool(args.endpoint)):
            return ChatTarget(preset.model, model, preset)
    if model is None:
        raise ChatUsage("give MODEL, or --preset NAME of a preset that names a model")
    return ChatTarget(model, prompt, preset)


def names_model(text: str, config: Config, *, endpoint: bool = False) -> bool:
    """Whether `text` reads as a model reference rather than a prompt (nothing is loaded or resolved)."""
    from engines.catalog.builtin import find_entry
    from engines.catalog.resolve import follow_aliases

    ref = text.strip()
    if not ref:
        return False
    if endpoint:
        return not any(c.isspace() for c in ref)  # a server's model name: a prompt has spaces
    if ref in config.aliases or ref.lower().startswith(("ollama:", "remote:")) or ref.endswith(".gguf"):
        return True
    try:
        if find_entry(follow_aliases(ref, config.aliases)) is not None:
            return True
        return Path(ref).expanduser().exists()
    except (OSError, ValueError):
        return False


def base_params(config: Config, preset: Preset | None) -> Params:
    """The config's [defaults] with the preset's parameters over them: what the flags then override."""
    return config.defaults if preset is None else preset_params(preset, config.defaults)


def chat_options(args: argparse.Namespace, config: Config, preset: Preset | None, seed: int | None) -> LaunchOptions:
    """Launch options: the config's, the preset's [launch] over them, then the flags given (--n-ctx, --threads,
    --n-gpu-layers) over both."""
    options = default_options(config, seed=seed)
    if preset is None:
        return options
    options = preset_launch(preset, options)
    if args.n_ctx is not None:
        options = replace(options, n_ctx=args.n_ctx)
    if args.threads is not None:
        options = replace(options, n_threads=args.threads)
    if args.n_gpu_layers is not None:
        device = options.device if "device" in preset.launch_keys else "cpu" if args.n_gpu_layers == 0 else "auto"
        options = replace(options, n_gpu_layers=args.n_gpu_layers, device=device)
    return options
