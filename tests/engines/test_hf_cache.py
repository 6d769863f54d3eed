"""Files we download into the Hugging Face cache layout are found by huggingface_hub itself, exactly as its own."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import hf_hub_download, scan_cache_dir, try_to_load_from_cache

from engines.downloads import hf_cache
from engines.downloads.hf_cache import CachePlacement, hub_cache_dir, link_into_snapshot, placement
from engines.downloads.hf_repo import BadRepoId, list_repo
from engines.downloads.names import UnsafeFileName
from engines.downloads.transfer import download_file
from engines.errors import DownloadError
from tests.engines.fake_hub import FakeHub

REPO = "org/tiny-model"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER = "fedcba9876543210fedcba9876543210fedcba98"
FILES = {
    "tiny-Q4_K_M.gguf": b"GGUF" + os.urandom(150_000),
    "sub/x.bin": os.urandom(20_000),
    "config.json": b'{"model_type": "llama"}\n',
}
LFS = ("tiny-Q4_K_M.gguf", "sub/x.bin")
SHA = "ab" * 32


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with FakeHub() as server:
        server.add_repo(REPO, FILES, lfs=LFS, commit=COMMIT, revisions=("main", "v1.0", "refs/pr/1"))
        yield server


def pull(hub: FakeHub, cache: Path, revision: str | None = None) -> dict[str, Path]:
    """What `llm-tui pull` of a whole repo does: list, download each file to its blob, link it in."""
    listing = list_repo(REPO, revision=revision, endpoint=hub.endpoint, token=None)
    pointers = {}
    for f in listing.files:
        assert f.etag is not None
        p = placement(cache, REPO, commit=listing.commit, path=f.path, etag=f.etag, revision=revision)
        url = hub.resolve_url(REPO, f.path, listing.commit)
        download_file(url, p.blob, expected_sha256=f.sha256, expected_size=f.size, backoff=lambda _: 0.01)
        pointers[f.path] = link_into_snapshot(p, commit=listing.commit)
    return pointers


def layout(folder: Path) -> dict[str, str]:
    """Every entry under `folder`: symlinks by target, files by content hash, folders as 'dir'."""
    entries = {}
    for path in sorted(folder.rglob("*")):
        key = path.relative_to(folder).as_posix()
        if path.is_symlink():
            entries[key] = "-> " + os.readlink(path)
        elif path.is_file():
            entries[key] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            entries[key] = "dir"
    return entries


def test_huggingface_hub_finds_what_we_downloaded(hub: FakeHub, tmp_path: Path) -> None:
    pointers = pull(hub, tmp_path)
    for path, data in FILES.items():
        for revision in (None, "main", COMMIT):
            found = try_to_load_from_cache(REPO, path, cache_dir=tmp_path, revision=revision)
            assert found == str(pointers[path]) and Path(found).read_bytes() == data
        assert hf_hub_download(REPO, path, cache_dir=tmp_path, local_files_only=True) == str(pointers[path])
    info = scan_cache_dir(tmp_path)
    assert info.warnings == []
    (repo,) = info.repos
    assert (repo.repo_id, repo.repo_type, repo.nb_files) == (REPO, "model", 3)
    assert repo.size_on_disk == sum(len(d) for d in FILES.values())
    (revision,) = repo.revisions
    assert (revision.commit_hash, revision.refs) == (COMMIT, frozenset({"main"}))
    assert {f.file_path for f in revision.files} == set(pointers.values())


def test_layout_is_exactly_what_hf_hub_download_makes(hub: FakeHub, tmp_path: Path) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    pull(hub, ours)
    for path in FILES:
        hf_hub_download(REPO, path, cache_dir=theirs, endpoint=hub.endpoint)
    folder = "models--org--tiny-model"
    assert layout(ours / folder) == layout(theirs / folder)
    blob_names = {p.name for p in (ours / folder / "blobs").iterdir()}
    readme_blob = hashlib.sha1(b"blob %d\0" % len(FILES["config.json"]) + FILES["config.json"]).hexdigest()
    assert blob_names == {hashlib.sha256(FILES[p]).hexdigest() for p in LFS} | {readme_blob}


def test_online_hf_hub_download_reuses_our_files(hub: FakeHub, tmp_path: Path) -> None:
    pointers = pull(hub, tmp_path)
    hub.requests.clear()
    assert hf_hub_download(REPO, "sub/x.bin", cache_dir=tmp_path, endpoint=hub.endpoint) == str(pointers["sub/x.bin"])
    assert [r.method for r in hub.requests] == ["HEAD"]


def test_pointers_are_relative_symlinks_even_when_nested(hub: FakeHub, tmp_path: Path) -> None:
    pointers = pull(hub, tmp_path)
    sha = hashlib.sha256(FILES["sub/x.bin"]).hexdigest()
    assert os.readlink(pointers["sub/x.bin"]) == f"../../../blobs/{sha}"
    assert os.readlink(pointers["tiny-Q4_K_M.gguf"]).startswith("../../blobs/")
    moved = tmp_path.parent / (tmp_path.name + "-moved")
    tmp_path.rename(moved)
    assert try_to_load_from_cache(REPO, "sub/x.bin", cache_dir=moved) is not None  # a moved cache still works


@pytest.mark.parametrize(("revision", "ref"), [("v1.0", "v1.0"), ("refs/pr/1", "refs/pr/1"), (None, "main")])
def test_branch_and_tag_names_get_a_ref(hub: FakeHub, tmp_path: Path, revision: str | None, ref: str) -> None:
    pull(hub, tmp_path, revision)
    refs = tmp_path / "models--org--tiny-model" / "refs"
    assert [p.relative_to(refs).as_posix() for p in refs.rglob("*") if p.is_file()] == [ref]
    assert (refs / ref).read_text() == COMMIT
    assert try_to_load_from_cache(REPO, "config.json", cache_dir=tmp_path, revision=ref) is not None


def test_a_commit_sha_gets_no_ref(hub: FakeHub, tmp_path: Path) -> None:
    pull(hub, tmp_path, COMMIT)
    assert not (tmp_path / "models--org--tiny-model" / "refs").exists()
    assert try_to_load_from_cache(REPO, "sub/x.bin", cache_dir=tmp_path, revision=COMMIT) is not None
    assert try_to_load_from_cache(REPO, "sub/x.bin", cache_dir=tmp_path, revision="main") is None


def test_placement_paths(tmp_path: Path) -> None:
    p = placement(tmp_path, REPO, commit=COMMIT, path="sub/x.bin", etag=SHA, revision="main")
    repo = tmp_path / "models--org--tiny-model"
    assert p == CachePlacement(repo / "blobs" / SHA, repo / "snapshots" / COMMIT / "sub" / "x.bin", repo / "refs/main")
    assert placement(tmp_path, REPO, commit=COMMIT, path="a", etag=SHA, revision=COMMIT).ref is None
    assert list(tmp_path.iterdir()) == []  # placement creates nothing


def test_relinking_is_idempotent_and_moves_the_ref(tmp_path: Path) -> None:
    p = placement(tmp_path, REPO, commit=COMMIT, path="sub/x.bin", etag=SHA, revision="main")
    p.blob.parent.mkdir(parents=True)
    p.blob.write_bytes(b"abc")
    first = link_into_snapshot(p, commit=COMMIT)
    target, inode = os.readlink(first), first.lstat().st_ino
    assert link_into_snapshot(p, commit=COMMIT) == first
    assert (os.readlink(first), first.lstat().st_ino) == (target, inode)  # left alone, not remade
    assert sorted(os.listdir(first.parent)) == ["x.bin"] and os.listdir(p.ref.parent if p.ref else tmp_path) == ["main"]
    first.unlink()
    first.symlink_to("../../../blobs/somewhere-else")
    assert link_into_snapshot(p, commit=COMMIT).resolve() == p.blob.resolve()  # a wrong pointer is replaced
    newer = placement(tmp_path, REPO, commit=OTHER, path="sub/x.bin", etag=SHA, revision="main")
    link_into_snapshot(newer, commit=OTHER)
    assert p.ref is not None and p.ref.read_text() == OTHER  # main moved on; the old snapshot stays
    assert first.resolve() == newer.pointer.resolve() == p.blob.resolve()


def test_linking_before_the_blob_is_complete_fails(tmp_path: Path) -> None:
    p = placement(tmp_path, REPO, commit=COMMIT, path="x.gguf", etag=SHA, revision="main")
    with pytest.raises(DownloadError, match=r"its blob .* is missing"):
        link_into_snapshot(p, commit=COMMIT)
    assert not p.pointer.exists() and p.ref is not None and not p.ref.exists()


def test_linking_with_another_commit_than_placed_fails(tmp_path: Path) -> None:
    p = placement(tmp_path, REPO, commit=COMMIT, path="x.gguf", etag=SHA, revision="main")
    p.blob.parent.mkdir(parents=True)
    p.blob.write_bytes(b"abc")
    with pytest.raises(DownloadError, match="not in the snapshot folder of commit"):
        link_into_snapshot(p, commit=OTHER)


@pytest.mark.parametrize("hard_links", [True, False])
def test_without_symlinks_the_pointer_is_a_hard_link_or_a_copy(
    hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hard_links: bool
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError(1314, "A required privilege is not held by the client")

    monkeypatch.setattr(hf_cache.os, "symlink", refuse)
    if not hard_links:
        monkeypatch.setattr(hf_cache.os, "link", refuse)
    pointers = pull(hub, tmp_path)
    for path, data in FILES.items():
        assert not pointers[path].is_symlink() and pointers[path].read_bytes() == data
        assert (pointers[path].stat().st_nlink == 2) is hard_links
        assert try_to_load_from_cache(REPO, path, cache_dir=tmp_path) == str(pointers[path])
    assert [r.nb_files for r in scan_cache_dir(tmp_path).repos] == [3]
    assert pull(hub, tmp_path) == pointers  # again, over the existing pointers


@pytest.mark.parametrize("repo", ["tiny", "a/b/c", "../x", "a/..", "..", "a--b/c", "a/b/", "/a/b", "a\\b/c", ""])
def test_bad_repo_ids_are_refused(tmp_path: Path, repo: str) -> None:
    with pytest.raises(BadRepoId):
        placement(tmp_path, repo, commit=COMMIT, path="x", etag=SHA, revision=None)


@pytest.mark.parametrize("path", ["../evil", "sub/../../evil", "/etc/passwd", "C:evil", "a\\b", "a//b", ".", ""])
def test_bad_paths_are_refused(tmp_path: Path, path: str) -> None:
    with pytest.raises(UnsafeFileName):
        placement(tmp_path, REPO, commit=COMMIT, path=path, etag=SHA, revision=None)


@pytest.mark.parametrize("revision", ["../../x", "/abs", "a/../b", ""])
def test_bad_revisions_are_refused(tmp_path: Path, revision: str) -> None:
    with pytest.raises(UnsafeFileName):
        placement(tmp_path, REPO, commit=COMMIT, path="x", etag=SHA, revision=revision)


@pytest.mark.parametrize(
    ("commit", "etag", "revision", "message"),
    [
        ("main", SHA, None, "not a commit sha"),
        ("../" + COMMIT[3:], SHA, None, "not a commit sha"),
        (COMMIT, "../x", None, "cannot name a blob"),
        (COMMIT, "", None, "cannot name a blob"),
        (COMMIT, "a/b", None, "cannot name a blob"),
        (COMMIT, SHA, OTHER, f"asked for commit {OTHER}"),
    ],
)
def test_bad_commits_etags_and_mismatched_shas_are_refused(
    tmp_path: Path, commit: str, etag: str, revision: str | None, message: str
) -> None:
    with pytest.raises(DownloadError, match=message):
        placement(tmp_path, REPO, commit=commit, path="x", etag=etag, revision=revision)


def test_hub_cache_dir_follows_huggingface_hub(tmp_path: Path) -> None:
    code = "from engines.downloads.hf_cache import hub_cache_dir; print(hub_cache_dir())"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    for extra, expected in (
        ((("HF_HOME", tmp_path / "home"),), tmp_path / "home" / "hub"),
        (
            (("HF_HOME", tmp_path / "home"), ("HF_HUB_CACHE", tmp_path / "hub")),
            tmp_path / "hub",
        ),
    ):
        run_env = env | {name: str(value) for name, value in extra}
        out = subprocess.run([sys.executable, "-c", code], env=run_env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == str(expected)
    from huggingface_hub import constants

    assert hub_cache_dir() == Path(constants.HF_HUB_CACHE)
