"""Listing a model repo's files through huggingface_hub against the fake Hub on 127.0.0.1: commit, hashes, errors."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from engines.downloads.hf_repo import (
    BadRepoId,
    RepoFile,
    RepoListing,
    check_repo_id,
    hub_errors,
    list_repo,
    pick_files,
)
from engines.downloads.hf_source import hub_file
from engines.downloads.names import UnsafeFileName
from engines.downloads.transfer import DownloadAuthError, DownloadNotFound
from engines.errors import DownloadError
from tests.engines.fake_hub import FakeHub, Fault, HubRepo

REPO = "org/tiny-model"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
WEIGHTS = bytes(range(256)) * 40
FILES = {
    "model-00001-of-00002.safetensors": WEIGHTS,
    "model-00002-of-00002.safetensors": WEIGHTS[::-1],
    "gguf/tiny-Q4_K_M.gguf": b"GGUF" + WEIGHTS[:999],
    "config.json": b'{"model_type": "llama"}\n',
    "README.md": b"hi",
}
LFS = ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "gguf/tiny-Q4_K_M.gguf")
README_BLOB_ID = "32f95c0d1244a78b2be1bab8de17906fabb2c4a8"  # `printf hi | git hash-object --stdin`
TOKEN = "hf_SeCrEtToKeN1234567890"


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with FakeHub() as server:
        yield server


@pytest.fixture
def repo(hub: FakeHub) -> HubRepo:
    return hub.add_repo(REPO, FILES, lfs=LFS, commit=COMMIT, revisions=("main", "v1.0", "refs/pr/1"))


def listing_of(hub: FakeHub, revision: str | None = None, token: str | None = None, **kwargs: Any) -> RepoListing:
    return list_repo(kwargs.pop("repo", REPO), revision=revision, endpoint=hub.endpoint, token=token, **kwargs)


def api_requests(hub: FakeHub) -> list[str]:
    return [r.path for r in hub.requests if r.path.startswith("/api/")]


def test_listing_is_pinned_to_the_commit_with_sizes_and_hashes(hub: FakeHub, repo: HubRepo) -> None:
    listing = listing_of(hub)
    assert (listing.repo, listing.commit) == (REPO, COMMIT)
    by_path = {f.path: f for f in listing.files}
    assert list(by_path) == list(FILES)
    for path, data in FILES.items():
        assert by_path[path].size == len(data)
    for path in LFS:
        assert by_path[path].sha256 == hashlib.sha256(FILES[path]).hexdigest()
        assert by_path[path].etag == by_path[path].sha256
        assert by_path[path].blob_id is not None and len(by_path[path].blob_id or "") == 40
    readme = by_path["README.md"]
    assert (readme.sha256, readme.blob_id, readme.etag) == (None, README_BLOB_ID, README_BLOB_ID)
    assert api_requests(hub) == [f"/api/models/{REPO}?blobs=true"]


def test_non_lfs_blob_id_is_the_etag_the_hub_sends_for_the_file(hub: FakeHub, repo: HubRepo) -> None:
    listing = listing_of(hub)
    config = next(f for f in listing.files if f.path == "config.json")
    info = hub_file(REPO, "config.json", revision=None, endpoint=hub.endpoint, token=None)
    head = next(r for r in hub.requests if r.method == "HEAD")
    assert info.sha256 is None and info.commit == listing.commit and info.size == config.size
    assert head.path == f"/{REPO}/resolve/main/config.json"
    lfs = next(f for f in listing.files if f.path == LFS[0])
    assert hub_file(REPO, LFS[0], revision=None, endpoint=hub.endpoint, token=None).sha256 == lfs.sha256


@pytest.mark.parametrize(
    ("revision", "path"),
    [("v1.0", "/revision/v1.0"), ("refs/pr/1", "/revision/refs%2Fpr%2F1"), (COMMIT, f"/revision/{COMMIT}")],
)
def test_revision_is_passed_through(hub: FakeHub, repo: HubRepo, revision: str, path: str) -> None:
    assert listing_of(hub, revision).commit == COMMIT
    assert api_requests(hub) == [f"/api/models/{REPO}{path}?blobs=true"]


def test_unknown_revision_is_not_found(hub: FakeHub, repo: HubRepo) -> None:
    with pytest.raises(DownloadNotFound, match=r"org/tiny-model@nope is not on http://127\.0\.0\.1"):
        listing_of(hub, "nope")


def test_a_mirror_endpoint_with_a_trailing_slash_works(hub: FakeHub, repo: HubRepo) -> None:
    listing = list_repo(REPO, revision=None, endpoint=hub.endpoint + "/", token=None)
    assert listing.commit == COMMIT and api_requests(hub) == [f"/api/models/{REPO}?blobs=true"]


def test_token_is_sent_as_bearer_only_when_given(hub: FakeHub, repo: HubRepo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_FromTheEnvironmentMustNotBeSent")
    listing_of(hub, token=TOKEN)
    listing_of(hub, token=None)
    listing_of(hub, token="")
    sent = [r.headers.get("authorization") for r in hub.requests]
    assert sent == [f"Bearer {TOKEN}", None, None]


def test_pick_files_by_glob() -> None:
    files = tuple(RepoFile(p, 1, None, None) for p in ("a.gguf", "sub/b.gguf", "c.safetensors", "README.md"))
    listing = RepoListing(REPO, COMMIT, files)
    assert pick_files(listing) == list(files)
    assert [f.path for f in pick_files(listing, ["*.gguf"])] == ["a.gguf", "sub/b.gguf"]
    assert [f.path for f in pick_files(listing, ("*.safetensors", "README.md"))] == ["c.safetensors", "README.md"]
    assert [f.path for f in pick_files(listing, "sub/*")] == ["sub/b.gguf"]
    assert pick_files(listing, ["*.GGUF"]) == []  # case-sensitive on every platform
    assert pick_files(listing, ["*.bin"]) == []


def test_missing_repo_is_not_found(hub: FakeHub) -> None:
    with pytest.raises(DownloadNotFound, match=r"org/tiny-model is not on .* \(or is private: set hf_token\)"):
        listing_of(hub)


@pytest.mark.parametrize(
    "fault",
    [
        Fault(status=401, error_message="Invalid credentials in Authorization header"),
        Fault(status=401),
        Fault(status=403),
    ],
)
def test_refused_credentials_are_auth_errors(hub: FakeHub, repo: HubRepo, fault: Fault) -> None:
    repo.faults.append(fault)
    with pytest.raises(DownloadAuthError, match=rf"refused org/tiny-model \(HTTP {fault.status}\): check hf_token"):
        listing_of(hub, token=TOKEN)


def test_gated_repo_asks_for_the_licence(hub: FakeHub, repo: HubRepo) -> None:
    repo.faults.append(Fault(status=403, error_code="GatedRepo"))
    with pytest.raises(DownloadAuthError, match=r"org/tiny-model is gated: accept its licence on the Hub"):
        listing_of(hub)


def test_server_error_is_a_plain_download_error(hub: FakeHub, repo: HubRepo) -> None:
    repo.faults.append(Fault(status=500))
    with pytest.raises(DownloadError, match=r"could not describe org/tiny-model \(HTTP 500\)") as caught:
        listing_of(hub)
    assert not isinstance(caught.value, (DownloadAuthError, DownloadNotFound))
    assert listing_of(hub).commit == COMMIT  # the fault was one request's


def test_closed_port_cannot_be_reached() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    with pytest.raises(
        DownloadError, match=rf"^cannot reach {endpoint} \(ConnectError\): check the network or HF_ENDPOINT$"
    ):
        list_repo(REPO, revision=None, endpoint=endpoint, token=None)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"sha": None}, "did not say which commit"),
        ({"sha": "../../etc"}, "did not say which commit"),
        ({"siblings": None}, "did not list the files"),
        ({"siblings": [{"size": 3}]}, "sent no usable file list .*KeyError"),
    ],
)
def test_malformed_model_info_is_refused(hub: FakeHub, repo: HubRepo, overrides: dict[str, Any], message: str) -> None:
    repo.info_overrides.update(overrides)
    with pytest.raises(DownloadError, match=message):
        listing_of(hub)


def test_a_non_json_answer_is_refused(hub: FakeHub) -> None:
    hub.add(f"/api/models/{REPO}?blobs=true", b"<html>a captive portal</html>")
    with pytest.raises(DownloadError, match=r"sent no usable file list for org/tiny-model \(JSONDecodeError\)"):
        listing_of(hub)


def test_malformed_hashes_are_refused(hub: FakeHub, repo: HubRepo) -> None:
    repo.extra_siblings.append(
        {"rfilename": "x.bin", "size": 1, "lfs": {"sha256": "../x", "size": 1, "pointerSize": 1}}
    )
    with pytest.raises(DownloadError, match=r"gave x\.bin in org/tiny-model a sha256 that is not 64 hexadecimal"):
        listing_of(hub)
    repo.extra_siblings[:] = [{"rfilename": "y.txt", "size": 1, "blobId": "not-a-blob-id"}]
    with pytest.raises(DownloadError, match=r"malformed blob id: 'not-a-blob-id'"):
        listing_of(hub)


@pytest.mark.parametrize(
    "path", ["../evil", "sub/../../evil", "/etc/passwd", "C:evil", "C:\\evil", "sub\\evil", "a//b", "./a", "a/.", ""]
)
def test_unsafe_paths_from_the_server_are_refused(hub: FakeHub, repo: HubRepo, path: str) -> None:
    repo.extra_siblings.append({"rfilename": path, "size": 4, "blobId": "0" * 40})
    with pytest.raises(UnsafeFileName) as caught:
        listing_of(hub)
    assert caught.value.name == path and repr(path) in str(caught.value)


def test_nul_in_a_path_is_refused(hub: FakeHub, repo: HubRepo) -> None:
    repo.extra_siblings.append({"rfilename": "a\x00.gguf", "size": 4, "blobId": "0" * 40})
    with pytest.raises(UnsafeFileName, match="NUL"):
        listing_of(hub)


@pytest.mark.parametrize("bad", ["tiny", "a/b/c", "../x", "a/..", "org/..", "a--b/c", "org/x.git", "/x", "a/", "a b/c"])
def test_bad_repo_ids_are_refused_before_any_request(hub: FakeHub, bad: str) -> None:
    with pytest.raises(BadRepoId, match="not a Hugging Face model repo id"):
        listing_of(hub, repo=bad)
    assert hub.requests == []


def test_good_repo_ids_pass() -> None:
    for good in ("google/gemma-3-1b-it", "unsloth/Qwen3-0.6B-GGUF", "a_b/c.d", "TheBloke/x_y-z.1"):
        assert check_repo_id(good) == good


def test_hub_errors_leaves_other_exceptions_alone() -> None:
    with pytest.raises(KeyError), hub_errors("http://h", REPO, REPO):
        raise KeyError("x")
    with (
        pytest.raises(DownloadError, match=r"cannot reach http://h \(ConnectionRefusedError\)"),
        hub_errors("http://h", REPO, REPO),
    ):
        raise ConnectionRefusedError
