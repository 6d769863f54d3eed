"""Where a fine-tuning run keeps its files, and the run.json that tells the training child what to do.

Layout of `config.data_dir / "tune" / NAME`::

    run.json             what to train (RunFile): base model, data, options, the dirs the child needs
    events.jsonl         every event the child sent, one JSON object a line (appended, also across resumes)
    child.log            the child's stderr (tracebacks, library warnings)
    child.pid            the live child's pid and start time (so `reconcile` can tell a dead run from a live one)
    checkpoints/step-N/  a resumable checkpoint (see engines.tune.checkpoint)
    adapter/             the final PEFT adapter
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engines.atomic import atomic_write
from engines.config.load import Config
from engines.errors import BadRequest
from engines.tune.types import TuneOptions

RUN_JSON = "run.json"
EVENTS = "events.jsonl"
CHILD_LOG = "child.log"
CHILD_PID = "child.pid"
CHECKPOINTS = "checkpoints"
ADAPTER = "adapter"
_MAX_RUN_JSON = 1 << 20
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def run_dir(config: Config, name: str) -> Path:
    """The folder of run `name` (not created here)."""
    return config.data_dir / "tune" / check_name(name)


def check_name(name: str) -> str:
    """`name` when it can be a folder and a model name (letters, digits, `.`, `_`, `-`; 64 at most); BadRequest."""
    if not _NAME.match(name) or name in (".", ".."):
        raise BadRequest(
            f"run name {name!r}: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


@dataclass(frozen=True, slots=True)
class RunFile:
    """run.json: everything the child needs, so it never reads the user's configuration itself."""

    name: str
    base: str
    """What the user typed (catalog id, alias or path)."""
    base_path: Path
    base_format: str
    """"gguf" (converted once into `cache_dir`) or "hf" (a safetensors folder)."""
    data_path: Path
    data_sha256: str
    options: TuneOptions
    cache_dir: Path
    """Where GGUF conversions live (the transformers engine's cache)."""
    models_dir: Path
    """Where a merged model goes (options.merge)."""
    chat_template: str | None = None
    """The catalog's template for a GGUF that carries none."""
    n_threads: int | None = None
    """CPU threads for torch (the configuration's n_threads); None: torch's default."""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "base": self.base,
            "base_path": str(self.base_path),
            "base_format": self.base_format,
            "data_path": str(self.data_path),
            "data_sha256": self.data_sha256,
            "options": self.options.to_json(),
            "cache_dir": str(self.cache_dir),
            "models_dir": str(self.models_dir),
            "chat_template": self.chat_template,
            "n_threads": self.n_threads,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunFile:
        return cls(
            name=str(data["name"]),
            base=str(data["base"]),
            base_path=Path(data["base_path"]),
            base_format=str(data["base_format"]),
            data_path=Path(data["data_path"]),
            data_sha256=str(data.get("data_sha256") or ""),
            options=TuneOptions.from_json(dict(data["options"])),
            cache_dir=Path(data["cache_dir"]),
            models_dir=Path(data["models_dir"]),
            chat_template=data.get("chat_template"),
            n_threads=int(data["n_threads"]) if data.get("n_threads") else None,
        )


def write_run_file(folder: Path, run: RunFile) -> None:
    atomic_write(folder / RUN_JSON, json.dumps(run.to_json(), indent=1).encode(), private=False)


def read_run_file(folder: Path) -> RunFile:
    """The run.json of `folder`; BadRequest when it is missing, too large or malformed."""
    path = folder / RUN_JSON
    try:
        with open(path, "rb") as f:
            raw = f.read(_MAX_RUN_JSON + 1)
    except OSError as exc:
        raise BadRequest(f"{path}: cannot read the run file: {exc.strerror or exc}") from None
    if len(raw) > _MAX_RUN_JSON:
        raise BadRequest(f"{path}: larger than {_MAX_RUN_JSON} bytes")
    try:
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise TypeError("not an object")
        return RunFile.from_json(data)
    except (ValueError, TypeError, KeyError) as exc:
        raise BadRequest(f"{path}: malformed run file: {exc}") from None
