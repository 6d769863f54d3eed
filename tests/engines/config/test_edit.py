"""Edits of the user's config.toml (an alias, the settings screen's changes) rewrite only their own lines."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest

from engines.config.edit import (
    ConfigChanges,
    EndpointChange,
    apply_changes,
    parse_alias_line,
    reload_config,
    set_alias,
)
from engines.config.load import load_config
from engines.errors import ConfigError
from engines.secret import Secret

USER_FILE = """\
# my llm-tui settings
n_ctx = 8192  # long chats
future_key = "kept"   # unknown to this version

[aliases]
# the small one
tiny = "gemma-3-270m"
"""


def test_alias_added_and_removed_keeping_comments_and_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(USER_FILE)
    assert set_alias(path, "qwen", "qwen2.5-0.5b-instruct-q4_k_m") == {
        "tiny": "gemma-3-270m",
        "qwen": "qwen2.5-0.5b-instruct-q4_k_m",
    }
    text = path.read_text()
    assert text.startswith(USER_FILE)
    assert 'qwen = "qwen2.5-0.5b-instruct-q4_k_m"' in text
    config = load_config(path, env={})
    assert dict(config.aliases) == {"tiny": "gemma-3-270m", "qwen": "qwen2.5-0.5b-instruct-q4_k_m"}
    assert config.n_ctx == 8192

    assert set_alias(path, "qwen", None) == {"tiny": "gemma-3-270m"}
    assert path.read_text() == USER_FILE


def test_missing_file_is_created_with_an_aliases_table(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "config.toml"
    assert set_alias(path, "g", "gemma-3-270m") == {"g": "gemma-3-270m"}
    assert dict(load_config(path, env={}).aliases) == {"g": "gemma-3-270m"}


def test_a_file_holding_a_token_stays_private(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('hf_token = "hf_secret"\n')
    path.chmod(0o600)
    set_alias(path, "g", "gemma-3-270m")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert 'hf_token = "hf_secret"' in path.read_text()


@pytest.mark.parametrize(
    ("name", "ref", "message"),
    [
        ("two words", "gemma-3-270m", "no spaces"),
        ("", "gemma-3-270m", "use letters"),
        ("g", "  ", "model reference is empty"),
        ("a", "b", "would loop: a -> b -> a"),
        ("self", "self", "would loop: self -> self"),
    ],
)
def test_bad_aliases_are_refused_and_the_file_is_unchanged(tmp_path: Path, name: str, ref: str, message: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[aliases]\nb = "a"\n')
    with pytest.raises(ConfigError, match=message):
        set_alias(path, name, ref)
    assert path.read_text() == '[aliases]\nb = "a"\n'


def test_invalid_toml_is_reported_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("n_ctx = = 3\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        set_alias(path, "g", "gemma-3-270m")
    assert path.read_text() == "n_ctx = = 3\n"


# --- apply_changes: every edit of the settings screen in one write -------------------------------------

SETTINGS_FILE = """\
# my llm-tui settings

n_ctx = 8192  # long chats
future_key = "kept"   # unknown to this version

[aliases]
# the small one
tiny = "gemma-3-270m"

[defaults]
temperature = 0.7  # warm

[[remote_endpoints]]
name = "box"  # the GPU box
url = "http://127.0.0.1:9/v1"
extra = "unknown key, kept"

