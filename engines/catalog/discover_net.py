"""Models offered by servers: an Ollama daemon's list and OpenAI-compatible /v1/models; never raises."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from engines.catalog.local_model import LocalModel, finish_models
from engines.config.load import RemoteEndpoint
from engines.secret import MASK

_MAX_REPLY = 8 << 20  # bytes of a /v1/models reply
_PARAM_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMBT]?)\s*$", re.IGNORECASE)
_SCALE = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}


@dataclass(frozen=True, slots=True)
class OllamaListing:
    """What an Ollama daemon offers, or why it could not be asked."""

    models: list[LocalModel]
    status: str
    ok: bool = False


@dataclass(frozen=True, slots=True)
class RemoteListing:
    """What an OpenAI-compatible endpoint offers, or why it could not be asked."""

    models: list[LocalModel]
    status: str
    ok: bool = False


# --- Ollama ---------------------------------------------------------------------------------------


def list_ollama(host: str, timeout_s: float = 2.0) -> OllamaListing:
    """The models an Ollama daemon has, via the official client; an unreachable daemon gives a status line."""
    shown = _redact_url(host)
    try:
        import ollama
    except ImportError:
        return OllamaListing([], "Ollama client not installed: pip install 'llm-tui[ollama]'")
    try:
        client = ollama.Client(host=host, timeout=timeout_s)
    except Exception as exc:  # an address the client cannot parse
        return OllamaListing([], f"Ollama address {shown} is not usable: {shorten(str(exc))}")
    try:
        with client:
            reply = client.list()
    except ollama.ResponseError as exc:
        return OllamaListing([], f"Ollama at {shown} answered with an error: {shorten(str(exc))}")
    except (ValueError, TypeError) as exc:  # not JSON, or JSON of another shape (pydantic's errors are ValueErrors)
        return OllamaListing([], f"Ollama at {shown} sent an unexpected reply: {shorten(str(exc), 120)}")
    except Exception as exc:  # refused, timed out, dropped: httpx and ollama errors alike
        return OllamaListing([], f"Ollama not reachable at {shown}: {_reason(exc, timeout_s)}")
    models = []
    for item in reply.models:
        if not item.model:
            continue
        details = item.details
        size_label = details.parameter_size if details else None
        models.append(
            LocalModel(
                id=f"ollama:{item.model}",
                source="ollama",
                format="ollama",
                name=item.model,
                size_bytes=None if item.size is None else int(item.size),
                params=parse_parameter_size(size_label),
                parameter_size=size_label,
                quantization=details.quantization_level if details else None,
                family=details.family if details else None,
            )
        )
    return OllamaListing(finish_models(models), f"Ollama at {shown}: {_count(len(models))}", ok=True)


def parse_parameter_size(label: str | None) -> int | None:
    """Turn Ollama's "268.10M" / "7B" into a count of parameters."""
    m = _PARAM_SIZE.match(label or "")
    return None if m is None else round(float(m[1]) * _SCALE[m[2].upper()])


# --- OpenAI-compatible endpoints ------------------------------------------------------------------


def list_remote(
    endpoint: RemoteEndpoint, timeout_s: float = 3.0, *, env: Mapping[str, str] | None = None
) -> RemoteListing:
    """GET {url}/v1/models with the endpoint's key; `env` (default os.environ) holds api_key_env's variable."""
    import httpx

    key = endpoint.resolve_api_key(os.environ if env is None else env)
    base = endpoint.url.rstrip("/")
    url = base + ("/models" if base.endswith("/v1") else "/v1/models")
    where = f"Remote endpoint {endpoint.name!r}"
    shown = _redact_url(url)

    def fail(text: str) -> RemoteListing:
        secret = key.reveal() if key else ""
        return RemoteListing([], text.replace(secret, MASK) if len(secret) >= 4 else text)

    headers = {"Accept": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key.reveal()}"
    try:
        # No redirects: the key must not follow a redirect to another host.
        with (
            httpx.Client(timeout=timeout_s, follow_redirects=False) as client,
            client.stream("GET", url, headers=headers) as resp,
        ):
            if resp.is_redirect:
                target = _redact_url(resp.headers.get("location", "?"))
                return fail(f"{where} at {shown} redirects to {target}; not followed (set the final URL)")
            if resp.status_code >= 400:
                hint = ""
                if resp.status_code in (401, 403):
                    source = f"${endpoint.api_key_env}" if endpoint.api_key_env else "api_key"
                    hint = f" (check the API key in {source})" if key else " (no API key set)"
                return fail(f"{where} at {shown}: HTTP {resp.status_code} {resp.reason_phrase}{hint}")
            body = bytearray()
            for chunk in resp.iter_bytes():
                body += chunk
                if len(body) > _MAX_REPLY:
                    return fail(f"{where} at {shown}: reply larger than {_MAX_REPLY} bytes")
    except Exception as exc:  # httpx errors, bad URLs: the listing reports instead of raising
        return fail(f"{where} not reachable at {shown}: {_reason(exc, timeout_s)}")
    models = _remote_models(endpoint.name, bytes(body))
    if isinstance(models, str):
        return fail(f"{where} at {shown}: not an OpenAI-compatible model list ({models})")
    return RemoteListing(finish_models(models), f"{where} at {shown}: {_count(len(models))}", ok=True)


def _remote_models(endpoint: str, body: bytes) -> list[LocalModel] | str:
    import json

    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:
        return f"invalid JSON: {shorten(str(exc))}"
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, list):
        return 'no "data" list'
    models = []
    for item in data:
        model_id = item.get("id") if isinstance(item, dict) else None
        if not isinstance(model_id, str) or not model_id:
            continue
        ctx = item.get("max_model_len")  # vLLM states the context it serves
        models.append(
            LocalModel(
                id=f"remote:{endpoint}/{model_id}",
                source="remote",
                format="remote",
                name=model_id,
                endpoint=endpoint,
                context_length=ctx if type(ctx) is int else None,
            )
        )
    return models


# --- helpers --------------------------------------------------------------------------------------


def _redact_url(url: str) -> str:
    """The URL without user:password@."""
    return re.sub(r"(?<=://)[^/@]*@", "", url)


def shorten(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _reason(exc: BaseException, timeout_s: float) -> str:
    # ollama raises a generic ConnectionError "from None"; the httpx error it hides says why.
    cause = exc.__context__ if isinstance(exc, ConnectionError) and exc.__context__ else exc
    if "Timeout" in type(cause).__name__:
        return f"timed out after {timeout_s:g} s"
    text = str(cause) or type(cause).__name__
    return shorten(text)


def _count(n: int) -> str:
    return f"{n} model" + ("" if n == 1 else "s")
