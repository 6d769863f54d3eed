"""[[fleet]] in config.toml: each entry parsed and normalised, every bad value named with file and entry, layering,
redaction and the save round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engines.config.fleet import parse_fleet
from engines.config.load import config_to_toml_dict, load_config, save_config
from engines.errors import ConfigError
from engines.fleet.types import FleetMember


def load(tmp: Path, text: str) -> tuple[FleetMember, ...]:
    path = tmp / "config.toml"
    path.write_text(text)
    return load_config(path, env={}).fleet


def test_entries_are_parsed_and_urls_normalised(isolated_dirs: Path) -> None:
    fleet = load(
        isolated_dirs,
        """
[[fleet]]
name = "gpu-box"
url = "http://10.0.0.5:8000/v1/"
key_env = "GPU_BOX_KEY"

[[fleet]]
name = "vllm.a_1"
url = "https://infer.example.com/team/v1"
kind = "openai"
timeout_s = 0.5

[[fleet]]
name = "plain"
url = "http://box:9000/"
""",
    )
    assert fleet == (
        FleetMember("gpu-box", "http://10.0.0.5:8000", "llm-tui", "GPU_BOX_KEY", 2.0),
        FleetMember("vllm.a_1", "https://infer.example.com/team", "openai", None, 0.5),
        FleetMember("plain", "http://box:9000"),
    )


def test_no_fleet_is_empty(isolated_dirs: Path) -> None:
    assert load(isolated_dirs, 'theme = "textual-dark"\n') == ()


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('url = "http://a"', r"fleet\[0\]: name is required"),
        ('name = "a"', r"fleet\[0\]: url is required"),
        ('name = "has space"\nurl = "http://a"', r"fleet\[0\]\.name: use 1 to 64 letters"),
        (f'name = "{"x" * 65}"\nurl = "http://a"', r"fleet\[0\]\.name: use 1 to 64 letters"),
        ('name = "local"\nurl = "http://a"', r"fleet\[0\]\.name: 'local' is this machine's row"),
        ('name = "LOCAL"\nurl = "http://a"', r"fleet\[0\]\.name: 'local' is this machine's row"),
        ('name = "a"\nurl = "ftp://a"', r"fleet\[0\]\.url must be an http:// or https:// URL"),
        ('name = "a"\nurl = "http://"', r"fleet\[0\]\.url must be an http:// or https:// URL"),
        ('name = "a"\nurl = "http://a/?x=1"', r"fleet\[0\]\.url must be an http:// or https:// URL without \?query"),
        ('name = "a"\nurl = "http://a/#top"', r"fleet\[0\]\.url must be an http:// or https:// URL without \?query"),
        ('name = "a"\nurl = "http://a"\nkind = "vllm"', r'fleet\[0\]\.kind must be "llm-tui" or "openai"'),
        (
            'name = "a"\nurl = "http://a"\ntimeout_s = 0.1',
            r"fleet\[0\]\.timeout_s must be a number of seconds from 0.2",
        ),
        ('name = "a"\nurl = "http://a"\ntimeout_s = 61', r"fleet\[0\]\.timeout_s must be a number of seconds from 0.2"),
        ('name = "a"\nurl = "http://a"\ntimeout_s = "x"', r"fleet\[0\]\.timeout_s must be a number of seconds"),
        ('name = "a"\nurl = "http://a"\nkey_env = "1BAD"', r"fleet\[0\]\.key_env must be an environment variable name"),
        ('name = "a"\nurl = "http://a"\nkey_env = 3', r"fleet\[0\]\.key_env must be an environment variable name"),
    ],
)
def test_each_bad_value_is_named(isolated_dirs: Path, entry: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        load(isolated_dirs, f"[[fleet]]\n{entry}\n")
    assert str(isolated_dirs / "config.toml") in str(caught.value)


def test_a_second_entry_is_named_and_duplicates_refused(isolated_dirs: Path) -> None:
    with pytest.raises(ConfigError, match=r"fleet\[1\]\.name: 'a' is used by another fleet member"):
        load(isolated_dirs, '[[fleet]]\nname = "a"\nurl = "http://a"\n[[fleet]]\nname = "a"\nurl = "http://b"\n')


@pytest.mark.parametrize(
    "key", ["sk-proj-Abc123def456ghi789", "hf_AbCdEfGhIjKlMnOpQrStUvWx", "3f9aK2mZ8qL1xV7bN4cR6tY0wE5u"]
)
def test_a_key_in_key_env_is_refused_with_a_hint_and_never_shown(isolated_dirs: Path, key: str) -> None:
    with pytest.raises(ConfigError, match=r"fleet\[0\]\.key_env looks like an API key; key_env names") as caught:
        load(isolated_dirs, f'[[fleet]]\nname = "a"\nurl = "http://a"\nkey_env = "{key}"\n')
    assert key not in str(caught.value)


def test_fleet_must_be_an_array_of_tables() -> None:
    with pytest.raises(ConfigError, match=r"f.toml: fleet must be an array of tables \(\[\[fleet\]\]\)"):
        parse_fleet({"name": "a"}, "f.toml", [])
    with pytest.raises(ConfigError, match=r"f.toml: fleet\[0\] must be a table"):
        parse_fleet(["http://a"], "f.toml", [])


def test_unknown_keys_warn() -> None:
    warnings: list[str] = []
    parse_fleet([{"name": "a", "url": "http://a", "api_key": "x"}], "f.toml", warnings)
    assert warnings == [
        "f.toml: fleet[0]: unknown key 'api_key' ignored (known keys: name, url, kind, key_env, timeout_s)"
    ]


def test_user_file_replaces_the_base_fleet(isolated_dirs: Path) -> None:
    (isolated_dirs / "config.toml").write_text('[[fleet]]\nname = "base"\nurl = "http://base"\n')
    user = isolated_dirs / "xdg_config_home" / "llm-tui" / "config.toml"
    user.parent.mkdir(parents=True)
    user.write_text('[[fleet]]\nname = "mine"\nurl = "http://mine"\n')
    config = load_config(env={})
    assert [m.name for m in config.fleet] == ["mine"]
    assert config.origins["fleet"] == f"file {user}"


def test_redacted_and_saved_round_trip(isolated_dirs: Path) -> None:
    members = '[[fleet]]\nname = "a"\nurl = "http://a:1"\nkind = "openai"\nkey_env = "A_KEY"\ntimeout_s = 5\n'
    path = isolated_dirs / "config.toml"
    path.write_text(members)
    config = load_config(path, env={"A_KEY": "secret-value"})
    shown = config.redacted()["fleet"]
    assert shown == [{"name": "a", "url": "http://a:1", "kind": "openai", "key_env": "A_KEY", "timeout_s": 5.0}]
    assert "secret-value" not in json.dumps(config.redacted())
    doc = config_to_toml_dict(config)
    assert doc["fleet"] == shown
    out = isolated_dirs / "saved.toml"
    save_config(doc, out)
    assert load_config(out, env={}).fleet == config.fleet
