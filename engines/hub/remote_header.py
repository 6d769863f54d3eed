"""Reading one Hub model's headers remotely: a GGUF, every part of a split GGUF, or a safetensors set's config and
shard headers, each through a bounded RangeReader and the same parsers as files on disk; what it cost is counted."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engines.catalog.discover import gguf_fields, gguf_split_fields, hf_model
from engines.catalog.gguf_header import GgufHeader, parse_gguf_header
from engines.catalog.safetensors_info import SafetensorsHeader, hf_folder_info, parse_safetensors_header
from engines.downloads.hf_repo import RepoFile, RepoListing
from engines.errors import BadModelFile, LlmTuiError
from engines.hub.errors import HubAuthError, HubError, HubNotFound, HubRateLimited, HubUnreachable
from engines.hub.header_cache import FIELDS
from engines.hub.model_files import ModelFile, expected_parts, part_number
from engines.hub.range_reader import MIB, RangeReader, Waiting

if TYPE_CHECKING:
    import httpx

    from engines.hub.remote_fit import HubSource

MAX_JSON = 4 * MIB
"""config.json is a few KiB, tokenizer_config.json with many added tokens a few MiB."""


class HeaderReader:
    """Reads one model's headers, counting what it cost; one RangeReader per file."""

    def __init__(
        self,
        listing: RepoListing,
        source: HubSource,
        http: httpx.Client | None,
        on_wait: Waiting | None,
        cancel: threading.Event | None,
    ) -> None:
        import httpx

        self.listing = listing
        self.source = source
        self.own = http is None
        self.http = http if http is not None else httpx.Client(timeout=source.timeout_s)
        self.on_wait = on_wait
        self.cancel = cancel
        self.bytes_read = 0
        self.requests = 0

    def close(self) -> None:
        if self.own:
            self.http.close()

    def reader(self, file: RepoFile, **limits: int) -> RangeReader:
        if file.size is None:
            raise HubError(f"the Hub did not list the size of {self.listing.repo}/{file.path}")
        return RangeReader(
            self.http,
            self.source.url(self.listing.repo, file.path, self.listing.commit),
            size=file.size,
            shown=f"{self.listing.repo}/{file.path}",
            headers=self.source.headers,
            timeout_s=self.source.timeout_s,
            cancel=self.cancel,
            on_wait=self.on_wait,
            **({"max_bytes": self.source.max_header_bytes} | limits),
        )

    def count(self, reader: RangeReader) -> None:
        self.bytes_read += reader.bytes_read
        self.requests += reader.requests

    def fields(self, model: ModelFile) -> dict[str, Any]:
        if model.kind == "gguf":
            return _pick(gguf_fields(self.gguf(model.parts[0])))
        if model.kind == "gguf-split":
            return self.split_fields(model)
        return self.safetensors_fields(model)

    def gguf(self, file: RepoFile) -> GgufHeader:
        with self.reader(file) as reader:
            try:
                return parse_gguf_header(reader.read_at, reader.size, reader.shown)
            finally:
                self.count(reader)

    def split_fields(self, model: ModelFile) -> dict[str, Any]:
        count = expected_parts(model)
        problems: list[str] = []
        numbers = [part_number(p) for p in model.parts]
        missing = [no for no in range(1, count + 1) if no not in numbers]
        if missing:
            problems.append(f"the repo lacks {len(missing)} of {count} parts ({', '.join(map(str, missing))})")
        headers: dict[int, GgufHeader] = {}
        for no, part in zip(numbers, model.parts, strict=True):
            try:
                headers[no] = self.gguf(part)
            except BadModelFile as exc:
                problems.append(f"part {no}: {exc.reason}")
        return _pick(gguf_split_fields(count, headers, problems))

    def safetensors_fields(self, model: ModelFile) -> dict[str, Any]:
        problems: list[str] = []
        config: dict[str, Any] = {}
        if model.config is not None:
            try:
                config = self.json_object(model.config)
            except BadModelFile as exc:
                problems.append(f"config.json: {exc.reason}")
        headers: list[SafetensorsHeader] = []
        for shard in model.parts:
            try:
                headers.append(self.safetensors(shard))
            except BadModelFile as exc:
                problems.append(f"{shard.path}: {exc.reason}")
        info = hf_folder_info(
            Path(model.name), config, headers, problems, files=(), chat_template=self.has_chat_template(model)
        )
        local = hf_model(info, "hub", "hub", model.name)
        return {key: getattr(local, key) for key in FIELDS}

    def safetensors(self, file: RepoFile) -> SafetensorsHeader:
        with self.reader(file) as reader:
            try:
                head = reader.read_at(0, 8)
                if len(head) < 8:
                    raise BadModelFile(reader.shown, f"truncated: {reader.size} bytes, too short for a header")
                n = int.from_bytes(head[:8], "little")
                if n > reader.size - 8:
                    raise BadModelFile(reader.shown, f"corrupt: header length {n} exceeds the file ({reader.size} B)")
                raw = head[8 : 8 + n]
                if len(raw) < n:
                    raw += reader.read_at(8 + len(raw), n - len(raw))
                if len(raw) < n:
                    raise BadModelFile(reader.shown, f"truncated: the header needs {n} bytes")
                return parse_safetensors_header(raw[:n], reader.size, reader.shown)
            finally:
                self.count(reader)

    def json_object(self, file: RepoFile) -> dict[str, Any]:
        shown = f"{self.listing.repo}/{file.path}"
        if file.size is not None and file.size > MAX_JSON:
            raise BadModelFile(shown, f"{file.size:,} bytes; the limit for a JSON file is {MAX_JSON:,}")
        with self.reader(file, max_bytes=MAX_JSON, first_window=MAX_JSON, max_window=MAX_JSON) as reader:
            try:
                raw = reader.read_at(0, reader.size)
            finally:
                self.count(reader)
        try:
            doc = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise BadModelFile(shown, f"invalid JSON ({type(exc).__name__})") from None
        if not isinstance(doc, dict):
            raise BadModelFile(shown, f"a JSON {type(doc).__name__}, expected an object")
        return doc

    def has_chat_template(self, model: ModelFile) -> bool | None:
        names = {f.path.rsplit("/", 1)[-1]: f for f in model.extras}
        if "chat_template.jinja" in names or "chat_template.json" in names:
            return True
        tokenizer_config = names.get("tokenizer_config.json")
        if tokenizer_config is None:
            return False
        try:
            return bool(self.json_object(tokenizer_config).get("chat_template"))
        except (BadModelFile, HubNotFound):
            return None


def error_kind(exc: LlmTuiError) -> str:
    """FileFit.error_kind for an error."""
    kinds: tuple[tuple[type[LlmTuiError], str], ...] = (
        (HubAuthError, "auth"),
        (HubUnreachable, "unreachable"),
        (HubRateLimited, "rate_limited"),
        (HubNotFound, "not_found"),
        (BadModelFile, "bad_file"),
    )
    found = next((kind for cls, kind in kinds if isinstance(exc, cls)), None)
    return found or ("cancelled" if "cancelled" in str(exc) else "error")


def _pick(fields: dict[str, Any]) -> dict[str, Any]:
    return {key: fields[key] for key in FIELDS if key in fields}
