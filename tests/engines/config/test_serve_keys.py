"""Named API keys in [serve]: [[serve.keys]], a keys file, key_env read from the environment, refusals that name
the entry at fault, saving (key_env kept, the keys file's keys left in it) and redaction."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from engines.config.load import config_to_toml_dict, load_config, save_config
from engines.config.redact import holds_secret, redact
from engines.config.serve import ApiKey, ServeConfig, serve_table
from engines.errors import ConfigError
from engines.secret import Secret

SECRET = "sk-named-key-Zq81"
FILE_SECRET = "sk-from-keys-file-Yw42"

KEYS = f"""
[serve]
api_keys = ["sk-legacy-1"]
[[serve.keys]]
name = "grafana"
key_env = "GRAFANA_KEY"
scopes = ["metrics"]
requests_per_minute = 60
[[serve.keys]]
name = "app.one"
key = "{SECRET}"
scopes = ["infer", "metrics"]
tokens_per_minute = 100000
"""


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_named_keys_from_the_file_and_the_environment(tmp_path: Path) -> None:
    serve = load_config(write(tmp_path / "c.toml", KEYS), env={}).serve
    grafana, app = serve.keys
    assert (grafana.name, grafana.scopes, grafana.requests_per_minute, grafana.key_env) == (
        "grafana",
        frozenset({"metrics"}),
        60,
        "GRAFANA_KEY",
    )
    assert not grafana.usable  # until the environment is read: no request can match an empty secret
    assert (app.name, app.secret.reveal(), app.tokens_per_minute) == ("app.one", SECRET, 100000)
    assert app.allows("infer") and not app.allows("admin")
    resolved = serve.with_env({"GRAFANA_KEY": " sk-grafana "})
    assert resolved.keys[0].secret.reveal() == "sk-grafana"
    assert [(k.name, k.scopes) for k in resolved.all_keys()] == [
        ("grafana", frozenset({"metrics"})),
        ("app.one", frozenset({"infer", "metrics"})),
        ("key-1", frozenset({"infer", "metrics", "admin"})),  # api_keys: admin keys named key-1, key-2...
    ]
    assert resolved.with_env({"GRAFANA_KEY": "sk-grafana"}) == resolved  # reading it again changes nothing


def test_a_missing_key_env_variable_is_named(tmp_path: Path) -> None:
    serve = load_config(write(tmp_path / "c.toml", KEYS), env={}).serve
    with pytest.raises(ConfigError) as caught:
        serve.with_env({"GRAFANA_KEY": "  "})
    message = str(caught.value)
    assert "GRAFANA_KEY" in message and "grafana" in message and "c.toml: serve.keys[0]" in message, message


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        (
            '[[serve.keys]]\nname = "a"\nkey = "k1"\nscopes = ["infer"]\n[[serve.keys]]\nname = "a"\nkey = "k2"\n'
            'scopes = ["infer"]\n',
            r"serve\.keys\[1\]\.name: 'a' is already the name of .*serve\.keys\[0\]; names must be unique",
        ),
        (
            '[[serve.keys]]\nname = "a"\nkey = "k1"\nscopes = ["infer", "root"]\n',
            r"serve\.keys\[0\]\.scopes: unknown scope 'root'; the scopes are infer, metrics, admin",
        ),
        ('[[serve.keys]]\nname = "a"\nkey = "k1"\nscopes = []\n', r"serve\.keys\[0\]\.scopes must be a non-empty"),
        ('[[serve.keys]]\nname = "a"\nkey = "k1"\n', r"serve\.keys\[0\]: scopes is required"),
        ('[[serve.keys]]\nname = "a b"\nkey = "k1"\nscopes = ["infer"]\n', r"serve\.keys\[0\]\.name must be 1 to 64"),
        ('[[serve.keys]]\nname = "a\\n"\nkey = "k1"\nscopes = ["infer"]\n', r"serve\.keys\[0\]\.name must be 1 to 64"),
        ('[[serve.keys]]\nname = "key-2"\nkey = "k1"\nscopes = ["infer"]\n', r"'key-2' is reserved for .*api_keys"),
        (
            '[[serve.keys]]\nname = "a"\nkey = "k1"\nkey_env = "A"\nscopes = ["infer"]\n',
            r"serve\.keys\[0\]: give either key or key_env",
        ),
        ('[[serve.keys]]\nname = "a"\nkey_env = "1X"\nscopes = ["infer"]\n', r"key_env must be an environment var"),
        (
            '[[serve.keys]]\nname = "a"\nkey = "k1"\nscopes = ["infer"]\ntokens_per_minute = -5\n',
            r"serve\.keys\[0\]\.tokens_per_minute must be a whole number of tokens",
        ),
        ("[serve]\nkeys = 3\n", r"serve\.keys must be an array of tables"),
    ],
)
def test_bad_key_entries_are_refused_naming_the_entry(tmp_path: Path, entries: str, expected: str) -> None:
    path = write(tmp_path / "c.toml", entries)
    with pytest.raises(ConfigError, match=expected) as caught:
        load_config(path, env={})
    assert str(path) in str(caught.value)
    assert "k1" not in str(caught.value) and "k2" not in str(caught.value)  # a key's text is never shown


def test_unknown_keys_in_an_entry_are_warnings(tmp_path: Path) -> None:
    text = '[[serve.keys]]\nname = "a"\nkey = "k1"\nscopes = ["infer"]\nrequest_per_minute = 5\n'
    config = load_config(write(tmp_path / "c.toml", text), env={})
    assert any("serve.keys[0]: unknown key 'request_per_minute' ignored" in w for w in config.warnings)


def test_the_keys_file_is_read_with_the_environment_and_must_be_private(tmp_path: Path) -> None:
    keys = tmp_path / "keys.toml"
    write(
        keys,
        f'[[keys]]\nname = "ops"\nkey = "{FILE_SECRET}"\nscopes = ["admin"]\n'
        '[[keys]]\nname = "ci"\nkey_env = "CI_KEY"\nscopes = ["infer"]\n',
    )
    config_file = write(tmp_path / "c.toml", KEYS.replace("[serve]\n", '[serve]\nkeys_file = "keys.toml"\n'))
    serve = load_config(config_file, env={}).serve
    assert serve.keys_file == keys and [k.name for k in serve.keys] == ["grafana", "app.one"]
    assert serve.has_keys
    resolved = serve.with_env({"GRAFANA_KEY": "g", "CI_KEY": "ci-secret"})
    assert [k.name for k in resolved.keys] == ["grafana", "app.one", "ops", "ci"]
    assert resolved.keys[2].secret.reveal() == FILE_SECRET and resolved.keys[3].secret.reveal() == "ci-secret"
    assert resolved.keys[2].keys_file == keys
    assert resolved.with_env({"GRAFANA_KEY": "g", "CI_KEY": "ci-secret"}).keys == resolved.keys  # read once

    keys.chmod(0o644)
    with pytest.raises(ConfigError, match=r"group or others may read or write it \(mode 0644\).*chmod 600") as caught:
        serve.with_env({"GRAFANA_KEY": "g", "CI_KEY": "c"})
    assert str(keys) in str(caught.value) and FILE_SECRET not in str(caught.value)
    keys.chmod(0o600)
    with pytest.raises(ConfigError, match="CI_KEY"):
        serve.with_env({"GRAFANA_KEY": "g"})


def test_keys_file_problems_are_clear(tmp_path: Path) -> None:
    serve = ServeConfig(keys_file=tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match=r"keys file .*absent\.toml: not found"):
        serve.with_env({})
    empty = write(tmp_path / "empty.toml", "")
    with pytest.raises(ConfigError, match="holds no \\[\\[keys\\]\\] entries"):
        ServeConfig(keys_file=empty).with_env({})
    same = write(tmp_path / "same.toml", '[[keys]]\nname = "app.one"\nkey = "x"\nscopes = ["infer"]\n')
    named = ServeConfig(keys=(ApiKey("app.one", Secret("y"), where="c.toml: serve.keys[0]"),), keys_file=same)
    with pytest.raises(ConfigError, match=r"'app\.one' is already the name of c\.toml: serve\.keys\[0\]"):
        named.with_env({})
    bad = write(tmp_path / "bad.toml", '[[keys]]\nname = "x"\nkey = "k"\nscopes = ["sudo"]\n')
    with pytest.raises(ConfigError, match=r"bad\.toml: keys\[0\]\.scopes: unknown scope 'sudo'"):
        ServeConfig(keys_file=bad).with_env({})
    assert ServeConfig(keys_file=bad).has_keys  # a keys file not read yet lets no request in free
    typo = write(tmp_path / "typo.toml", '[[keys]]\nname = "x"\nkey = "k"\nscopes = ["infer"]\nrpm = 5\n')
    with pytest.raises(ConfigError, match=r"typo\.toml: keys\[0\]: unknown key 'rpm' refused in a keys file"):
        ServeConfig(keys_file=typo).with_env({})
    other = write(tmp_path / "other.toml", '[[keys]]\nname = "x"\nkey = "k"\nscopes = ["infer"]\n[serve]\n')
    with pytest.raises(ConfigError, match=r"other\.toml: unknown key 'serve' refused in a keys file"):
        ServeConfig(keys_file=other).with_env({})


def test_saving_keeps_key_env_and_leaves_the_keys_files_keys_in_it(tmp_path: Path) -> None:
    keys = write(tmp_path / "keys.toml", f'[[keys]]\nname = "ops"\nkey = "{FILE_SECRET}"\nscopes = ["admin"]\n')
    source = write(tmp_path / "in.toml", KEYS.replace("[serve]\n", '[serve]\nkeys_file = "keys.toml"\n'))
    config = load_config(source, env={})
    served = config.serve.with_env({"GRAFANA_KEY": "sk-from-the-env"})
    table = serve_table(served)
    assert table["keys"] == [
        {"name": "grafana", "key_env": "GRAFANA_KEY", "scopes": ["metrics"], "requests_per_minute": 60},
        {"name": "app.one", "key": SECRET, "scopes": ["infer", "metrics"], "tokens_per_minute": 100000},
    ]
    assert table["keys_file"] == str(keys) and table["api_keys"] == ["sk-legacy-1"]
    text = json.dumps(table)
    assert "sk-from-the-env" not in text and FILE_SECRET not in text
    document = config_to_toml_dict(config)
    target = tmp_path / "out.toml"
    save_config(document, target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    again = load_config(target, env={}).serve
    assert again == config.serve


def test_a_key_env_only_file_is_not_private_but_a_key_is(tmp_path: Path) -> None:
    only_env = {"serve": {"keys": [{"name": "a", "key_env": "A_KEY", "scopes": ["infer"]}]}}
    with_key = {"serve": {"keys": [{"name": "a", "key": "sk-1", "scopes": ["infer"]}]}}
    assert not holds_secret(only_env) and holds_secret(with_key)
    save_config(only_env, tmp_path / "env.toml")
    save_config(with_key, tmp_path / "key.toml")
    assert stat.S_IMODE((tmp_path / "key.toml").stat().st_mode) == 0o600


def test_redaction_masks_named_keys(tmp_path: Path) -> None:
    config = load_config(write(tmp_path / "c.toml", KEYS), env={})
    shown = config.redacted()
    assert SECRET not in json.dumps(shown) and SECRET not in repr(config)
    keys = shown["serve"]["keys"]  # type: ignore[index]
    assert keys[1]["key"] == "********" and keys[1]["name"] == "app.one" and keys[0]["key_env"] == "GRAFANA_KEY"
    assert redact({"serve": {"keys": [{"name": "a", "key": SECRET}]}}) == {
        "serve": {"keys": [{"name": "a", "key": "********"}]}
    }


def test_root_path_idle_unload_access_log_and_metrics_without_key(tmp_path: Path) -> None:
    text = (
        '[serve]\nroot_path = "/llm/v1.x"\nidle_unload_s = 90\nmetrics_without_key = true\n'
        'access_log = "logs/access.jsonl"\naccess_log_max_bytes = 4096\naccess_log_backups = 2\n'
    )
    serve = load_config(write(tmp_path / "c.toml", text), env={}).serve
    assert (serve.root_path, serve.idle_unload_s, serve.metrics_without_key) == ("/llm/v1.x", 90.0, True)
    assert serve.access_log == tmp_path / "logs" / "access.jsonl"  # relative to the config file's folder
    assert (serve.access_log_max_bytes, serve.access_log_backups) == (4096, 2)
    assert serve_table(serve)["access_log"] == str(tmp_path / "logs" / "access.jsonl")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('root_path = "llm"', "serve.root_path must be a path prefix"),
        ('root_path = "/llm/"', "serve.root_path must be a path prefix"),
        ('root_path = "/llm/../x"', "serve.root_path must be a path prefix"),
        ('root_path = "/l lm"', "serve.root_path must be a path prefix"),
        ('root_path = "/llm\\n"', "serve.root_path must be a path prefix"),
        (f'root_path = "/{"a" * 200}"', "serve.root_path must be a path prefix"),
        ("idle_unload_s = 0", "serve.idle_unload_s must be a positive number of seconds"),
        ("access_log_backups = 0", "serve.access_log_backups must be a whole number of old files to keep"),
        ("access_log_max_bytes = 10", "serve.access_log_max_bytes must be a number of bytes"),
        ("metrics_without_key = 1", "serve.metrics_without_key must be true or false"),
        ("keys_file = 3", "serve.keys_file must be a non-empty string"),
    ],
)
def test_bad_serve_values_are_refused(tmp_path: Path, line: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected.replace(".", r"\.")):
        load_config(write(tmp_path / "c.toml", f"[serve]\n{line}\n"), env={})


def test_the_flag_helpers_resolve_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "keys.toml", '[[keys]]\nname = "ci"\nkey_env = "CI_KEY"\nscopes = ["infer"]\n')
    serve = ServeConfig().with_keys_file("keys.toml", {"CI_KEY": "sk-ci"}).with_access_log("logs/a.jsonl")
    assert serve.keys_file == tmp_path / "keys.toml" and serve.access_log == tmp_path / "logs" / "a.jsonl"
    assert [(k.name, k.secret.reveal()) for k in serve.all_keys()] == [("ci", "sk-ci")]
    with pytest.raises(ConfigError, match="CI_KEY"):
        ServeConfig().with_keys_file("keys.toml", {})
