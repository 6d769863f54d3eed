"""The OpenAI-compatible HTTP API over an EngineManager (`llm-tui serve`, the app's serve toggle).

Needs the `serve` extra (FastAPI, uvicorn); nothing here is imported until a server starts.
"""

from __future__ import annotations

import importlib.util

from engines.errors import LlmTuiError

INSTALL_HINT = "pip install 'llm-tui[serve]'"


class ServeUnavailable(LlmTuiError):
    """The `serve` extra (FastAPI, uvicorn) is not installed."""


def require_serve_extra() -> None:
    """Raise ServeUnavailable, saying what to install, unless FastAPI and uvicorn can be imported."""
    missing = [name for name in ("fastapi", "uvicorn") if importlib.util.find_spec(name) is None]
    if missing:
        raise ServeUnavailable(f"the API server needs {' and '.join(missing)}: {INSTALL_HINT}")