[mystery]  # a table this version does not know
x = 1
"""


def changed_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    """The lines only `before` has and those only `after` has."""
    import difflib

    diff = list(difflib.ndiff(before.splitlines(), after.splitlines()))
    return [d[2:] for d in diff if d.startswith("- ")], [d[2:] for d in diff if d.startswith("+ ")]


def test_changes_touch_only_their_lines(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(SETTINGS_FILE)
    changes = ConfigChanges(
        set={("n_ctx",): 4096, ("theme",): "nord", ("defaults", "temperature"): 0.2, ("defaults", "top_k"): 40},
        remove=(("aliases", "tiny"), ("not_there",)),
    )
    apply_changes(path, changes)
    removed, added = changed_lines(SETTINGS_FILE, path.read_text())
    assert removed == ["n_ctx = 8192  # long chats", 'tiny = "gemma-3-270m"', "temperature = 0.7  # warm"]
    assert sorted(added) == sorted(
        ["n_ctx = 4096  # long chats", 'theme = "nord"', "temperature = 0.2  # warm", "top_k = 40"]
    )
    config = load_config(path, env={})
    assert (config.n_ctx, config.theme, config.defaults.temperature, config.defaults.top_k) == (4096, "nord", 0.2, 40)
    assert dict(config.aliases) == {}


def test_missing_tables_are_created(tmp_path: Path) -> None:
    path = tmp_path / "new" / "config.toml"
    apply_changes(path, ConfigChanges(set={("defaults", "seed"): 7, ("aliases", "g"): "gemma-3-270m"}))
    config = load_config(path, env={})
    assert config.defaults.seed == 7
    assert dict(config.aliases) == {"g": "gemma-3-270m"}


def test_endpoints_are_added_updated_and_removed_keeping_their_other_keys(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(SETTINGS_FILE)
    update = EndpointChange("box", {"url": "http://127.0.0.1:10/v1", "api_key_env": "BOX_KEY"}, old_name="box")
    add = EndpointChange("second", {"url": "http://127.0.0.1:11/v1", "api_key": Secret("sk-2"), "api_key_env": None})
    apply_changes(path, ConfigChanges(endpoints=(update, add)))
    text = path.read_text()
    assert 'name = "box"  # the GPU box' in text and 'extra = "unknown key, kept"' in text
    assert text.endswith("[mystery]  # a table this version does not know\nx = 1\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # a key is in it now
    endpoints = load_config(path, env={}).remote_endpoints
    assert [(e.name, e.url, e.api_key_env) for e in endpoints] == [
        ("box", "http://127.0.0.1:10/v1", "BOX_KEY"),
        ("second", "http://127.0.0.1:11/v1", None),
    ]
    assert endpoints[1].api_key == Secret("sk-2")

    renamed = EndpointChange("gpu", {}, old_name="box")
    apply_changes(path, ConfigChanges(endpoints=(renamed,), remove_endpoints=("second",)))
    assert [e.name for e in load_config(path, env={}).remote_endpoints] == ["gpu"]
    assert "sk-2" not in path.read_text()


def test_an_endpoint_appended_at_the_end_leaves_no_trailing_blank_line(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('theme = "nord"\n')
    apply_changes(path, ConfigChanges(endpoints=(EndpointChange("a", {"url": "http://127.0.0.1:9/v1"}),)))
    assert path.read_text() == 'theme = "nord"\n\n[[remote_endpoints]]\nname = "a"\nurl = "http://127.0.0.1:9/v1"\n'


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            ConfigChanges(set={("gpu_memory_fraction",): 1.5}),
            "gpu_memory_fraction must be a number above 0 and at most 1",
        ),
        (ConfigChanges(set={("defaults", "temperature"): -1.0}), "temperature must be between 0 and 5"),
        (ConfigChanges(set={("defaults", "top_k"): "x"}), 'defaults.top_k must be an integer, got "x"'),
        (ConfigChanges(set={("aliases", "gemma-3-270m"): "tiny"}), "would loop"),
        (ConfigChanges(set={("aliases", "two words"): "x"}), "no spaces"),
        (ConfigChanges(remove_endpoints=("nope",)), "no remote endpoint named 'nope'"),
        (ConfigChanges(endpoints=(EndpointChange("box", {"url": "ftp://x"}, old_name="box"),)), "http:// or https://"),
    ],
)
def test_a_bad_change_writes_nothing(tmp_path: Path, changes: ConfigChanges, message: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(SETTINGS_FILE)
    with pytest.raises(ConfigError, match=re.escape(message)):
        apply_changes(path, changes)
    assert path.read_text() == SETTINGS_FILE


def test_a_token_makes_the_file_private_and_removing_it_works(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(SETTINGS_FILE)
    path.chmod(0o644)
    apply_changes(path, ConfigChanges(set={("hf_token",): Secret("hf_abc")}))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_config(path, env={}).hf_token == Secret("hf_abc")
    apply_changes(path, ConfigChanges(remove=(("hf_token",),)))
    assert path.read_text() == SETTINGS_FILE


def test_reload_keeps_what_the_environment_and_flags_set(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(SETTINGS_FILE)
    env = {"LLM_TUI_THEME": "nord", "LLM_TUI_DATA_DIR": str(tmp_path / "data")}
    current = load_config(path, env=env, overrides={"n_threads": 3})
    apply_changes(path, ConfigChanges(set={("theme",): "gruvbox", ("n_threads",): 8, ("n_ctx",): 2048}))
    fresh = reload_config(path, current)
    assert (fresh.theme, fresh.n_threads, fresh.n_ctx) == ("nord", 3, 2048)
    assert fresh.origins["theme"] == "env LLM_TUI_THEME" and fresh.origins["n_threads"] == "flag --threads"
    assert fresh.origins["n_ctx"] == f"file {path}"
    assert fresh.models_dir == tmp_path / "data" / "models"  # the default follows the overridden data_dir
    assert fresh == load_config(path, env=env, overrides={"n_threads": 3})
    assert fresh.env is env  # an endpoint added in the file finds its api_key_env in the same environment


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tiny", "write it as name = model reference"),
        ("two words = x", "no spaces"),
        ("q =  ", "model reference is empty"),
        ("tiny = other", "exists already"),
        ("gemma-3-270m = tiny", "would loop: gemma-3-270m -> tiny -> gemma-3-270m"),
    ],
)
def test_alias_lines_are_checked(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_alias_line(text, {"tiny": "gemma-3-270m"})


def test_an_alias_line_may_keep_its_own_name_when_edited() -> None:
    assert parse_alias_line(" tiny =  gemma-3-1b ", {"tiny": "gemma-3-270m"}, old="tiny") == ("tiny", "gemma-3-1b")
