"""A PEFT LoRA adapter folder on a transformers model: `LaunchOptions.lora_path` for the transformers engine, and the
base + adapter load that merging uses.

An adapter folder holds `adapter_config.json` and `adapter_model.safetensors` (what `PeftModel.save_pretrained`
writes). A pickle `adapter_model.bin` is refused for the reason the engine refuses pickle weights: unpickling can run
arbitrary code. Before any weights are read, the adapter's target modules are checked against the loaded model, so an
adapter trained on another architecture is refused with its base's name instead of a shape error from deep inside
torch.

peft is imported inside the functions that need it, never at module import.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from engines.adapters.transformers_load import describe
from engines.errors import BadModelFile, EngineUnavailable

TUNE_HINT = "pip install 'llm-tui[tune]'"
CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
MAX_CONFIG_BYTES = 1024 * 1024
"""An adapter_config.json is a couple of KiB; anything past this is not one."""
_PICKLES = ("adapter_model.bin", "adapter_model.pt", "adapter_model.pth")


def is_adapter_folder(path: Path) -> bool:
    """Whether `path` is a folder that claims to be a PEFT adapter (it has adapter_config.json)."""
    return path.is_dir() and (path / CONFIG_FILE).is_file()


def read_adapter_config(folder: Path) -> dict[str, Any]:
    """The adapter's config after checking the folder holds safetensors weights; BadModelFile says what is wrong."""
    if not folder.is_dir():
        raise BadModelFile(str(folder), "not a folder: a transformers LoRA adapter is a PEFT adapter folder")
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        raise BadModelFile(
            str(folder), f"no {CONFIG_FILE}: not a PEFT adapter folder (a .gguf LoRA is for the llama.cpp engine)"
        )
    if not (folder / WEIGHTS_FILE).is_file():
        pickles = [name for name in _PICKLES if (folder / name).is_file()]
        if pickles:
            raise BadModelFile(
                str(folder),
                f"the adapter's weights are a pickle ({pickles[0]}); loading a pickle can run arbitrary code, so "
                f"the transformers engine loads {WEIGHTS_FILE} only. Save the adapter with "
                "save_pretrained(folder, safe_serialization=True) in a trusted environment",
            )
        raise BadModelFile(str(folder), f"no {WEIGHTS_FILE}: the adapter folder has no weights")
    try:
        if config_path.stat().st_size > MAX_CONFIG_BYTES:
            raise BadModelFile(str(folder), f"{CONFIG_FILE} is over {MAX_CONFIG_BYTES // 1024} KiB: not an adapter")
        config = json.loads(config_path.read_bytes())
    except OSError as exc:
        raise BadModelFile(str(folder), f"cannot read {CONFIG_FILE}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise BadModelFile(str(folder), f"{CONFIG_FILE} is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise BadModelFile(str(folder), f"{CONFIG_FILE} is not a JSON object")
    peft_type = str(config.get("peft_type") or "").upper()
    if peft_type not in ("LORA", ""):
        raise BadModelFile(str(folder), f"a {peft_type} adapter: llm-tui loads LoRA adapters only")
    return config


def _targets(config: dict[str, Any]) -> list[str]:
    targets = config.get("target_modules")
    if isinstance(targets, str):  # peft also takes a regular expression or "all-linear"
        return []
    if isinstance(targets, list) and all(isinstance(t, str) for t in targets):
        return targets
    return []


def check_fits(model: Any, folder: Path, config: dict[str, Any]) -> None:
    """BadModelFile when the adapter's target modules are not in the model (an adapter for another base)."""
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = sorted(t for t in _targets(config) if t not in names)
    if missing:
        raise BadModelFile(str(folder), not_this_base(model, config, f"the model has no {', '.join(missing)} modules"))


def not_this_base(model: Any, config: dict[str, Any], detail: str) -> str:
    """The message for an adapter that does not fit the loaded model, naming the base it was trained on."""
    trained_on = config.get("base_model_name_or_path")
    model_config = getattr(model, "config", None)
    loaded = getattr(model_config, "_name_or_path", "") or "this model"
    arch = ", ".join(getattr(model_config, "architectures", None) or [type(model).__name__])
    text = f"the adapter does not fit {Path(str(loaded)).name} ({arch}): {detail}"
    if isinstance(trained_on, str) and trained_on:
        text += f"; it was trained on {trained_on}"
    return text


def require_peft() -> None:
    if importlib.util.find_spec("peft") is None:
        raise EngineUnavailable("transformers", "a LoRA adapter needs the Python package 'peft'", TUNE_HINT)


def apply_adapter(model: Any, folder: Path, *, merge: bool = True) -> Any:
    """`model` with the PEFT adapter in `folder` applied: merged into the weights (a plain transformers model, as
    fast as the base) when `merge`, else the PeftModel wrapper (for a quantized base, whose weights a merge would
    round). BadModelFile when the folder is not a usable adapter or does not fit the model; EngineUnavailable
    when peft is missing."""
    config = read_adapter_config(folder)
    require_peft()
    check_fits(model, folder, config)
    import peft

    try:
        wrapped = peft.PeftModel.from_pretrained(model, str(folder), is_trainable=False)
    except (RuntimeError, ValueError, KeyError) as exc:  # size mismatch, unknown modules, bad config
        raise BadModelFile(str(folder), not_this_base(model, config, _first_problem(exc))) from None
    except Exception as exc:
        raise BadModelFile(str(folder), f"peft cannot load the adapter: {describe(exc)}") from None
    check_loaded(wrapped, model, folder, config)
    wrapped.eval()
    return wrapped.merge_and_unload() if merge else wrapped


def _first_problem(exc: BaseException) -> str:
    """torch's "Error(s) in loading state_dict" says what is wrong on its following lines: the first of them."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    detail = next((line for line in lines if "size mismatch" in line), None)
    return detail[:400] if detail else describe(exc)


def check_loaded(wrapped: Any, model: Any, folder: Path, config: dict[str, Any]) -> None:
    """BadModelFile when none of the adapter file's tensors found a place in the model (peft loads with
    strict=False, so an adapter for another network would otherwise load as a silent no-op)."""
    from safetensors import safe_open

    try:
        with safe_open(str(folder / WEIGHTS_FILE), framework="pt") as handle:
            keys = list(handle.keys())
    except Exception as exc:
        raise BadModelFile(str(folder), f"{WEIGHTS_FILE} is not a readable safetensors file: {describe(exc)}") from None
    if not keys:
        raise BadModelFile(str(folder), f"{WEIGHTS_FILE} holds no tensors")
    own = {name.replace(".default.", ".") for name, _ in wrapped.named_parameters()}
    lora = [k for k in keys if ".lora_" in k]
    stray = [k for k in lora if k not in own]
    if not lora or stray:
        detail = (
            f"{len(stray)} of its {len(lora)} LoRA tensors have no place in it (e.g. {stray[0]})"
            if stray
            else "its weights file holds no LoRA tensors"
        )
        raise BadModelFile(str(folder), not_this_base(model, config, detail))
