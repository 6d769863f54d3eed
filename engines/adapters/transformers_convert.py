"""GGUF → Hugging Face folder conversion for the transformers engine, done once per file and cached.

transformers can read a GGUF (`from_pretrained(..., gguf_file=...)`), but it parses the whole
metadata (a 262k-token vocabulary for Gemma) in pure Python and dequantizes every tensor: about a
minute for a 270M model on two cores. So the first load converts the file and saves the model
(float32 safetensors) and its tokenizer as a plain Hugging Face folder; every later load reads that.

Layout under the cache dir (default `platformdirs.user_cache_path("llm-tui") / "transformers"`)::

    hashes.json                  {"/abs/file.gguf": {"size": ..., "mtime_ns": ..., "sha256": ...}}
    <sha256 of the GGUF>/        one converted model: config.json, generation_config.json,
                                 model.safetensors, tokenizer.json, tokenizer_config.json and
                                 llm-tui-complete.json (the completion marker, written last)
    .<sha256>.<pid>.<hex>.tmp/   a conversion in progress

A conversion is written into its temporary folder and renamed into place in one step, so a killed
conversion never leaves a half cache: what it leaves is a `.tmp` folder (removed by the next
conversion once its process is gone) and a folder without the marker is ignored and redone.
torch and transformers are imported only inside the functions that use them.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import json
import logging
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from engines.atomic import atomic_write
from engines.errors import BadModelFile, ModelNotFound
from engines.templates.chat import NO_TEMPLATE

log = logging.getLogger(__name__)

Progress = Callable[[str], None]

MARKER = "llm-tui-complete.json"
"""Written inside a converted folder last; a folder without it is not trusted."""
HASHES = "hashes.json"
_BLOCK = 1 << 20  # hash in 1 MiB blocks
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def default_cache_dir() -> Path:
    """Where converted GGUFs live unless the engine is given a `cache_dir`."""
    import platformdirs

    return platformdirs.user_cache_path("llm-tui") / "transformers"


def file_sha256(path: Path, cache_dir: Path) -> str:
    """SHA-256 of `path`, remembered in `cache_dir/hashes.json` by (path, size, mtime) so it is computed once."""
    real = os.path.realpath(path)
    st = os.stat(real)
    index_path = cache_dir / HASHES
    index = _read_json(index_path)
    known = index.get(real)
    if isinstance(known, dict) and known.get("size") == st.st_size and known.get("mtime_ns") == st.st_mtime_ns:
        sha = known.get("sha256")
        if isinstance(sha, str) and len(sha) == 64:
            return sha
    digest = hashlib.sha256()
    with open(real, "rb") as f:
        while block := f.read(_BLOCK):
            digest.update(block)
    sha = digest.hexdigest()
    index = _read_json(index_path)  # re-read: another process may have added entries meanwhile
    index[real] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha}
    with contextlib.suppress(OSError):  # a read-only cache only costs a re-hash next time
        atomic_write(index_path, json.dumps(index, indent=1, sort_keys=True).encode(), private=False)
    return sha


def is_complete(folder: Path) -> bool:
    """True when `folder` is a finished conversion (its marker is there and names a config and weights)."""
    return (folder / MARKER).is_file() and (folder / "config.json").is_file()


def ensure_converted(gguf: Path, cache_dir: Path, progress: Progress | None = None) -> Path:
    """The Hugging Face folder converted from `gguf`, converting it first when the cache lacks it.

    Raises BadModelFile when transformers cannot convert the file (an architecture it does not know).
    """
    say = progress or (lambda _msg: None)
    cache_dir.mkdir(parents=True, exist_ok=True)
    say(f"hashing {gguf.name}")
    sha = file_sha256(gguf, cache_dir)
    final = cache_dir / sha
    with _lock_for(sha):
        if is_complete(final):
            return final
        _remove_stale_temps(cache_dir, sha)
        if final.exists():  # left by something else than a finished conversion: not trusted, redone
            log.warning("ignoring incomplete transformers cache %s; converting again", final)
            shutil.rmtree(final, ignore_errors=True)
        tmp = cache_dir / f".{sha}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        tmp.mkdir()
        try:
            say(f"converting {gguf.name} for transformers (once; later loads use the cache)")
            started = time.perf_counter()
            convert_gguf(gguf, tmp)
            marker = {
                "source": os.path.realpath(gguf),
                "sha256": sha,
                "transformers": _version("transformers"),
                "converted_s": round(time.perf_counter() - started, 1),
            }
            (tmp / MARKER).write_text(json.dumps(marker, indent=1) + "\n")
            try:
                os.rename(tmp, final)
            except OSError:
                if not is_complete(final):  # not a finished copy from a concurrent conversion: a real failure
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
            say(f"converted {gguf.name} in {marker['converted_s']} s → {final}")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final


def converted_folder(gguf: Path, cache_dir: Path | None, progress: Progress, *, has_template: bool) -> Path:
    """The cached Hugging Face folder for a GGUF, converting it first if needed (`cache_dir` None: the default).
    The header is checked, and a missing chat template refused (`has_template`: one is given apart from the file),
    before the slow conversion ever sees the file."""
    if not gguf.is_file():
        raise ModelNotFound(f"model file not found: {gguf}")
    from engines.catalog.gguf_header import read_gguf_header

    header = read_gguf_header(gguf)  # BadModelFile for a malformed file
    if not (header.chat_template or has_template):
        raise BadModelFile(str(gguf), NO_TEMPLATE)
    return ensure_converted(gguf, cache_dir if cache_dir is not None else default_cache_dir(), progress)


def convert_gguf(gguf: Path, out_dir: Path) -> None:
    """Load `gguf` with transformers (weights dequantized to float32) and save model + tokenizer into `out_dir`."""
    import torch
    import transformers

    folder, name = str(gguf.parent), gguf.name
    # transformers' GGUF reader draws a plain tqdm bar that no setting turns off; it would write over the TUI,
    # so stderr is captured while it runs (process-wide, for this one-time step) and logged at debug level.
    captured = io.StringIO()
    with quiet_progress_bars(), contextlib.redirect_stderr(captured):
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
            model: Any = transformers.AutoModelForCausalLM.from_pretrained(
                folder,
                gguf_file=name,
                dtype=torch.float32,
                # Dequantize every tensor: a plain model, which save_pretrained can write (packed GGUF blocks cannot).
                quantization_config=transformers.GgufConfig(dequantize=True),
                local_files_only=True,
                trust_remote_code=False,
            )
        except (ValueError, KeyError, NotImplementedError, RuntimeError, TypeError) as exc:
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise BadModelFile(str(gguf), f"transformers cannot convert this GGUF: {first_line}") from None
        finally:
            if captured.getvalue().strip():
                log.debug("transformers said while converting %s:\n%s", gguf.name, captured.getvalue()[-4000:])
        model.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
    del model


@contextlib.contextmanager
def quiet_progress_bars() -> Iterator[None]:
    """Turn transformers' tqdm bars off for the block (they would write over the TUI), then restore them."""
    hf_logging: Any = importlib.import_module("transformers.utils.logging")

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _lock_for(sha: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(sha, threading.Lock())


def _remove_stale_temps(cache_dir: Path, sha: str) -> None:
    """Delete temporary folders of conversions of `sha` whose process is gone (killed mid-way)."""
    for tmp in cache_dir.glob(f".{sha}.*.tmp"):
        parts = tmp.name.split(".")
        pid = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else -1
        if pid == os.getpid() or not _alive(pid):
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"
