"""The app's [serve] settings are read once per configuration (the instances screen shows them every second), and
afresh when the API server starts, so a key removed from the keys file no longer gets in."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import engines.config.serve as serve_config
from engines.config.load import load_config
from tui.runtime import Runtime


def test_the_keys_file_is_read_once_for_the_screen_and_again_to_start(
    isolated_dirs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = isolated_dirs / "keys.toml"
    keys.write_text('[[keys]]\nname = "ops"\nkey = "sk-ops-0123456789"\nscopes = ["admin"]\n', encoding="utf-8")
    os.chmod(keys, 0o600)
    (isolated_dirs / "config.toml").write_text(f"[serve]\nkeys_file = {str(keys)!r}\n", encoding="utf-8")
    reads: list[Path] = []
    real = serve_config.read_keys_file
    monkeypatch.setattr(
        serve_config, "read_keys_file", lambda path, warnings: reads.append(path) or real(path, warnings)
    )
    runtime = Runtime(load_config(env={}, cwd=isolated_dirs))
    try:
        for _ in range(5):
            assert [k.name for k in runtime.serve_settings().keys] == ["ops"]
        assert len(reads) == 1
        keys.write_text('[[keys]]\nname = "ci"\nkey = "sk-ci-0123456789ab"\nscopes = ["infer"]\n', encoding="utf-8")
        assert [k.name for k in runtime.serve_settings(fresh=True).keys] == ["ci"]
        assert [k.name for k in runtime.serve_settings().keys] == ["ci"]  # and the screen shows it from then on
        assert len(reads) == 2
    finally:
        runtime.close()
