"""Model references served elsewhere: `ollama:NAME[:TAG]` (the Ollama daemon) and `remote:ENDPOINT/MODEL`
(an OpenAI-compatible endpoint from the config), or a base URL given on the command line.

They become ModelSpecs with no file: the engine talks to the server named in
`endpoint`, asks for `served_name`, and carries the endpoint's key as a Secret.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from pathlib import Path

from engines.config.load import Config
from engines.config.tables import RemoteEndpoint
from engines.config.values import Invalid, parse_url
from engines.errors import BadRequest, ModelNotFound
from engines.secret import Secret
from engines.types import ModelSpec

DEFAULT_KEY_ENV = "OPENAI_API_KEY"


def remote_spec(ref: str, config: Config, env: Mapping[str, str]) -> ModelSpec | None:
    """The spec of an `ollama:` or `remote:` reference; None for any other reference."""
    lowered = ref.lower()
    if lowered.startswith("ollama:"):
        from engines.downloads.ollama_source import normalise_name

        name = normalise_name(ref)
        return ModelSpec(
            id=f"ollama:{name}", format="ollama", engines=("ollama",), endpoint=config.ollama_host, served_name=name
        )
    if not lowered.startswith("remote:"):
        return None
    endpoint_name, _, model = ref[len("remote:") :].partition("/")
    endpoint = next((e for e in config.remote_endpoints if e.name == endpoint_name), None)
    if endpoint is None:
        endpoint = _fleet_endpoint(endpoint_name, config)
    if endpoint is None:
        names = [e.name for e in config.remote_endpoints] + [m.name for m in config.fleet]
        known = ", ".join(names) or "none configured"
        raise ModelNotFound(f"no remote endpoint or fleet host named {endpoint_name!r} in the config (known: {known})")
    if not model:
        raise ModelNotFound(f"say which model of {endpoint_name}: remote:{endpoint_name}/MODEL")
    return ModelSpec(
        id=ref,
        format="remote",
        engines=("remote",),
        endpoint=api_base(endpoint.url),
        served_name=model,
        api_key=endpoint.resolve_api_key(env),
    )


def _fleet_endpoint(name: str, config: Config) -> RemoteEndpoint | None:
    """A `[[fleet]]` host as an endpoint (the fleet screen chats with another host's models as remote:HOST/RUN)."""
    member = next((m for m in config.fleet if m.name == name), None)
    if member is None:
        return None
    return RemoteEndpoint(member.name, member.url, api_key_env=member.key_env)


def endpoint_spec(url: str, model: str, env: Mapping[str, str], key_env: str | None = DEFAULT_KEY_ENV) -> ModelSpec:
    """`llm-tui chat --endpoint URL MODEL`: the key comes from the environment variable `key_env`, if set."""
    try:
        base = api_base(parse_url(url, Path()))
    except Invalid as exc:
        raise BadRequest(f"--endpoint must be {exc.expected}, got {url!r}") from None
    key = env.get(key_env, "").strip() if key_env else ""
    return ModelSpec(
        id=model,
        format="remote",
        engines=("remote",),
        endpoint=base,
        served_name=model,
        api_key=Secret(key) if key else None,
    )


def api_base(url: str) -> str:
    """The OpenAI API root of a server: its URL with `/v1` added unless the path already names a version."""
    path = urllib.parse.urlsplit(url).path.rstrip("/")
    return url.rstrip("/") if path.rsplit("/", 1)[-1].startswith("v1") else url.rstrip("/") + "/v1"
