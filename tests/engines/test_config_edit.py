"""Setting an alias rewrites only that line of the user's config.toml."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from engines.config import load_config
from engines.config_edit import set_alias
from engines.errors import ConfigError

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
