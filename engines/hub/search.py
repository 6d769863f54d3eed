"""Search the Hub's model repos through huggingface_hub (`HfApi.list_models`), page by page.

huggingface_hub knows the endpoint (HF_ENDPOINT mirrors), the token, the `Link` paging and the back-off on
HTTP 429 (it waits Retry-After and tries again, up to five times); this wraps it so the caller sees results as
each page arrives, hears about a back-off while it happens, and gets our errors.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from engines.hub.errors import HubError, hub_call

SortKey = Literal["downloads", "likes", "last_modified", "trending_score"]
SORT_KEYS: tuple[SortKey, ...] = ("downloads", "likes", "last_modified", "trending_score")
MAX_QUERY = 200
"""Characters of a search query; the Hub's own search box takes about this."""
MAX_RESULTS = 1000
_EXPAND = ["downloads", "likes", "lastModified", "library_name", "gated", "tags", "pipeline_tag", "sha"]
_QUERY = re.compile(r"^[\w .:/+-]*$", re.UNICODE)
_RATE_LIMITED = re.compile(r"Rate limited\. Waiting (\d+(?:\.\d+)?)s")
_WEIGHT_FORMATS = ("gguf", "safetensors", "mlx", "onnx", "pytorch")


@dataclass(frozen=True, slots=True)
class HubRepo:
    """One model repo as the Hub's search lists it."""

    id: str
    downloads: int | None = None
    likes: int | None = None
    last_modified: datetime | None = None
    library: str | None = None
    formats: tuple[str, ...] = ()
    """Weight formats its tags name: gguf, safetensors, mlx, onnx, pytorch."""
    gated: str | None = None
    """None when open; "auto" or "manual" when the licence must be accepted first."""
    pipeline: str | None = None
    sha: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The `llm-tui models search --json` object."""
        return {
            "id": self.id,
            "downloads": self.downloads,
            "likes": self.likes,
            "last_modified": self.last_modified.isoformat() if self.last_modified else None,
            "library": self.library,
            "formats": list(self.formats),
            "gated": self.gated,
            "pipeline": self.pipeline,
            "commit": self.sha,
        }


def check_query(query: str) -> str:
    """The query, stripped; HubError says what is wrong with one the Hub would not take."""
    query = query.strip()
    if len(query) > MAX_QUERY:
        raise HubError(f"the search is {len(query)} characters long; the limit is {MAX_QUERY}")
    if not _QUERY.match(query):
        raise HubError("search for letters, digits and . : / + - _ only (a model or organisation name)")
    return query


def search_models(
    query: str,
    *,
    endpoint: str,
    token: str | None,
    limit: int = 50,
    sort: SortKey = "downloads",
    on_wait: Callable[[float, str], None] | None = None,
    cancel: threading.Event | None = None,
) -> Iterator[list[HubRepo]]:
    """The repos matching `query`, best first by `sort`, a page at a time (`limit` in all, pages of up to 100).

    `on_wait(seconds, why)` is told when huggingface_hub backs off from a 429; a set `cancel` stops between
    pages. Raises HubError (HubUnreachable, HubAuthError, HubRateLimited) with what to do.
    """
    from huggingface_hub import HfApi

    query = check_query(query)
    if sort not in SORT_KEYS:
        raise HubError(f"unknown sort {sort!r}; use one of {', '.join(SORT_KEYS)}")
    limit = max(1, min(limit, MAX_RESULTS))
    endpoint = endpoint.rstrip("/")
    api = HfApi(endpoint=endpoint, token=token or False)
    page: list[HubRepo] = []
    page_size = min(limit, 100)
    with _told_of_back_off(on_wait), hub_call(endpoint, f"the search {query!r}"):
        # list_models asks for `limit` per page and stops after `limit`: ask a page at a time instead, so the
        # first results show while the next page is on its way.
        items = api.list_models(search=query or None, sort=sort, expand=_EXPAND, limit=limit)  # type: ignore[arg-type]
        for info in items:
            page.append(_repo(info))
            if len(page) >= page_size:
                yield page
                page = []
                if cancel is not None and cancel.is_set():
                    return
    if page:
        yield page


def _repo(info: Any) -> HubRepo:
    tags = [t for t in (info.tags or []) if isinstance(t, str)]
    gated = info.gated if isinstance(info.gated, str) else None
    return HubRepo(
        id=str(info.id),
        downloads=info.downloads if isinstance(info.downloads, int) else None,
        likes=info.likes if isinstance(info.likes, int) else None,
        last_modified=info.last_modified if isinstance(info.last_modified, datetime) else None,
        library=info.library_name if isinstance(info.library_name, str) else None,
        formats=tuple(f for f in _WEIGHT_FORMATS if f in tags),
        gated=gated,
        pipeline=info.pipeline_tag if isinstance(info.pipeline_tag, str) else None,
        sha=info.sha if isinstance(info.sha, str) else None,
    )


class _BackOffHandler(logging.Handler):
    """Hears huggingface_hub's "Rate limited. Waiting Ns before retry" on this thread and tells the caller."""

    def __init__(self, on_wait: Callable[[float, str], None]) -> None:
        super().__init__(logging.WARNING)
        self.on_wait = on_wait
        self.thread = threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self.thread:
            return
        match = _RATE_LIMITED.search(record.getMessage())
        if match:
            self.on_wait(float(match.group(1)), "rate limited by the Hub (HTTP 429)")


class _told_of_back_off:
    def __init__(self, on_wait: Callable[[float, str], None] | None) -> None:
        self.handler = None if on_wait is None else _BackOffHandler(on_wait)
        self.logger = logging.getLogger("huggingface_hub.utils._http")

    def __enter__(self) -> None:
        if self.handler is not None:
            self.logger.addHandler(self.handler)

    def __exit__(self, *exc: object) -> None:
        if self.handler is not None:
            self.logger.removeHandler(self.handler)
