"""A fake `llm-tui serve` for the fleet: `GET /v1/llm-tui/status` (a real status document, built by
engines.fleet.status from fake instances and the fake telemetry's two GPUs) and the admin routes
`POST /v1/llm-tui/instances` (201 `{"instance": ...}`) and `DELETE /v1/llm-tui/instances/{run_id}`.

With `api_key`, a request without `Authorization: Bearer <it>` gets the server's 401; `scopes` without "admin"
makes the admin routes answer 403 insufficient_scope, in the shape of engines/server's errors.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import replace
from typing import Any

from engines.fleet.status import INSTANCES_PATH, STATUS_PATH, instance_json, status_document
from engines.telemetry.fake import default_gpus
from engines.telemetry.snapshot import HostStats, Snapshot
from engines.types import Footprint, InstanceInfo, InstanceState
from tests.engines.fleet.fake_http import Answer, FakeHttp, Mode, error_answer, json_answer

GIB = 1 << 30


def fake_instance(run_id: str, model: str, *, state: InstanceState = InstanceState.READY) -> InstanceInfo:
    return InstanceInfo(
        run_id=run_id,
        model_id=model,
        engine="llama.cpp",
        device="cuda:0",
        state=state,
        requests_served=12,
        last_tokens_per_s=48.5,
        started_at=1733600000.0,
        footprint=Footprint(ram_bytes=1 * GIB, vram_bytes=3 * GIB),
        pending_requests=3,
        slots=2,
        slots_busy=2,
    )


def fake_snapshot() -> Snapshot:
    host = HostStats(cpu_pct=23.5, ram_used_bytes=20 * GIB, ram_total_bytes=64 * GIB)
    return Snapshot(taken_at=1733600000.0, gpus=default_gpus(), host=host)


class FakeStatus(FakeHttp):
    def __init__(
        self,
        instances: tuple[InstanceInfo, ...] | None = None,
        models: tuple[str, ...] = ("gemma-3-270m", "qwen3-0.6b"),
        *,
        api_key: str | None = None,
        scopes: tuple[str, ...] = ("infer", "metrics", "admin"),
        key_name: str = "ops",
        mode: Mode = "ok",
        keep_alive: bool = True,
    ) -> None:
        self.instances = list(instances if instances is not None else (fake_instance("r1", "gemma-3-270m"),))
        self.models = models
        self.api_key = api_key
        self.scopes = scopes
        self.key_name = key_name
        self.document: dict[str, Any] | None = None  # answer this instead of the built document
        super().__init__(mode=mode, keep_alive=keep_alive)

    def answer(self, method: str, path: str, headers: dict[str, str], body: Any) -> Answer:
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            message = "missing or wrong API key: send it as 'Authorization: Bearer KEY'"
            return error_answer(401, message, code="invalid_api_key")
        if method == "GET" and path == STATUS_PATH:
            doc = self.document or status_document(self.instances, fake_snapshot(), self.models)
            return json_answer(200, doc)
        if path == INSTANCES_PATH or path.startswith(INSTANCES_PATH + "/"):
            if "admin" not in self.scopes:
                scopes = ", ".join(self.scopes)
                message = f"the key {self.key_name!r} may use {scopes}, not admin: launching and stopping need admin"
                return error_answer(403, message, code="insufficient_scope", kind="permission_error")
            return self.admin(method, path, body)
        return error_answer(404, f"no route {path}", code="not_found")

    def admin(self, method: str, path: str, body: Any) -> Answer:
        if method == "POST" and path == INSTANCES_PATH:
            model = body.get("model") if isinstance(body, dict) else None
            if model not in self.models:
                return error_answer(404, f"model {model!r} is not in this server's catalog", code="model_not_found")
            info = replace(fake_instance(f"r{len(self.instances) + 1}", model), state=InstanceState.LOADING)
            if body.get("engine"):
                info = replace(info, engine=body["engine"])
            self.instances.append(info)
            return json_answer(201, {"instance": instance_json(info)})
        if method == "DELETE":
            run_id = urllib.parse.unquote(path.removeprefix(INSTANCES_PATH + "/"))
            if not any(i.run_id == run_id for i in self.instances):
                return error_answer(404, f"no instance {run_id!r}", code="instance_not_found")
            self.instances = [i for i in self.instances if i.run_id != run_id]
            return json_answer(200, {"stopped": run_id})
        return error_answer(405, "method not allowed")
