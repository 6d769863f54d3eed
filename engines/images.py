"""Images attached to a chat message: read, checked for type and size, with clear errors."""

from __future__ import annotations

from pathlib import Path

from engines.errors import BadRequest

MAX_IMAGE_BYTES = 8 * 1024 * 1024
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def image_mime(data: bytes) -> str | None:
    """The image type of `data` from its first bytes (PNG, JPEG, GIF, WebP), or None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return next((mime for magic, mime in _MAGIC if data.startswith(magic)), None)


def read_image(path: Path) -> bytes:
    """The bytes of an image file to attach; BadRequest naming the file when it is missing, too big or not an image."""
    try:
        size = path.stat().st_size
        if size > MAX_IMAGE_BYTES:
            raise BadRequest(f"{path} is {size / 1e6:.1f} MB; images are limited to {MAX_IMAGE_BYTES // 2**20} MB")
        data = path.read_bytes()
    except FileNotFoundError:
        raise BadRequest(f"no such image file: {path}") from None
    except IsADirectoryError:
        raise BadRequest(f"{path} is a folder, not an image") from None
    except OSError as exc:
        raise BadRequest(f"cannot read {path}: {exc.strerror}") from None
    if image_mime(data) is None:
        raise BadRequest(f"{path} is not a PNG, JPEG, GIF or WebP image")
    return data
