"""`parallel` and `speculative`: from the file, the environment and the flags, into the launch options."""

from __future__ import annotations

from pathlib import Path

import pytest

from engines.config.load import load_config
from engines.errors import ConfigError
from engines.launch import default_options


def test_the_defaults_are_one_slot_and_no_drafting() -> None:
    options = default_options(load_config(env={}))
    assert (options.parallel, options.speculative) == (1, None)


def test_file_then_environment_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('parallel = 4\nspeculative = "prompt-lookup"\n')
    config = load_config(path, env={})
    assert (config.parallel, config.speculative) == (4, "prompt-lookup")
    config = load_config(path, env={"LLM_TUI_PARALLEL": "8", "LLM_TUI_SPECULATIVE": "off"})
    assert (config.parallel, config.speculative) == (8, None)
    config = load_config(path, env={"LLM_TUI_PARALLEL": "8"}, overrides={"parallel": "2"})
    assert default_options(config).parallel == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("parallel = 0", "a whole number of slots from 1 to 64"),
        ("parallel = 65", "a whole number of slots from 1 to 64"),
        ('parallel = "four"', "a whole number of slots from 1 to 64"),
        ('speculative = "medusa"', '"prompt-lookup" or "off"'),
    ],
)
def test_bad_values_are_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError, match=message):
        load_config(path, env={})
