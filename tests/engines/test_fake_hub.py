"""The fake Hub itself, through huggingface_hub and httpx: search and paging, ranged reads of virtual and on-disk
files, gated repos, rate limits, the CDN redirect, and the builders' headers read back by our own parsers."""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from huggingface_hub import HfApi, get_hf_file_metadata
from huggingface_hub.errors import GatedRepoError, HfHubHTTPError

from engines.catalog.gguf_header import read_gguf_header
from engines.catalog.gguf_info import GgufHeader
from tests.engines import hub_fixtures
from tests.engines.fake_hub import FakeHub, Fault, FileBytes, VirtualBytes, parse_range
from tests.engines.hub_fixtures import QUANTS, RemoteFile, RemoteGguf

TOKEN = "hf_test_token"


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with FakeHub() as server:
        yield server


@pytest.fixture
def cdn() -> Iterator[FakeHub]:
    with FakeHub() as server:
        yield server


def api(hub: FakeHub, token: str | bool = False) -> HfApi:
    return HfApi(endpoint=hub.endpoint, token=token)


def searches(hub: FakeHub) -> list[dict[str, list[str]]]:
    """The query of each search request the hub saw."""
    return [parse_qs(urlsplit(r.path).query) for r in hub.requests if urlsplit(r.path).path == "/api/models"]


def as_file(tmp_path: Path, remote: RemoteFile) -> Path:
    """The remote file as a sparse local file: its real header, then a hole to its full size."""
    path = tmp_path / remote.path
    path.write_bytes(remote.header)
    os.truncate(path, remote.size)
    return path


def parse(tmp_path: Path, remote: RemoteFile) -> GgufHeader:
    return read_gguf_header(as_file(tmp_path, remote))


# --- search ---


def test_search_follows_the_link_header_across_pages_in_downloads_order(hub: FakeHub) -> None:
    hub.max_page_size = 50
    expected = hub_fixtures.search_corpus(hub, "llama", 120)

    found = list(api(hub).list_models(search="LLaMA", sort="downloads", limit=120))

    assert [m.id for m in found] == expected
    downloads = [m.downloads for m in found]
    assert downloads == sorted(downloads, reverse=True)
    sent = searches(hub)
    assert len(sent) == 3  # 50 + 50 + 20: huggingface_hub followed two rel="next" links
    assert sent[0] == {"search": ["LLaMA"], "sort": ["downloads"], "limit": ["120"]}
    assert "cursor" in sent[1] and "cursor" in sent[2]
    assert sent[1]["search"] == ["LLaMA"] and sent[1]["sort"] == ["downloads"]


def test_a_limit_within_one_page_reads_one_page_though_more_are_linked(hub: FakeHub) -> None:
    hub.max_page_size = 50
    expected = hub_fixtures.search_corpus(hub, "llama", 120)
    first = httpx.get(hub.url("/api/models"), params={"search": "llama", "sort": "downloads", "limit": 10})
    assert first.links["next"]["url"].startswith(hub.endpoint + "/api/models?")

    found = list(api(hub).list_models(search="llama", sort="downloads", limit=10))

    assert [m.id for m in found] == expected[:10]
    assert len(searches(hub)) == 2  # ours and the library's one: it stops at `limit` without the next page


def test_last_page_has_no_link_and_sorts_are_descending(hub: FakeHub) -> None:
    hub_fixtures.search_corpus(hub, "llama", 30)
    answer = httpx.get(hub.url("/api/models"), params={"search": "llama", "sort": "likes"})
    assert "link" not in answer.headers
    likes = [item["likes"] for item in answer.json()]
    assert len(likes) == 30 and likes == sorted(likes, reverse=True)
    newest = [
        m.last_modified for m in api(hub).list_models(search="llama", sort="last_modified", expand=["lastModified"])
    ]
    assert newest == sorted(newest, reverse=True)


