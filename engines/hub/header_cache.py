"""The facts read from remote headers, kept in the cache dir: a commit's files never change, so an entry never
goes stale. Keyed by endpoint, token (hashed: facts read with a token are not shown to a run without it), repo,
commit and file; written atomically, read back within a size bound, and anything unexpected is a miss."""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any

from engines.atomic import atomic_write
from engines.errors import LlmTuiError

VERSION = 1
MAX_ENTRY = 1 << 20
"""An entry holds a dozen numbers: a bigger file is not ours."""
FIELDS = (
    "params",
    "quantization",
    "context_length",
    "architecture",
    "layers",
    "heads",
    "kv_heads",
    "embedding_length",
    "head_dim",
    "weights_bytes",
    "has_chat_template",
    "dtype",
    "error",
)
"""The header facts a remote fit keeps (LocalModel's fields)."""


def entry_path(cache_dir: Path, endpoint: str, token: str | None, repo: str, commit: str, name: str) -> Path:
    """Where the facts of model `name` in `repo` at `commit` are kept."""
    secret = hashlib.sha256(token.encode()).hexdigest() if token else None
    key = json.dumps([VERSION, endpoint.rstrip("/"), secret, repo, commit, name])
    return cache_dir / "hub-headers" / f"{hashlib.sha256(key.encode()).hexdigest()}.json"


def read_entry(path: Path) -> tuple[dict[str, Any], int, int] | None:
    """(facts, header bytes read, requests) as first read, or None."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_ENTRY + 1)
        if len(raw) > MAX_ENTRY:
            return None
        doc = json.loads(raw)
        fields = doc["fields"]
        if not isinstance(fields, dict) or set(fields) - set(FIELDS):
            return None
        return fields, int(doc["bytes_read"]), int(doc["requests"])
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None


def write_entry(path: Path, what: dict[str, str], fields: dict[str, Any], bytes_read: int, requests: int) -> None:
    """Keep the facts (`what` names the repo, commit and file for a person reading the file)."""
    doc: dict[str, Any] = {**what, "fields": fields, "bytes_read": bytes_read, "requests": requests}
    with contextlib.suppress(OSError, LlmTuiError):  # a cache that cannot be written only costs a second read
        atomic_write(path, json.dumps(doc).encode(), private=False)
