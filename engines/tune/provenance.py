"""Where a merged model came from: `llm-tui-tune.json` beside its weights names the tuning run, its base model, the
training data's sha256 and the adapter it was merged from. The catalog shows such a folder as "tuned: run NAME from
BASE"."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROVENANCE_FILE = "llm-tui-tune.json"
MAX_PROVENANCE_BYTES = 64 * 1024
"""A provenance file is a few hundred bytes; a larger one is not ours and is ignored."""


@dataclass(frozen=True, slots=True)
class Provenance:
    """What `llm-tui-tune.json` says about a merged model folder."""

    run: str
    """The tuning run's name."""
    base: str
    """The base model's reference (catalog id, alias or path) as the run named it."""
    data_sha256: str
    adapter: str
    """The adapter folder the weights were merged from."""
    created: float | None = None
    """Unix time of the merge."""

    @property
    def origin(self) -> str:
        """One line for the catalog."""
        return f"tuned: run {self.run} from {self.base}"

    def to_json(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "base": self.base,
            "data_sha256": self.data_sha256,
            "adapter": self.adapter,
            "created": self.created,
        }


def provenance_from(values: dict[str, Any]) -> Provenance:
    """A Provenance from the fields a caller gives `merge_adapter` ("created" filled with now when absent);
    ValueError names a missing or mistyped field."""
    text: dict[str, str] = {}
    for key in ("run", "base", "data_sha256", "adapter"):
        value = values.get(key)
        if isinstance(value, Path):
            value = str(value)
        if not isinstance(value, str) or not value:
            raise ValueError(f"provenance needs {key!r} as text, got {value!r}")
        text[key] = value
    created = values.get("created")
    if created is not None and (isinstance(created, bool) or not isinstance(created, (int, float))):
        raise ValueError(f"provenance 'created' must be a Unix time, got {created!r}")
    return Provenance(**text, created=float(created) if created is not None else time.time())


def read_provenance(folder: Path) -> Provenance | None:
    """The provenance of a model folder; None when it has none or the file is unreadable, too large or not ours
    (never raises: a broken file must not hide the model from the catalog)."""
    path = folder / PROVENANCE_FILE
    try:
        if not path.is_file() or path.stat().st_size > MAX_PROVENANCE_BYTES:
            return None
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    try:
        prov = provenance_from(data)
    except ValueError:
        return None
    return prov if data.get("created") is not None else Provenance(prov.run, prov.base, prov.data_sha256, prov.adapter)


def origin_of(folder: Path) -> str | None:
    """The catalog's "tuned: run NAME from BASE" line for a folder, or None."""
    prov = read_provenance(folder)
    return prov.origin if prov else None
