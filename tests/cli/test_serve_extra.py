"""Without the `serve` extra, `llm-tui serve` and the app's toggle say what to install, in one line."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from importlib.machinery import ModuleSpec

import pytest

from cli.main import main
from engines.server import ServeUnavailable, require_serve_extra


def without(*names: str) -> Callable[..., ModuleSpec | None]:
    real = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> ModuleSpec | None:
        return None if name in names else real(name, package)

    return find_spec


def test_the_missing_packages_are_named_with_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", without("uvicorn"))
    with pytest.raises(ServeUnavailable, match=r"needs uvicorn: pip install 'llm-tui\[serve\]'"):
        require_serve_extra()
    monkeypatch.setattr(importlib.util, "find_spec", without("fastapi", "uvicorn"))
    with pytest.raises(ServeUnavailable, match="needs fastapi and uvicorn"):
        require_serve_extra()


def test_serve_without_the_extra_is_one_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], isolated_dirs: object
) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", without("fastapi"))
    monkeypatch.setattr(sys, "argv", ["llm-tui"])
    assert main(["serve", "--port", "0"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "llm-tui: error: the API server needs fastapi: pip install 'llm-tui[serve]'"