def test_search_items_have_the_hubs_short_form_unless_expanded(hub: FakeHub) -> None:
    hub.add_repo("org/Llama-GGUF", {}, downloads=5, likes=2, gated="manual", tags=["gguf"], library_name=None)

    short = httpx.get(hub.url("/api/models"), params={"search": "llama"}).json()[0]
    full = httpx.get(hub.url("/api/models"), params={"search": "llama", "full": "true"}).json()[0]
    expanded = httpx.get(hub.url("/api/models"), params=[("search", "llama"), ("expand", "gated"), ("expand", "likes")])

    # The Hub's short form has no author, gated, lastModified or sha: ask for them with expand
    assert set(short) == {"_id", "id", "modelId", "likes", "trendingScore", "private", "downloads", "tags", "createdAt"}
    assert {"author", "gated", "lastModified", "sha", "siblings"} <= set(full)
    assert expanded.json() == [{"_id": short["_id"], "id": "org/Llama-GGUF", "gated": "manual", "likes": 2}]
    [info] = api(hub).list_models(search="llama", expand=["gated", "downloads"])
    assert (info.id, info.gated, info.downloads, info.likes) == ("org/Llama-GGUF", "manual", 5, None)


def test_search_filters_by_author_tag_and_gated(hub: FakeHub) -> None:
    hub.add_repo("a/llama-1", {}, tags=["gguf"])
    hub.add_repo("b/llama-2", {}, tags=["gguf"], gated="auto")
    hub.add_repo("a/llama-3", {}, tags=["safetensors"])

    def ids(**kwargs: object) -> list[str]:
        return [m.id for m in api(hub).list_models(search="llama", **kwargs)]  # type: ignore[arg-type]

    assert ids(author="a") == ["a/llama-1", "a/llama-3"]
    assert ids(filter="gguf") == ["a/llama-1", "b/llama-2"]
    assert ids(gated=True) == ["b/llama-2"]
    assert ids(gated=False) == ["a/llama-1", "a/llama-3"]


# --- listing ---


def test_model_info_lists_the_quant_series_with_sizes_and_hashes(hub: FakeHub) -> None:
    series = hub_fixtures.quant_series_repo(hub, downloads=1234)

    info = api(hub).model_info(series.repo, files_metadata=True)

    assert info.sha == series.hub_repo.commit and info.downloads == 1234 and info.gated is False
    listed = {s.rfilename: s for s in info.siblings or []}
    assert len(listed) == len(QUANTS) + 2 >= 22
    for path, remote in series.files.items():
        assert listed[path].size == remote.size
        if path.endswith(".gguf"):
            assert listed[path].lfs is not None and listed[path].lfs.sha256 == remote.sha256
        else:
            git_blob = hashlib.sha1(b"blob %d\0" % remote.size + remote.header).hexdigest()
            assert listed[path].lfs is None and listed[path].blob_id == git_blob
    sizes = {q: round(series.ggufs[q].size / 1e9, 1) for q in ("Q4_K_M", "Q8_0", "F16")}
    assert sizes == {"Q4_K_M": 4.9, "Q8_0": 8.5, "F16": 16.1}


# --- ranged reads ---


def test_closed_ranges_read_the_real_header_and_zeros_after_it(hub: FakeHub) -> None:
    series = hub_fixtures.quant_series_repo(hub, quants=["Q4_K_M"])
    gguf = series.ggufs["Q4_K_M"]
    url = hub.resolve_url(series.repo, gguf.path)

    head = httpx.get(url, headers={"Range": "bytes=0-65535"})
    tail = httpx.get(url, headers={"Range": f"bytes={gguf.size - 100}-{gguf.size + 5000}"})  # the end is clamped
    last = httpx.get(url, headers={"Range": "bytes=-10"})
    past = httpx.get(url, headers={"Range": f"bytes={gguf.size}-{gguf.size + 9}"})

    assert head.status_code == 206 and head.content == gguf.header[:65536]
    assert head.headers["content-range"] == f"bytes 0-65535/{gguf.size}"
    assert head.headers["content-length"] == "65536"
    assert tail.status_code == 206 and tail.content == bytes(100)
    assert tail.headers["content-range"] == f"bytes {gguf.size - 100}-{gguf.size - 1}/{gguf.size}"
    assert last.headers["content-range"] == f"bytes {gguf.size - 10}-{gguf.size - 1}/{gguf.size}"
    assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{gguf.size}"
    assert series.hub_repo.sent_bytes(gguf.path) == 65536 + 100 + 10


