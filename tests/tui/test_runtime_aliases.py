"""Saving an alias from the app keeps the aliases of the read-only defaults file underneath."""

from __future__ import annotations

from pathlib import Path

from engines.config.load import load_config, user_config_path
from tui.runtime import Runtime


def test_an_alias_saved_keeps_the_defaults_files_aliases(isolated_dirs: Path) -> None:
    checkout = isolated_dirs / "config.toml"  # the working folder's file: documented defaults, never written
    checkout.write_text('[aliases]\nsmall = "gemma-3-270m"\n', encoding="utf-8")
    before = checkout.read_bytes()
    runtime = Runtime(load_config(env={}, cwd=isolated_dirs))
    try:
        runtime.set_alias("mine", "qwen-7b-q4_k_m")
        assert runtime.config.aliases == {"small": "gemma-3-270m", "mine": "qwen-7b-q4_k_m"}
    finally:
        runtime.close()
    assert checkout.read_bytes() == before
    assert 'mine = "qwen-7b-q4_k_m"' in user_config_path().read_text(encoding="utf-8")
    assert load_config(env={}, cwd=isolated_dirs).aliases == {"small": "gemma-3-270m", "mine": "qwen-7b-q4_k_m"}
