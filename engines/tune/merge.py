"""Merge a LoRA adapter into its base model: a plain safetensors model folder any transformers loader reads, with the
tokenizer and `llm-tui-tune.json` (where it came from, see engines.tune.provenance).

The folder is written whole into a hidden temporary folder beside `out_dir` and renamed into place, so a crash or a
full disk never leaves a half model where the catalog would list it. torch, transformers and peft are imported inside
the function.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from engines.adapters.transformers_adapter import apply_adapter, read_adapter_config, require_peft
from engines.adapters.transformers_load import check_folder, describe, require_packages
from engines.errors import BadModelFile, BadRequest, InsufficientMemory, LlmTuiError
from engines.tune.provenance import PROVENANCE_FILE, provenance_from

log = logging.getLogger(__name__)


def merge_adapter(
    base_folder: Path, adapter_dir: Path, out_dir: Path, provenance: dict[str, Any], *, chat_template: str | None = None
) -> Path:
    """Load the base (in the dtype it was saved in, on the CPU) with the adapter, merge the adapter into the
    weights, and save the result with the base's tokenizer and the provenance as `out_dir`; returns `out_dir`.

    `chat_template` (the template the run trained with) is saved with the tokenizer when the base's tokenizer has
    none, e.g. a GGUF's conversion, so the merged model chats in the format it learned without a launch option.

    `provenance` holds "run", "base" and "data_sha256" ("adapter" defaults to `adapter_dir`, "created" to now).
    BadRequest when `out_dir` exists or the provenance is incomplete; BadModelFile when the base or adapter is not
    usable; EngineUnavailable when torch, transformers or peft is missing."""
    out_dir = Path(out_dir)
    if out_dir.exists() or out_dir.is_symlink():
        raise BadRequest(f"{out_dir} already exists; choose another name or delete it first")
    try:
        prov = provenance_from({"adapter": str(adapter_dir), **provenance})
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    require_packages()
    require_peft()
    if not base_folder.is_dir():
        raise BadModelFile(str(base_folder), "the base model folder does not exist")
    check_folder(base_folder)
    read_adapter_config(adapter_dir)  # a bad adapter fails before the base's weights load

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    temp = out_dir.parent / f".{out_dir.name}.merging-{os.getpid()}"
    shutil.rmtree(temp, ignore_errors=True)
    try:
        _write_merged(base_folder, adapter_dir, temp, chat_template)
        data = json.dumps(prov.to_json(), indent=2) + "\n"
        (temp / PROVENANCE_FILE).write_text(data, encoding="utf-8")
        if out_dir.exists():
            raise BadRequest(f"{out_dir} appeared while merging; the merged model was not kept")
        os.replace(temp, out_dir)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    log.info("merged %s into %s as %s", adapter_dir, base_folder, out_dir)
    return out_dir


def _write_merged(base_folder: Path, adapter_dir: Path, temp: Path, chat_template: str | None) -> None:
    import torch
    import transformers

    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(
            str(base_folder), local_files_only=True, trust_remote_code=False
        )
        model = transformers.AutoModelForCausalLM.from_pretrained(
            str(base_folder), dtype="auto", use_safetensors=True, trust_remote_code=False, local_files_only=True
        )
    except MemoryError as exc:
        raise InsufficientMemory(f"not enough memory to load {base_folder.name} for merging: {exc}") from None
    except Exception as exc:
        raise BadModelFile(str(base_folder), f"transformers cannot load it: {describe(exc)}") from None
    if chat_template and not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = chat_template
    merged = apply_adapter(model, adapter_dir, merge=True)
    try:
        with torch.no_grad():
            merged.save_pretrained(str(temp))  # safetensors: the only format transformers 5 writes
        tokenizer.save_pretrained(str(temp))
    except OSError as exc:
        raise LlmTuiError(f"cannot write the merged model to {temp.parent}: {exc.strerror or exc}") from None