def test_range_faults_still_apply(hub: FakeHub) -> None:
    data = VirtualBytes(b"GGUF" + bytes(range(256)) * 4, 4096)
    served = hub.add("/f", data, Fault(ignore_range=True), Fault(wrong_range=True), Fault(), Fault(drop_after=10))

    ignored = httpx.get(hub.url("/f"), headers={"Range": "bytes=100-199"})
    wrong = httpx.get(hub.url("/f"), headers={"Range": "bytes=100-199"})
    right = httpx.get(hub.url("/f"), headers={"Range": "bytes=100-199"})
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(hub.url("/f"), headers={"Range": "bytes=100-199"})  # the third ranged read is dropped

    assert ignored.status_code == 200 and ignored.content == bytes(data)
    assert wrong.status_code == 206 and wrong.headers["content-range"] == "bytes 0-99/4096"
    assert wrong.content == bytes(data)[:100]
    assert right.content == bytes(data)[100:200]
    assert served.sent_bytes == 4096 + 100 + 100 + 10


def test_open_ranges_are_served_as_before(hub: FakeHub) -> None:
    hub.add("/f", b"0123456789", Fault(wrong_range=True))
    wrong = httpx.get(hub.url("/f"), headers={"Range": "bytes=4-"})
    right = httpx.get(hub.url("/f"), headers={"Range": "bytes=4-"})
    assert (wrong.headers["content-range"], wrong.content) == ("bytes 0-9/10", b"0123456789")
    assert (right.headers["content-range"], right.content) == ("bytes 4-9/10", b"456789")


def test_virtual_and_file_contents_read_by_range(tmp_path: Path) -> None:
    virtual = VirtualBytes(b"head", 5 << 30, sha256="ab" * 32)
    assert len(virtual) == 5 << 30 and virtual[:6] == b"head\0\0" and virtual[2] == ord("a")
    assert virtual[-3:] == bytes(3) and virtual.sha256 == "ab" * 32
    assert [len(c) for c in virtual.chunks(0, 5, step=2)] == [2, 2, 1]
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(range(200)))
    on_disk = FileBytes(path)
    assert b"".join(on_disk.chunks(10, 20, step=3)) == bytes(range(10, 20))
    assert on_disk.sha256 == hashlib.sha256(bytes(range(200))).hexdigest()
    assert parse_range("bytes=5-2", 10) is None and parse_range("bytes=0-1,5-6", 10) is None


def test_the_real_gemma_file_is_served_from_disk_by_range(hub: FakeHub, gemma_path: Path) -> None:
    gemma = hub_fixtures.gemma_repo(hub, gemma_path)
    url = hub.resolve_url(gemma.repo, gemma.gguf.path)

    middle = httpx.get(url, headers={"Range": "bytes=100000000-100000999"})
    meta = get_hf_file_metadata(url, token=False)
    [listed] = [s for s in api(hub).model_info(gemma.repo, files_metadata=True).siblings or [] if s.lfs]

    with open(gemma_path, "rb") as f:
        f.seek(100_000_000)
        assert middle.content == f.read(1000)
    assert meta.size == gemma.gguf.size == gemma_path.stat().st_size
    assert listed.lfs is not None and listed.lfs.sha256 == gemma.gguf.sha256 == meta.etag
    assert gemma.hub_repo.sent_bytes(gemma.gguf.path) == 1000
    header = read_gguf_header(gemma_path)
    numbers = gemma.numbers
    assert (header.architecture, header.block_count, header.embedding_length) == (
        numbers["arch"],
        numbers["blocks"],
        numbers["embd"],
    )
    assert (header.head_count, header.head_count_kv, header.context_length) == (
        numbers["heads"],
        numbers["kv_heads"],
        numbers["ctx"],
    )


# --- gated, rate limited ---


def test_gated_files_need_the_accepted_token(hub: FakeHub) -> None:
    gated = hub_fixtures.gated_repo(hub, token=TOKEN)
    url = hub.resolve_url(gated.repo, gated.gguf.path)

    anonymous = httpx.get(url, headers={"Range": "bytes=0-3"})
    wrong = httpx.get(url, headers={"Range": "bytes=0-3", "Authorization": "Bearer hf_other"})
    right = httpx.get(url, headers={"Range": "bytes=0-3", "Authorization": f"Bearer {TOKEN}"})

    assert anonymous.status_code == 401 and anonymous.headers["x-error-code"] == "GatedRepo"
    assert anonymous.headers["x-error-message"] == (
        f"Access to model {gated.repo} is restricted. You must have access to it and be authenticated to access it."
        " Please log in."
    )
    assert wrong.status_code == 403 and wrong.headers["x-error-code"] == "GatedRepo"
    assert right.status_code == 206 and right.content == b"GGUF"
    assert api(hub).model_info(gated.repo).gated == "manual"  # the repo's card is public
    with pytest.raises(GatedRepoError):
        get_hf_file_metadata(url, token=False)
    assert get_hf_file_metadata(url, token=TOKEN).size == gated.gguf.size


