"""Search the Hub's model repos through huggingface_hub (`HfApi.list_models`), page by page.

huggingface_hub knows the endpoint (HF_ENDPOINT mirrors), the token, the `Link` paging and the back-off on
HTTP 429 (it waits Retry-After + 1 s and tries again, up to five times); this wraps it so the caller sees results
as each page arrives, hears about a back-off while it happens, and gets our errors. Its back-off has no cap
(a Retry-After of an hour is slept five times) and retries a refused connection for 23 s, and `list_models`
takes no retry settings: so the warning it logs before each sleep is heard on this thread, and a wait over
MAX_WAIT_S, a cancelled search, or a connection failure ends the search there instead of sleeping.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from engines.hub.errors import HubError, HubRateLimited, HubUnreachable, hub_call

SortKey = Literal["downloads", "likes", "last_modified", "trending_score"]
SORT_KEYS: tuple[SortKey, ...] = ("downloads", "likes", "last_modified", "trending_score")
MAX_QUERY = 200
"""Characters of a search query; the Hub's own search box takes about this."""
MAX_RESULTS = 1000
MAX_WAIT_S = 30.0
"""The longest back-off a search waits through; a longer Retry-After ends it with HubRateLimited."""
_EXPAND = ["downloads", "likes", "lastModified", "library_name", "gated", "tags", "pipeline_tag", "sha"]
_QUERY = re.compile(r"^[\w .:/+-]*$", re.UNICODE)
_RATE_LIMITED = re.compile(r"Rate limited\. Waiting (\d+(?:\.\d+)?)s")
_CONNECTION_FAILED = re.compile(r"^'.*' thrown while requesting", re.DOTALL)
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
    with hub_call(endpoint, f"the search {query!r}"), _BackOff(endpoint, on_wait, cancel):
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


class _BackOff(logging.Handler):
    """Hears huggingface_hub's back-off warnings on this thread: tells the caller, or ends the search by raising
    out of the logging call (a wait too long, a cancelled search, a connection that failed)."""

    def __init__(self, endpoint: str, on_wait: Callable[[float, str], None] | None, cancel: threading.Event | None):
        super().__init__(logging.WARNING)
        self.endpoint = endpoint
        self.on_wait = on_wait
        self.cancel = cancel
        self.thread = threading.get_ident()
        self.logger = logging.getLogger("huggingface_hub.utils._http")

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self.thread:
            return
        text = record.getMessage()
        if _CONNECTION_FAILED.search(text):
            raise HubUnreachable(f"cannot reach {self.endpoint}: check the network or HF_ENDPOINT")
        match = _RATE_LIMITED.search(text)
        if match is None:
            return
        wait = float(match.group(1))
        if wait > MAX_WAIT_S:
            raise HubRateLimited(
                f"{self.endpoint} is rate limiting requests (HTTP 429) and asks to wait {wait:.0f} s;"
                " try again later, or set hf_token (signed-in users get a higher limit)",
                wait,
            )
        if self.cancel is not None and self.cancel.is_set():
            raise HubError("search cancelled")
        if self.on_wait is not None:
            self.on_wait(wait, "rate limited by the Hub (HTTP 429)")

    def __enter__(self) -> None:
        self.logger.addHandler(self)

    def __exit__(self, *exc: object) -> None:
        self.logger.removeHandler(self)
