"""The [serve] table: values, refusals naming the key, environment, saving with keys (mode 0600), redaction."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from engines.config.load import config_to_toml_dict, load_config, save_config
from engines.config.serve import ServeConfig
from engines.errors import ConfigError


def test_values_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[serve]\nhost = "0.0.0.0"\nport = 9001\napi_keys = ["k-one", "k-two"]\nrequests_per_minute = 60\n'
        "max_tokens = 256\nlaunch_on_demand = true\nmystery = 1\n"
    )
    config = load_config(path, env={})
    serve = config.serve
    assert (serve.host, serve.port, serve.requests_per_minute, serve.max_tokens) == ("0.0.0.0", 9001, 60, 256)
    assert serve.launch_on_demand is True and [k.reveal() for k in serve.api_keys] == ["k-one", "k-two"]
    assert any("serve: unknown key 'mystery'" in w for w in config.warnings)
    assert config.origins["serve"].startswith("file")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("port = 70000", "serve.port must be a port number"),
        ("port = -1", "serve.port must be a port number"),
        ('api_keys = ["", "x"]', "serve.api_keys must be a list of non-empty key strings"),
        ("api_keys = [1]", "serve.api_keys must be a list"),
        ("max_body_bytes = 10", "serve.max_body_bytes must be a number of bytes, at least 1024"),
        ('launch_on_demand = "maybe"', "serve.launch_on_demand must be true or false"),
        ('host = ""', "serve.host must be a non-empty string"),
    ],
)
def test_bad_values_are_refused_naming_the_key(tmp_path: Path, line: str, expected: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f"[serve]\n{line}\n")
    with pytest.raises(ConfigError, match=expected):
        load_config(path, env={})


def test_keys_in_the_file_never_show_in_messages(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[serve]\napi_keys = ["SecretKeyZZ9"]\n')
    config = load_config(path, env={})
    assert "SecretKeyZZ9" not in repr(config) and "SecretKeyZZ9" not in json.dumps(config.redacted())
    assert config.redacted()["serve"]["api_keys"] == ["********"]  # type: ignore[index]


def test_environment_adds_keys_and_overrides_host_and_port() -> None:
    serve = ServeConfig().with_keys("file-key")
    out = serve.with_env(
        {"LLM_TUI_API_KEY": " a1, b2 ,,file-key", "LLM_TUI_SERVE_HOST": "::1", "LLM_TUI_SERVE_PORT": "0"}
    )
    assert [k.reveal() for k in out.api_keys] == ["file-key", "a1", "b2"]
    assert (out.host, out.port) == ("::1", 0)
    with pytest.raises(ConfigError, match="LLM_TUI_SERVE_PORT"):
        ServeConfig().with_env({"LLM_TUI_SERVE_PORT": "eighty"})


def test_saving_a_key_writes_mode_0600_and_loads_back(tmp_path: Path) -> None:
    source = tmp_path / "in.toml"
    source.write_text('[serve]\nport = 8123\napi_keys = ["k-save"]\n')
    document = config_to_toml_dict(load_config(source, env={}))
    assert document["serve"] == {"port": 8123, "api_keys": ["k-save"]}
    target = tmp_path / "out.toml"
    save_config(document, target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert load_config(target, env={}).serve == ServeConfig(port=8123).with_keys("k-save")
