"""Searching the Hub through huggingface_hub, against the fake Hub's /api/models (paging, 429, errors)."""

from __future__ import annotations

import threading

import pytest

from engines.hub.errors import HubError, HubRateLimited, HubUnreachable
from engines.hub.search import check_query, search_models
from tests.engines.fake_hub import FakeHub
from tests.engines.hub_fixtures import search_corpus


@pytest.fixture
def hub() -> FakeHub:
    with FakeHub() as server:
        yield server


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """huggingface_hub's back-off sleeps, recorded instead of slept."""
    slept: list[float] = []
    monkeypatch.setattr("huggingface_hub.utils._http.time.sleep", slept.append)
    return slept


def test_results_come_best_first_a_page_at_a_time_and_stop_at_the_limit(hub: FakeHub) -> None:
    expected = search_corpus(hub, "llama", 120)
    hub.max_page_size = 50
    pages = list(search_models("LLaMA", endpoint=hub.endpoint, token=None, limit=120))
    ids = [r.id for page in pages for r in page]
    assert ids == expected and [len(p) for p in pages] == [100, 20]
    first = pages[0][0]
    assert first.downloads == hub.repos[first.id].downloads and first.formats == ("gguf",)
    assert first.last_modified is not None and first.gated is None
    searches = [r for r in hub.requests if r.path.startswith("/api/models?")]
    assert len(searches) == 3  # 50 + 50 + 20: huggingface_hub followed the Link header
    assert (
        next(iter(search_models("llama", endpoint=hub.endpoint, token=None, limit=7)))
        == [r for page in pages for r in page][:7]
    )


def test_sort_by_likes(hub: FakeHub) -> None:
    search_corpus(hub, "qwen", 30)
    (page,) = list(search_models("qwen", endpoint=hub.endpoint, token=None, limit=30, sort="likes"))
    likes = [r.likes or 0 for r in page]
    assert likes == sorted(likes, reverse=True)


def test_a_rate_limit_is_waited_out_and_said(hub: FakeHub, no_sleep: list[float]) -> None:
    search_corpus(hub, "llama", 5)
    hub.rate_limit(count=2, retry_after=3, route="/api/models")
    told: list[tuple[float, str]] = []
    pages = list(search_models("llama", endpoint=hub.endpoint, token=None, on_wait=lambda s, w: told.append((s, w))))
    assert len(pages[0]) == 5
    assert len(told) == 2 and all("429" in why for _, why in told) and no_sleep == [4.0, 4.0]


def test_a_rate_limit_that_lasts_is_one_clear_error(hub: FakeHub, no_sleep: list[float]) -> None:
    search_corpus(hub, "llama", 5)
    hub.rate_limit(count=10, retry_after=7, route="/api/models")
    with pytest.raises(HubRateLimited, match=r"HTTP 429.*try again in 7 s.*hf_token") as caught:
        list(search_models("llama", endpoint=hub.endpoint, token=None))
    assert caught.value.retry_after_s == 7


def test_an_unreachable_endpoint_says_to_check_hf_endpoint_at_once(no_sleep: list[float]) -> None:
    with pytest.raises(HubUnreachable, match=r"cannot reach http://127\.0\.0\.1:9.*HF_ENDPOINT"):
        list(search_models("llama", endpoint="http://127.0.0.1:9", token=None))
    assert no_sleep == []  # huggingface_hub would retry for 23 s: a search says so now instead


def test_a_retry_after_past_the_cap_ends_the_search_instead_of_sleeping(hub: FakeHub, no_sleep: list[float]) -> None:
    search_corpus(hub, "llama", 5)
    hub.rate_limit(count=1, retry_after=3600, route="/api/models")
    with pytest.raises(HubRateLimited, match="asks to wait 3601 s") as caught:
        list(search_models("llama", endpoint=hub.endpoint, token=None))
    assert no_sleep == [] and caught.value.retry_after_s == 3601


def test_a_cancelled_search_does_not_wait_out_a_back_off(hub: FakeHub, no_sleep: list[float]) -> None:
    search_corpus(hub, "llama", 5)
    hub.rate_limit(count=1, retry_after=5, route="/api/models")
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(HubError, match="cancelled"):
        list(search_models("llama", endpoint=hub.endpoint, token=None, cancel=cancel))
    assert no_sleep == []


def test_cancel_stops_between_pages(hub: FakeHub) -> None:
    search_corpus(hub, "llama", 120)
    hub.max_page_size = 100
    cancel = threading.Event()
    pages = []
    for page in search_models("llama", endpoint=hub.endpoint, token=None, limit=120, cancel=cancel):
        pages.append(page)
        cancel.set()
    assert len(pages) == 1


@pytest.mark.parametrize("query", ["a" * 201, "llama; rm -rf", "<script>", "x\ny"])
def test_queries_the_hub_would_not_take_are_refused_with_the_reason(query: str) -> None:
    with pytest.raises(HubError, match=r"limit is 200|letters, digits"):
        check_query(query)


def test_the_token_is_sent_as_bearer(hub: FakeHub) -> None:
    search_corpus(hub, "llama", 3)
    list(search_models("llama", endpoint=hub.endpoint, token="hf_abc"))
    assert hub.requests[-1].headers["authorization"] == "Bearer hf_abc"
