"""Safe local names for downloaded files: paths from servers stay inside their folder."""

from __future__ import annotations

import hashlib
from pathlib import Path, PurePosixPath, PureWindowsPath

from engines.errors import DownloadError


class UnsafeFileName(DownloadError):
    """A file name from a server would escape its folder or is not a plain relative path."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"refusing file name {name!r} from the server: {reason}")


def safe_join(root: Path, relative: str) -> Path:
    """Join a server-supplied relative path to `root`, refusing anything that resolves outside it."""
    if not relative or "\x00" in relative:
        raise UnsafeFileName(relative, "empty or contains a NUL byte")
    if "\\" in relative:
        raise UnsafeFileName(relative, "backslashes are not allowed")
    posix = PurePosixPath(relative)
    if posix.is_absolute() or PureWindowsPath(relative).drive:
        raise UnsafeFileName(relative, "absolute paths are not allowed")
    if any(part in ("..", "") for part in relative.split("/")) or relative.split("/")[-1] == ".":
        raise UnsafeFileName(relative, "'..', '.' at the end and empty segments are not allowed")
    base = root.resolve()
    joined = (base / posix).resolve()
    if joined == base or not joined.is_relative_to(base):
        raise UnsafeFileName(relative, f"it resolves outside {root}")
    return joined


def part_path(target: Path, url: str) -> Path:
    """The `.part` file beside `target` for one download task: `<name>.<8 hex of the url's sha256>.part`."""
    tag = hashlib.sha256(url.encode("utf-8")).hexdigest()[:8]
    return target.with_name(f"{target.name}.{tag}.part")
