"""References to models served elsewhere: ollama:NAME, remote:ENDPOINT/MODEL and --endpoint URL."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from engines.catalog.resolve_remote import api_base, endpoint_spec, remote_spec
from engines.config.load import Config, RemoteEndpoint
from engines.errors import BadRequest, ModelNotFound
from engines.launch import resolve_ref
from engines.secret import Secret


def config(tmp_path: Path) -> Config:
    endpoints = (
        RemoteEndpoint("vllm", "http://10.0.0.5:8000", api_key_env="VLLM_KEY"),
        RemoteEndpoint("local", "http://127.0.0.1:9000/v1/", api_key=Secret("sk-file")),
    )
    return Config(
        models_dir=tmp_path,
        data_dir=tmp_path,
        cache_dir=tmp_path,
        ollama_host="http://127.0.0.1:11500",
        remote_endpoints=endpoints,
        aliases={"q": "ollama:qwen2.5"},
    )


def test_ollama_references_name_the_daemon_and_the_tag(tmp_path: Path) -> None:
    spec = remote_spec("ollama:qwen2.5", config(tmp_path), {})
    assert spec is not None
    assert (spec.id, spec.format, spec.engines) == ("ollama:qwen2.5:latest", "ollama", ("ollama",))
    assert (spec.endpoint, spec.served_name, spec.path) == ("http://127.0.0.1:11500", "qwen2.5:latest", None)
    assert resolve_ref("q", config(tmp_path)).served_name == "qwen2.5:latest"  # through an alias
    with pytest.raises(BadRequest, match="invalid Ollama model name"):
        remote_spec("ollama:../x", config(tmp_path), {})
    assert remote_spec("gemma-3-270m", config(tmp_path), {}) is None


def test_remote_references_use_the_configured_endpoint_and_its_key(tmp_path: Path) -> None:
    spec = remote_spec("remote:vllm/meta-llama/Llama-3.1-8B", config(tmp_path), {"VLLM_KEY": "sk-env"})
    assert spec is not None
    assert (spec.format, spec.endpoint, spec.served_name) == (
        "remote",
        "http://10.0.0.5:8000/v1",
        "meta-llama/Llama-3.1-8B",
    )
    assert spec.api_key is not None and spec.api_key.reveal() == "sk-env" and "sk-env" not in repr(spec)
    local = remote_spec("remote:local/m", config(tmp_path), {})
    assert local is not None and local.endpoint == "http://127.0.0.1:9000/v1" and local.api_key == Secret("sk-file")
    with pytest.raises(
        ModelNotFound, match="no remote endpoint or fleet host named 'nope' in the config \\(known: vllm, local\\)"
    ):
        remote_spec("remote:nope/m", config(tmp_path), {})
    with pytest.raises(ModelNotFound, match="say which model of vllm"):
        remote_spec("remote:vllm", config(tmp_path), {})


def test_a_url_on_the_command_line(tmp_path: Path) -> None:
    spec = endpoint_spec("http://127.0.0.1:8080", "my-model", {"OPENAI_API_KEY": "sk-x"})
    assert (spec.endpoint, spec.served_name, spec.api_key) == ("http://127.0.0.1:8080/v1", "my-model", Secret("sk-x"))
    assert endpoint_spec("http://h:1/v1", "m", {}, "NONE").api_key is None
    with pytest.raises(BadRequest, match="--endpoint must be an http:// or https:// URL"):
        endpoint_spec("ftp://h", "m", {})


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("http://h:8000", "http://h:8000/v1"),
        ("http://h:8000/", "http://h:8000/v1"),
        ("http://h:8000/v1", "http://h:8000/v1"),
        ("https://api.example.com/openai/v1/", "https://api.example.com/openai/v1"),
        ("https://api.example.com/openai", "https://api.example.com/openai/v1"),
    ],
)
def test_api_base(url: str, base: str) -> None:
    assert api_base(url) == base


def test_a_remote_key_comes_from_the_environment_the_config_was_loaded_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VLLM_KEY", "sk-process")  # launching never reads the process environment itself
    loaded = replace(config(tmp_path), env={"VLLM_KEY": "sk-config"})
    spec = resolve_ref("remote:vllm/m", loaded)
    assert spec.api_key is not None and spec.api_key.reveal() == "sk-config"
    assert resolve_ref("remote:vllm/m", config(tmp_path)).api_key is None  # a config loaded without one
