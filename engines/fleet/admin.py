"""Admin actions on another llm-tui: launch a model there, stop one of its instances (its key needs admin scope).

`POST {url}/v1/llm-tui/instances` with `{"model", "engine"}` answers 201 `{"instance": {...}}` (the fields of
engines.fleet.status.instance_json); `DELETE {url}/v1/llm-tui/instances/{run_id}` stops one. Every failure is a
FleetError naming the host, with the server's own message where it gives one.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from engines.fleet.errors import FleetError
from engines.fleet.http import (
    ERROR_BODY,
    api_key,
    base_url,
    clean,
    error_code,
    headers,
    json_body,
    status_error,
    transport_error,
)
from engines.fleet.read_status import instance_from_json
from engines.fleet.status import INSTANCES_PATH
from engines.fleet.types import FleetInstance, FleetMember

if TYPE_CHECKING:
    import httpx

STOP_TIMEOUT_S = 60.0
_MAX_ANSWER = 1 << 20


def _writable(member: FleetMember, env: Mapping[str, str]) -> str | None:
    """The key to send; FleetError for a read-only member or a key variable that is not set."""
    if member.kind == "openai":
        raise FleetError(f"{member.name} is a read-only member (kind openai)")
    try:
        return api_key(member, env)
    except FleetError as exc:
        raise FleetError(f"host {member.name}: {exc}") from None


async def _send(
    member: FleetMember,
    key: str | None,
    method: str,
    url: str,
    body: Any,
    *,
    transport: httpx.AsyncBaseTransport | None,
    timeout_s: float,
) -> tuple[int, bytes]:
    import httpx

    async with httpx.AsyncClient(transport=transport, follow_redirects=False, trust_env=False) as client:
        try:
            async with client.stream(method, url, json=body, headers=headers(key), timeout=timeout_s) as resp:
                data = bytearray()
                async for chunk in resp.aiter_bytes():
                    data += chunk
                    if len(data) > _MAX_ANSWER:
                        raise FleetError(f"host {member.name}: the answer is too large")
                status = resp.status_code
        except httpx.HTTPError as exc:
            raise FleetError(f"host {member.name}: {transport_error(exc, timeout_s)}") from None
    if status >= 300:
        raise _refused(member, status, bytes(data[:ERROR_BODY]), key)
    return status, bytes(data)


def _refused(member: FleetMember, status: int, body: bytes, key: str | None) -> FleetError:
    if status == 403 and error_code(body) == "insufficient_scope":
        message = status_error(status, body, key).removeprefix("HTTP 403: ")
        return FleetError(clean(f"host {member.name}: this key has no admin scope ({message})", key, 300))
    return FleetError(f"host {member.name}: {status_error(status, body, key)}")


async def launch_on(
    member: FleetMember,
    env: Mapping[str, str],
    model: str,
    engine: str | None = None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    timeout_s: float = 600,
) -> FleetInstance:
    """Launch `model` (with `engine`, else the host's choice) on `member`; the instance as the host reports it."""
    key = _writable(member, env)
    body: dict[str, object] = {"model": model}
    if engine is not None:
        body["engine"] = engine
    _, answer = await _send(
        member, key, "POST", base_url(member) + INSTANCES_PATH, body, transport=transport, timeout_s=timeout_s
    )
    try:
        doc = json_body(answer, "the answer")
    except FleetError as exc:
        raise FleetError(f"host {member.name}: {exc}") from None
    instance = instance_from_json(doc.get("instance") if isinstance(doc, dict) else None)
    if instance is None:
        raise FleetError(f"host {member.name}: the answer holds no instance (is it an llm-tui of this version?)")
    return instance


async def stop_on(
    member: FleetMember,
    env: Mapping[str, str],
    run_id: str,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    timeout_s: float = STOP_TIMEOUT_S,
) -> None:
    """Stop the instance `run_id` on `member`."""
    key = _writable(member, env)
    url = f"{base_url(member)}{INSTANCES_PATH}/{urllib.parse.quote(run_id, safe='')}"
    await _send(member, key, "DELETE", url, None, transport=transport, timeout_s=timeout_s)
