"""Checking a structured reply against its schema, and reading images to attach."""

from __future__ import annotations

from pathlib import Path

import pytest

from engines.errors import BadRequest
from engines.images import MAX_IMAGE_BYTES, image_mime, read_image
from engines.structured.check import ReplyNotValid, check_reply
from engines.types import Params

SCHEMA = {
    "type": "object",
    "properties": {"items": {"type": "array", "items": {"type": "integer"}}},
    "required": ["items"],
}


def test_a_reply_that_follows_the_schema_is_parsed() -> None:
    assert check_reply(' {"items": [1, 2]} ', SCHEMA) == {"items": [1, 2]}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"items": [1, "two"]}', "at items/1: 'two' is not of type 'integer'"),
        ("{}", "at the top level: 'items' is a required property"),
        ('{"items": [1', "the reply is not JSON"),
    ],
)
def test_what_is_wrong_is_named(text: str, message: str) -> None:
    with pytest.raises(ReplyNotValid, match=message):
        check_reply(text, SCHEMA)


def test_params_refuse_a_schema_that_is_not_a_json_object() -> None:
    Params(json_schema='{"type": "object"}').validate()
    for bad in ("not json", "[1]"):
        with pytest.raises(BadRequest, match="JSON schema"):
            Params(json_schema=bad).validate()


@pytest.mark.parametrize(
    ("head", "mime"),
    [
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"\xff\xd8\xff\xe0", "image/jpeg"),
        (b"GIF89a", "image/gif"),
        (b"RIFF\0\0\0\0WEBPVP8 ", "image/webp"),
        (b"%PDF-1.7", None),
    ],
)
def test_image_types_come_from_their_bytes(head: bytes, mime: str | None) -> None:
    assert image_mime(head + b"\0" * 16) == mime


def test_read_image_checks_size_and_type(tmp_path: Path) -> None:
    png = tmp_path / "a.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    assert read_image(png).startswith(b"\x89PNG")
    big = tmp_path / "big.png"
    with big.open("wb") as f:
        f.truncate(MAX_IMAGE_BYTES + 1)
    with pytest.raises(BadRequest, match="images are limited to 8 MB"):
        read_image(big)
    with pytest.raises(BadRequest, match="is a folder"):
        read_image(tmp_path)
