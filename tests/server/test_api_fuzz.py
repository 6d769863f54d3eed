"""The API fuzzed from its own OpenAPI schema (schemathesis) over a fake engine, in-process through ASGI, with a
key configured so every probe also checks that the key is enforced; then the request models' bounds.

Bounded for CI: a fixed number of examples per operation, derandomized (the same cases every run). The longer
run against a real `llm-tui serve` is bench/api_fuzz.py.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance
from schemathesis.generation.case import Case
from schemathesis.specs.openapi.schemas import OpenApiSchema
from starlette.testclient import TestClient

from engines.adapters.fake import FakeTranscriber
from engines.config.load import default_config
from engines.config.serve import ServeConfig
from engines.fleet.status import INSTANCES_PATH, METRICS_JSON_PATH, STATUS_PATH
from engines.manager import EngineManager
from engines.server.app import ServerContext, create_app
from engines.server.guard import Asgi
from engines.server.schemas import MAX_INPUTS, MAX_MESSAGES, MAX_NAME, MAX_STOP, CompletionRequest, sampling_params
from engines.types import ModelSpec

KEY = "fuzz-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
MODEL = "tiny"
EXAMPLES = 100
"""Per operation and phase (examples, coverage, fuzzing): for the 13 operations on 2 cores."""


@pytest.fixture(scope="module")
def app() -> Iterator[Asgi]:
    """The server's ASGI app over one fake model, with a key; it also transcribes, so that fuzzed uploads reach the
    audio decoder (random bytes must be a 400 naming the file, never a 500)."""
    manager = EngineManager()
    manager.start(ModelSpec(MODEL, format="fake", engines=("fake",)), engine=FakeTranscriber())
    try:
        yield create_app(ServerContext(manager, default_config(), ServeConfig().with_keys(KEY)))
    finally:
        manager.close()


def served_schema(app: Asgi) -> dict[str, Any]:
    """GET /openapi.json from the app itself."""
    with TestClient(app, base_url="http://127.0.0.1") as client:
        reply = client.get("/openapi.json", headers=AUTH)
    assert reply.status_code == 200, reply.text
    doc: dict[str, Any] = reply.json()
    return doc


@pytest.fixture(scope="module")
def api_schema(app: Asgi) -> OpenApiSchema:
    """The served schema, with `model` also naming the running model, so that cases reach the engine (a random
    name is only ever a 404)."""
    doc = served_schema(app)
    for component in doc["components"]["schemas"].values():
        model = component.get("properties", {}).get("model")
        if model is not None:
            # Longer than MODEL: a union whose members overlap is merged into one by the generator, never MODEL.
            other = {**model, "minLength": len(MODEL) + 1}
            component["properties"]["model"] = {"anyOf": [{"const": MODEL}, other]}
    schema = schemathesis.openapi.from_dict(doc)
    schema.app = app
    return schema


fuzzed = schemathesis.pytest.from_fixture("api_schema")


@fuzzed.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
)
def test_fuzzed_api_gives_no_server_error_and_keeps_its_schema(case: Case[Any]) -> None:
    # Every check but positive_data_acceptance ("a schema-valid request is a 2xx"): some refusals need the model
    # or the code (a vision-less model refuses images; image data must decode), and the fake model has no
    # vision. Its finds were fixed: the schema now says roles, part types, bounds and what is not supported.
    case.call_and_validate(headers=AUTH, excluded_checks=[positive_data_acceptance])


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
def test_streamed_reply_keeps_its_schema(api_schema: OpenApiSchema, path: str) -> None:
    # bench/api_fuzz.py's find on Gemma: each event was documented as a string; an event is an object with `data`.
    body: dict[str, Any] = {"model": MODEL, "stream": True, "stream_options": {"include_usage": True}, "max_tokens": 3}
    body |= {"messages": [{"role": "user", "content": "hi there"}]} if "chat" in path else {"prompt": "hi there"}
    case = api_schema[path]["POST"].Case(body=body, media_type="application/json")
    response = case.call(headers=AUTH)
    assert response.status_code == 200 and response.text.endswith("data: [DONE]\n\n")
    case.validate_response(response, headers=AUTH, excluded_checks=[positive_data_acceptance])


def test_server_alive_and_healthy_after_the_fuzzing(app: Asgi) -> None:
    with TestClient(app, base_url="http://127.0.0.1") as client:
        assert client.get("/healthz").json() == {"status": "ok", "instances": 1}
        reply = client.post(
            "/v1/chat/completions", headers=AUTH, json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
        )
    assert reply.status_code == 200 and reply.json()["choices"][0]["message"]["content"] == "Echo: hi"


def test_schema_documents_every_route_and_its_errors(app: Asgi) -> None:
    doc = served_schema(app)
    operations = {(method.upper(), path): op for path, ops in doc["paths"].items() for method, op in ops.items()}
    assert set(operations) - {("HEAD", "/healthz")} == {
        ("GET", "/healthz"),
        ("GET", "/metrics"),
        ("GET", METRICS_JSON_PATH),
        ("GET", STATUS_PATH),
        ("GET", INSTANCES_PATH),
        ("POST", INSTANCES_PATH),
        ("DELETE", INSTANCES_PATH + "/{run_id}"),
        ("GET", "/v1/models"),
        ("GET", "/v1/models/{name}"),
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/completions"),
        ("POST", "/v1/embeddings"),
        ("POST", "/v1/audio/transcriptions"),
    }
    for (method, path), op in operations.items():
        statuses = set(op["responses"])
        assert "422" not in statuses, path  # validation errors are 400 here, in OpenAI's shape
        assert "403" in statuses, path
        if path != "/healthz":
            assert {"401", "429"} <= statuses and op.get("security") is None, path
        if method == "POST":
            ok = "201" if path == INSTANCES_PATH else "200"  # a launch creates an instance
            assert {ok, "400", "404", "413", "415", "500", "503"} <= statuses, path
    assert doc["components"]["securitySchemes"] == {"bearer": {"type": "http", "scheme": "bearer"}}
    assert operations[("GET", "/healthz")]["security"] == []
    # The server's own limit on tokens is in the schema, so a client (or the fuzzer) sees it.
    max_tokens = doc["components"]["schemas"]["ChatRequest"]["properties"]["max_tokens"]["anyOf"][0]
    assert max_tokens["maximum"] == ServeConfig().max_tokens


# --- what the fuzzer found, one test each ---------------------------------------------------------------------


def post(app: Asgi, path: str, body: object, **headers: str) -> Any:
    with TestClient(app, base_url="http://127.0.0.1") as client:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return client.post(path, content=content, headers={**AUTH, "content-type": "application/json", **headers})


def test_wrong_method_is_405_with_allow(app: Asgi) -> None:
    # The fuzzer's ST204: the 405 had no `Allow` (RFC 9110), and a POST with no body type was a 415, not a 405.
    with TestClient(app, base_url="http://127.0.0.1") as client:
        for path in ("/v1/models", "/v1/models/tiny"):
            reply = client.post(path, headers=AUTH)
            assert reply.status_code == 405 and reply.headers["allow"] == "GET", path
        reply = client.request("TRACE", "/v1/chat/completions", headers=AUTH)
    assert reply.status_code == 405 and reply.headers["allow"] == "POST"


def test_image_part_without_image_names_the_missing_field(app: Asgi) -> None:
    # It said "content part type 'image_url' is not supported (text, image_url)".
    part = {"type": "image_url", "text": "x"}
    reply = post(app, "/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": [part]}]})
    assert reply.status_code == 400
    assert reply.json()["error"]["param"] == "messages[0].content[0].image_url"
    assert "needs image_url" in reply.json()["error"]["message"]


def test_missing_body_says_so(app: Asgi) -> None:
    # It said "Field required" naming no field.
    reply = post(app, "/v1/chat/completions", b"")
    assert reply.status_code == 400
    assert reply.json()["error"]["message"] == "the request body is missing: send a JSON object"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"messages": [{"role": "user", "content": "x"}] * (MAX_MESSAGES + 1)}, "messages"),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}] * 1001}]}, "messages[0].content"),
        ({"stop": ["a"] * (MAX_STOP + 1)}, "stop"),
        ({"stop": ["a", ""]}, "stop[1]"),
        ({"stop": "x" * 1001}, "stop"),
        ({"max_tokens": 10**30}, "max_tokens"),
        ({"max_completion_tokens": 0}, "max_completion_tokens"),
        ({"n": 10**9}, "n"),
        ({"top_k": 2**40}, "top_k"),
        ({"repetition_penalty": math.inf}, "repetition_penalty"),
        ({"temperature": math.nan}, "temperature"),
        ({"top_p": -math.inf}, "top_p"),
        ({"model": "m" * 5000}, "model"),
        ({"messages": [{"role": "function", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}] * 129}, "tools"),
        ({"messages": [{"role": "user", "content": [{"type": "audio"}]}]}, "messages[0].content[0].type"),
    ],
)
def test_giant_or_out_of_range_values_are_a_quick_400_naming_the_field(
    app: Asgi, extra: dict[str, object], param: str
) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], **extra}
    started = time.perf_counter()
    # allow_nan: Python's JSON parser (the server's) takes NaN and Infinity, so a client can send them.
    reply = post(app, "/v1/chat/completions", json.dumps(body, allow_nan=True).encode())
    assert time.perf_counter() - started < 2.0
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"] == param


def test_embedding_and_completion_bounds(app: Asgi) -> None:
    assert post(app, "/v1/embeddings", {"model": MODEL, "input": ["a"] * (MAX_INPUTS + 1)}).status_code == 400
    reply = post(app, "/v1/embeddings", {"model": MODEL, "input": ["a", ""]})
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "input[1]"
    reply = post(app, "/v1/completions", {"model": MODEL, "prompt": ["a", "b"]})
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "prompt"


def test_any_integer_seed_reaches_the_engines_in_their_range() -> None:
    # torch.manual_seed refuses seeds past 2**64 - 1 (a 500 on the transformers engine): seeds are taken modulo 2**64.
    for seed, taken in ((7, 7), (-1, 2**64 - 1), (2**64 + 7, 7), (-(2**70), 0)):
        request = CompletionRequest.model_validate({"model": MODEL, "prompt": "hi", "seed": seed})
        assert sampling_params(request, None, "max_tokens", 10).seed == taken


@pytest.mark.parametrize("launch_on_demand", [False, True])
def test_long_model_name_is_404_not_500(launch_on_demand: bool) -> None:
    # A name past the file system's 255 bytes was looked up as a path: OSError "File name too long", a 500.
    # Past MAX_NAME it is a 400 before any lookup.
    manager = EngineManager()
    serve = dataclasses.replace(ServeConfig().with_keys(KEY), launch_on_demand=launch_on_demand)
    app = create_app(ServerContext(manager, default_config(), serve))
    try:
        for name, status in (("m" * 300, 404), ("m" * (MAX_NAME + 1), 400)):
            chat = {"model": name, "messages": [{"role": "user", "content": "hi"}]}
            assert post(app, "/v1/chat/completions", chat).status_code == status
            assert post(app, "/v1/embeddings", {"model": name, "input": "hi"}).status_code == status
    finally:
        manager.close()
