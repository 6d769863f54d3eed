"""What the transformers engine checks before from_pretrained: device, dtype and quantization against this
machine, the packages, and a model folder's weights (safetensors only: pickle weights can run code)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from engines.errors import BadModelFile, BadRequest, EngineUnavailable, InsufficientMemory
from engines.types import LaunchOptions

INSTALL_HINT = "pip install 'llm-tui[transformers]'"
_DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
}
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


class LoadPlan:
    """Validated device / dtype / quantization choices for from_pretrained."""

    def __init__(self, device_map: Any, dtype: str, quantization: str | None) -> None:
        self.device_map = device_map
        self.dtype = dtype
        self.quantization = quantization

    def quantization_config(self, transformers: Any, torch: Any) -> Any:
        if self.quantization is None:
            return None
        compute = getattr(torch, self.dtype)
        if self.quantization == "4bit":
            return transformers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=compute)
        return transformers.BitsAndBytesConfig(load_in_8bit=True)


def load_plan(options: LaunchOptions) -> LoadPlan:
    """Check device, dtype and quantization against this machine; BadRequest / EngineUnavailable say why not."""
    import torch

    device = (options.device or "cpu").strip().lower()
    cuda_ok = bool(torch.cuda.is_available())
    no_cuda = f"this machine has no usable CUDA device (torch {torch.__version__})"
    device_map: Any
    if device == "cpu":
        device_map, on_cuda = None, False
    elif device == "auto":
        device_map, on_cuda = "auto", cuda_ok
    elif device == "cuda" or device.startswith("cuda:"):
        index_text = device.partition(":")[2] or "0"
        if not index_text.isdigit():
            raise BadRequest(f"device {options.device!r}: expected 'cuda' or 'cuda:N'")
        if not cuda_ok:
            raise BadRequest(f"device {options.device!r}: {no_cuda}; use device 'cpu'")
        index = int(index_text)
        if index >= torch.cuda.device_count():
            raise BadRequest(f"device {options.device!r}: only {torch.cuda.device_count()} CUDA device(s)")
        device_map, on_cuda = {"": f"cuda:{index}"}, True
    else:
        raise BadRequest(f"device {options.device!r}: the transformers engine takes 'cpu', 'cuda', 'cuda:N' or 'auto'")

    if options.dtype is None or options.dtype == "auto":
        dtype = ("bfloat16" if torch.cuda.is_bf16_supported() else "float16") if on_cuda else "float32"
    else:
        try:
            dtype = _DTYPES[options.dtype.strip().lower()]
        except KeyError:
            raise BadRequest(f"dtype {options.dtype!r}: use float32, bfloat16 or float16") from None

    quant = options.quantization
    if quant is not None:
        quant = quant.strip().lower()
        if quant not in ("4bit", "8bit"):
            raise BadRequest(f"quantization {options.quantization!r}: the transformers engine takes '4bit' or '8bit'")
        if not on_cuda:
            raise BadRequest(
                f"{quant} quantization needs a CUDA GPU and the 'bitsandbytes' package; {no_cuda}"
                if not cuda_ok
                else f"{quant} quantization needs a CUDA device: launch with device 'cuda' or 'auto', not 'cpu'"
            )
        if importlib.util.find_spec("bitsandbytes") is None:
            raise EngineUnavailable(
                "transformers", f"{quant} quantization needs the 'bitsandbytes' package", "pip install bitsandbytes"
            )
    return LoadPlan(device_map, dtype, quant)


def require_packages() -> None:
    for module in ("torch", "transformers"):
        if importlib.util.find_spec(module) is None:
            raise EngineUnavailable("transformers", f"Python package {module!r} is not installed", INSTALL_HINT)


def check_folder(folder: Path) -> None:
    """A Hugging Face model folder with safetensors weights; BadModelFile otherwise (pickle weights are refused)."""
    if not (folder / "config.json").is_file():
        raise BadModelFile(str(folder), "no config.json: not a Hugging Face model folder")
    files = [p.name for p in folder.iterdir() if p.is_file()]
    if any(n.endswith(".safetensors") or n.endswith(".safetensors.index.json") for n in files):
        return
    pickles = sorted(n for n in files if n.endswith(_PICKLE_SUFFIXES) or n.endswith(".bin.index.json"))
    if pickles:
        raise BadModelFile(
            str(folder),
            f"only pickle weights ({', '.join(pickles[:3])}); loading a pickle can run arbitrary code, so the "
            "transformers engine loads safetensors only. Convert the weights to .safetensors (e.g. "
            "model.save_pretrained(folder, safe_serialization=True) in a trusted environment) or use the "
            "repository's safetensors files",
        )
    raise BadModelFile(str(folder), "no weights: the folder has no .safetensors file")


def load_weights(model_class: Any, folder: Path, plan: LoadPlan, shown: Path) -> Any:
    """`model_class.from_pretrained(folder)` the one safe way (safetensors only, local files only, no remote code)
    with the plan's dtype, device map and quantization; memory and load errors named for `shown`."""
    import torch
    import transformers

    try:
        return model_class.from_pretrained(
            str(folder),
            dtype=getattr(torch, plan.dtype),
            device_map=plan.device_map,
            quantization_config=plan.quantization_config(transformers, torch),
            use_safetensors=True,
            trust_remote_code=False,
            local_files_only=True,
        )
    except (torch.cuda.OutOfMemoryError, MemoryError) as exc:
        raise InsufficientMemory(f"not enough memory to load {shown.name}: {exc}") from None
    except Exception as exc:
        raise BadModelFile(str(shown), load_failure(folder, exc)) from None


def load_failure(folder: Path, exc: BaseException) -> str:
    text = f"transformers cannot load it: {describe(exc)}"
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return text
    if isinstance(config, dict) and "auto_map" in config:
        text += " (the model ships its own Python code, which llm-tui never runs: trust_remote_code is always False)"
    return text


def describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
