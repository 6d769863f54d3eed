"""The fleet poller: every member polled at once over one keep-alive HTTP client, each within its own timeout.

A poll never raises. A host that fails keeps the data of its last successful poll, marked unreachable with a
short reason ("timed out after 2.0 s", "connection refused", "HTTP 401: ..."), and its `last_seen` unchanged.
Each host's whole poll runs under asyncio.wait_for, so a server that trickles bytes cannot hold the others.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from engines.fleet.errors import FleetError
from engines.fleet.http import api_key, base_url, get, json_body, seconds, status_error
from engines.fleet.prom_read import Counters, read_openai
from engines.fleet.read_status import host_view_from_status
from engines.fleet.status import STATUS_PATH
from engines.fleet.types import FleetMember, HostView

if TYPE_CHECKING:
    import httpx


class FleetPoller:
    """Polls `members` (config's [[fleet]]); `env` holds the variables their key_env name. Use from one event loop."""

    def __init__(
        self,
        members: Sequence[FleetMember],
        env: Mapping[str, str],
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        max_bytes: int = 4 << 20,
    ) -> None:
        self.members = tuple(members)
        self._env = env
        self._transport = transport
        self._clock = clock
        self._max_bytes = max_bytes
        self._client: httpx.AsyncClient | None = None
        self._last: dict[str, HostView] = {}
        """Each member's latest view (its last successful data when the latest poll failed)."""
        self._counters: dict[str, Counters] = {}
        """openai members: the generated-tokens counters of their previous poll, for tokens/s."""

    def _http(self) -> httpx.AsyncClient:
        import httpx  # here, not at import: the TUI imports this module before it needs HTTP

        if self._client is None:
            self._client = httpx.AsyncClient(
                transport=self._transport,
                follow_redirects=False,  # the key goes to the member's own URL only
                limits=httpx.Limits(max_connections=4 * len(self.members) + 4, keepalive_expiry=30),
                trust_env=False,  # a proxy from the environment must not see the keys
            )
        return self._client

    async def poll(self) -> list[HostView]:
        """Every member's view, in the order of `members`; never raises."""
        client = self._http()
        views = await asyncio.gather(*(self._poll_host(client, m) for m in self.members))
        return list(views)

    async def aclose(self) -> None:
        """Close the HTTP client (its kept-alive connections)."""
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def _poll_host(self, client: httpx.AsyncClient, member: FleetMember) -> HostView:
        started = time.perf_counter()
        try:
            view = await asyncio.wait_for(self._read(client, member), member.timeout_s)
        except TimeoutError:
            return self._failed(member, f"timed out after {seconds(member.timeout_s)} s")
        except FleetError as exc:
            return self._failed(member, str(exc))
        except Exception as exc:  # a poll never raises: an unforeseen failure is this host's error
            return self._failed(member, f"poll failed: {type(exc).__name__}: {str(exc)[:120]}")
        view = replace(view, latency_ms=round((time.perf_counter() - started) * 1000.0, 1))
        self._last[member.name] = view
        return view

    async def _read(self, client: httpx.AsyncClient, member: FleetMember) -> HostView:
        key = api_key(member, self._env)
        if member.kind == "openai":
            view, counters = await read_openai(
                client,
                member,
                key,
                previous=self._counters.get(member.name, {}),
                now=self._clock(),
                max_bytes=self._max_bytes,
            )
            self._counters[member.name] = counters
            return view
        status, body = await get(
            client, base_url(member) + STATUS_PATH, key, member.timeout_s, self._max_bytes, "the status document"
        )
        if status != 200:
            raise FleetError(status_error(status, body, key))
        doc = json_body(body, "the status document")
        return host_view_from_status(member, doc, polled_at=self._clock(), latency_ms=None)

    def _failed(self, member: FleetMember, error: str) -> HostView:
        now = self._clock()
        last = self._last.get(member.name)
        if last is None:
            view = HostView(member=member, reachable=False, polled_at=now, error=error)
        else:
            view = replace(last, reachable=False, polled_at=now, latency_ms=None, error=error)
        self._last[member.name] = view
        return view