def test_a_rate_limit_reaches_huggingface_hub_as_429_with_retry_after(hub: FakeHub) -> None:
    hub.add_repo("org/m", {})
    hub.rate_limit(1, retry_after=7, route="/api/models/org/m")

    with pytest.raises(HfHubHTTPError) as caught:
        api(hub).model_info("org/m")  # no retry in model_info

    assert caught.value.response.status_code == 429
    assert caught.value.response.headers["retry-after"] == "7"
    assert api(hub).model_info("org/m").id == "org/m"


def test_list_models_sleeps_retry_after_plus_one_then_retries_429_five_times(
    hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.utils._http as hf_http

    slept: list[float] = []
    monkeypatch.setattr(hf_http.time, "sleep", slept.append)  # the library's own backoff, not our test waiting
    hub.add_repo("org/llama", {})
    hub.rate_limit(2, retry_after=3, route="/api/models")
    assert [m.id for m in api(hub).list_models(search="llama")] == ["org/llama"]
    assert slept == [4.0, 4.0]

    slept.clear()
    hub.rate_limit(6, retry_after=0, route="/api/models")
    with pytest.raises(HfHubHTTPError) as caught:
        list(api(hub).list_models(search="llama"))
    assert caught.value.response.status_code == 429 and slept == [1.0] * 5


# --- the CDN ---


def test_lfs_files_redirect_to_the_cdn_which_never_sees_the_token(hub: FakeHub, cdn: FakeHub) -> None:
    series = hub_fixtures.quant_series_repo(hub, quants=["Q4_K_M"], cdn=cdn)
    gguf = series.ggufs["Q4_K_M"]
    series.hub_repo.cdn_served(gguf.path).faults[:] = [Fault(), Fault(), Fault(drop_after=5)]
    url = hub.resolve_url(series.repo, gguf.path)
    auth = {"Authorization": "Bearer hf_user"}

    redirect = httpx.get(url, headers=auth | {"Range": "bytes=0-1023"})
    location = redirect.headers["location"]
    by_hand = httpx.get(location, headers={"Range": "bytes=0-1023"})
    followed = httpx.get(url, headers=auth | {"Range": "bytes=1024-2047"}, follow_redirects=True)
    meta = get_hf_file_metadata(url, token="hf_user")  # stops at the 302: the metadata is on it

    assert redirect.status_code == 302 and location.startswith(cdn.endpoint + "/repos/")
    assert redirect.headers["x-linked-size"] == str(gguf.size)
    assert redirect.headers["x-linked-etag"] == f'"{gguf.sha256}"'
    assert redirect.headers["x-repo-commit"] == series.hub_repo.commit
    assert by_hand.status_code == 206 and by_hand.content == gguf.header[:1024]
    assert followed.content == gguf.header[1024:2048]  # httpx drops Authorization on a cross-origin redirect
    assert (meta.size, meta.etag, meta.location) == (gguf.size, gguf.sha256, location)
    assert cdn.requests and cdn.authorized_requests() == []
    assert len(hub.authorized_requests()) == 3
    with pytest.raises(httpx.RemoteProtocolError):  # the CDN's third answer is cut short
        httpx.get(location, headers={"Range": "bytes=0-1023"})
    assert series.hub_repo.sent_bytes(gguf.path) == 2048 + 5
    readme = httpx.get(hub.resolve_url(series.repo, "README.md"))  # not LFS: served by the Hub itself
    assert readme.status_code == 200 and readme.content == series.readme.header


# --- the builders' headers ---


def test_every_quant_header_parses_with_the_declared_numbers(hub: FakeHub, tmp_path: Path) -> None:
    series = hub_fixtures.quant_series_repo(hub)
    assert list(series.ggufs) == list(QUANTS) and len(QUANTS) == 20
    for quant, gguf in series.ggufs.items():
        header = parse(tmp_path, gguf)
        assert header.file_size == gguf.size and header.data_offset == gguf.data_offset
        assert header.file_type == quant and header.architecture == "llama"
        assert (header.block_count, header.head_count, header.head_count_kv) == (32, 32, 8)
        assert (header.embedding_length, header.context_length, header.vocab_size) == (4096, 8192, 128256)
        assert header.parameter_count == gguf.params == series.shape.params
        assert len(header.tensors) == gguf.n_tensors == 2 + 32 * 9 + 1
        assert header.has_chat_template and len(gguf.header) > 2_000_000  # a 128k vocabulary: a 2 MB header
    projector = parse(tmp_path, series.mmproj)
    assert (projector.architecture, projector.file_type) == ("clip", "F16")
    assert projector.parameter_count == series.mmproj.params and 600e6 < series.mmproj.size < 700e6


def test_header_bytes_follow_the_shape_asked_for(tmp_path: Path) -> None:
    header, size = hub_fixtures.gguf_header_bytes(
        "qwen2", name="Tiny", blocks=4, embd=512, heads=8, kv_heads=2, ffn=1024, vocab=1000, ctx=4096, quant="Q8_0"
    )
    parsed = parse(tmp_path, RemoteFile("t.gguf", size, "", header))
    assert (parsed.architecture, parsed.name, parsed.file_type) == ("qwen2", "Tiny", "Q8_0")
    assert (parsed.block_count, parsed.head_count, parsed.head_count_kv, parsed.vocab_size) == (4, 8, 2, 1000)
    assert all(t.ggml_type in ("Q8_0", "F32") for t in parsed.tensors)


def test_split_parts_parse_and_carry_the_split_keys(hub: FakeHub, tmp_path: Path) -> None:
    split = hub_fixtures.split_gguf_repo(hub, parts=3)
    listed = {s.rfilename: s.size for s in api(hub).model_info(split.repo, files_metadata=True).siblings or []}
    headers = [parse(tmp_path, part) for part in split.parts]

    assert [p.path for p in split.parts] == [f"Llama-3-70B-Instruct-Q4_K_M-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    assert listed == {p.path: p.size for p in split.parts}
    assert 40e9 < split.size < 44e9 and split.params == split.shape.params
    for i, (part, header) in enumerate(zip(split.parts, headers, strict=True)):
        assert header.metadata["split.no"] == i and header.metadata["split.count"] == 3
        assert header.metadata["split.tensors.count"] == sum(p.n_tensors for p in split.parts)
        assert header.parameter_count == part.params and header.file_size == part.size
        assert header.architecture == part.arch and part.split == (i, 3)
    assert (headers[0].block_count, headers[0].file_type) == (80, "Q4_K_M")


def test_safetensors_headers_declare_the_whole_model(hub: FakeHub) -> None:
    sharded = hub_fixtures.safetensors_repo(hub, shards=2)
    single = hub_fixtures.safetensors_repo(hub, "org/Llama-3-8B-single", shards=1)
    index = json.loads(httpx.get(hub.resolve_url(sharded.repo, "model.safetensors.index.json")).content)
    config = json.loads(httpx.get(hub.resolve_url(sharded.repo, "config.json")).content)

    assert index["metadata"]["total_size"] == sharded.total_size == 2 * sharded.params  # BF16
    assert set(index["weight_map"].values()) == {s.path for s in sharded.shards}
    assert config["num_hidden_layers"] == 32 and config["num_key_value_heads"] == 8
    assert [s.path for s in single.shards] == ["model.safetensors"] and single.index is None
    for remote in (*sharded.shards, *single.shards):
        url = hub.resolve_url(sharded.repo if remote in sharded.shards else single.repo, remote.path)
        (length,) = struct.unpack("<Q", httpx.get(url, headers={"Range": "bytes=0-7"}).content)
        header = json.loads(httpx.get(url, headers={"Range": f"bytes=8-{7 + length}"}).content)
        end = max(t["data_offsets"][1] for name, t in header.items() if name != "__metadata__")
        assert remote.size == 8 + length + end
    assert "chat_template" in json.loads(sharded.files["tokenizer_config.json"].header)


def test_remote_gguf_fields_match_the_parsed_header(hub: FakeHub, tmp_path: Path) -> None:
    gated = hub_fixtures.gated_repo(hub, "org/gated", quant="Q5_K_M")
    parsed = parse(tmp_path, gated.gguf)
    assert isinstance(gated.gguf, RemoteGguf)
    assert (parsed.file_type, parsed.block_count, parsed.head_count) == (gated.gguf.quant, gated.gguf.blocks, 32)
