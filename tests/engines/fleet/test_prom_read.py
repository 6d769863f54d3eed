"""Reading engines we do not run (kind "openai"): models from /v1/models, numbers from /metrics in each engine's own
names, tokens/s as the rate of a counter between two polls, the engine told from the names."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from engines.fleet.errors import FleetError
from engines.fleet.poller import FleetPoller
from engines.fleet.prom_read import instances_from_metrics, models_from_list, parse_metrics
from engines.fleet.types import FleetMember, HostView
from tests.engines.fleet.fake_http import Mode
from tests.engines.fleet.fake_llama_server import FakeLlamaServer
from tests.engines.fleet.fake_vllm import FakeVllm


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def poll_twice(member: FleetMember, seconds: float = 2.0, **kwargs: int) -> tuple[HostView, HostView]:
    clock = Clock()

    async def main() -> tuple[HostView, HostView]:
        poller = FleetPoller([member], {}, clock=clock, **kwargs)
        try:
            (first,) = await poller.poll()
            clock.now += seconds
            (second,) = await poller.poll()
            return first, second
        finally:
            await poller.aclose()

    return asyncio.run(main())


@pytest.fixture
def vllm() -> Iterator[FakeVllm]:
    with FakeVllm(("Qwen/Qwen3-0.6B", "meta-llama/Llama-3.1-8B-Instruct")) as fake:
        yield fake


def test_vllm_numbers_per_model_and_tokens_per_second(vllm: FakeVllm) -> None:
    first, second = poll_twice(FleetMember("v", vllm.base, kind="openai"))
    assert first.reachable and first.engine_kind == "vllm" and first.error is None
    assert first.models == ("Qwen/Qwen3-0.6B", "meta-llama/Llama-3.1-8B-Instruct")
    assert [i.tokens_per_s for i in first.instances] == [None, None]  # no rate from one sample
    for inst in second.instances:
        assert (inst.engine, inst.state, inst.running, inst.queued) == ("vllm", "serving", 3, 1)
        assert inst.run_id == inst.model
        assert inst.kv_cache_pct == pytest.approx(42.0)
        assert inst.tokens_per_s == pytest.approx(600 / 2.0)
        assert inst.ttft_ms == pytest.approx(150.0)  # 0.3 s over 2 first tokens per scrape
    assert second.latency_ms is not None and second.last_seen == 1002.0


def test_vllm_before_0_9_names_its_cache_gauge_gpu_cache_usage_perc() -> None:
    with FakeVllm(legacy_cache_name=True, kv_usage=0.9) as fake:
        _, second = poll_twice(FleetMember("v", fake.base, kind="openai"))
    assert second.instances[0].kv_cache_pct == pytest.approx(90.0)


def test_llama_server_numbers() -> None:
    with FakeLlamaServer() as fake:
        first, second = poll_twice(FleetMember("l", fake.base + "/", kind="openai"), seconds=3.0)
    assert second.engine_kind == "llama-server" and second.models == ("gemma-3-270m-it-Q4_K_M.gguf",)
    (inst,) = second.instances
    assert (inst.running, inst.queued, inst.kv_cache_pct, inst.ttft_ms) == (1, 2, 25.0, None)
    assert inst.tokens_per_s == pytest.approx(90 / 3.0)
    assert first.instances[0].tokens_per_s is None


def test_llama_server_of_today_has_no_kv_gauge() -> None:
    with FakeLlamaServer(kv_ratio=None) as fake:
        _, second = poll_twice(FleetMember("l", fake.base, kind="openai"))
    assert second.instances[0].kv_cache_pct is None and second.instances[0].running == 1


def test_llama_server_without_metrics_still_shows_its_model() -> None:
    with FakeLlamaServer(metrics=False) as fake:
        _, second = poll_twice(FleetMember("l", fake.base, kind="openai"))
    assert second.reachable and second.error is None and second.engine_kind == "openai"
    (inst,) = second.instances
    assert inst.model == "gemma-3-270m-it-Q4_K_M.gguf" and inst.state == "serving"
    assert (inst.running, inst.queued, inst.kv_cache_pct, inst.tokens_per_s) == (None, None, None, None)


def test_a_server_with_no_metrics_route() -> None:
    with FakeVllm(metrics=False) as fake:
        _, second = poll_twice(FleetMember("v", fake.base, kind="openai"))
    assert second.reachable and second.models == ("Qwen/Qwen3-0.6B",) and second.instances[0].running is None


@pytest.mark.parametrize(("mode", "error"), [("dies", "the server closed the connection without an answer"),
                                             ("hangs", "timed out after 0.5 s")])  # fmt: skip
def test_a_server_that_dies_or_hangs_keeps_its_last_numbers(vllm: FakeVllm, mode: Mode, error: str) -> None:
    clock = Clock()
    member = FleetMember("v", vllm.base, kind="openai", timeout_s=0.5)

    async def main() -> tuple[HostView, HostView]:
        poller = FleetPoller([member], {}, clock=clock)
        try:
            (first,) = await poller.poll()
            vllm.mode = mode
            clock.now += 2
            (second,) = await poller.poll()
            return first, second
        finally:
            await poller.aclose()

    first, second = asyncio.run(main())
    assert first.reachable and not second.reachable and second.error == error
    assert second.instances == first.instances and second.last_seen == 1000.0 and second.polled_at == 1002.0


def test_metrics_past_the_limit_stop_the_read(vllm: FakeVllm) -> None:
    first, _ = poll_twice(FleetMember("v", vllm.base, kind="openai"), max_bytes=1500)
    assert not first.reachable and first.error == "metrics too large (over 1500 bytes)"


def test_a_counter_reset_gives_no_rate() -> None:
    scrape = parse_metrics('vllm:generation_tokens_total{model_name="m"} 10\n')
    (inst,), counters = instances_from_metrics(["m"], scrape, previous={"m": (0.0, 5000.0)}, now=1.0)
    assert inst.tokens_per_s is None and counters == {"m": (1.0, 10.0)}


SGLANG = """# HELP sglang:num_running_reqs The number of running requests.
# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{model_name="qwen",engine_type="unified",tp_rank="0",pp_rank="0"} 5.0
# HELP sglang:num_queue_reqs The number of requests in the waiting queue.
# TYPE sglang:num_queue_reqs gauge
sglang:num_queue_reqs{model_name="qwen",engine_type="unified",tp_rank="0",pp_rank="0"} 7.0
# HELP sglang:token_usage The token usage.
# TYPE sglang:token_usage gauge
sglang:token_usage{model_name="qwen",engine_type="unified",tp_rank="0",pp_rank="0"} 0.61
# HELP sglang:gen_throughput The generation throughput (token/s).
# TYPE sglang:gen_throughput gauge
sglang:gen_throughput{model_name="qwen",engine_type="unified",tp_rank="0",pp_rank="0"} 812.5
# HELP sglang:generation_tokens_total Number of generation tokens processed.
# TYPE sglang:generation_tokens_total counter
sglang:generation_tokens_total{model_name="qwen"} 4000.0
# HELP sglang:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE sglang:time_to_first_token_seconds histogram
sglang:time_to_first_token_seconds_bucket{le="0.1",model_name="qwen"} 1.0
sglang:time_to_first_token_seconds_bucket{le="+Inf",model_name="qwen"} 4.0
sglang:time_to_first_token_seconds_count{model_name="qwen"} 4.0
sglang:time_to_first_token_seconds_sum{model_name="qwen"} 1.0
"""


def test_sglang_names() -> None:
    scrape = parse_metrics(SGLANG)
    assert scrape.engine is not None and scrape.engine.kind == "sglang"
    (inst,), _ = instances_from_metrics(["qwen"], scrape, previous={"qwen": (0.0, 3000.0)}, now=4.0)
    assert (inst.engine, inst.running, inst.queued, inst.ttft_ms) == ("sglang", 5, 7, 250.0)
    assert inst.kv_cache_pct == pytest.approx(61.0) and inst.tokens_per_s == pytest.approx(250.0)
    # Without its counter, SGLang's own throughput gauge is shown.
    gauge_only = parse_metrics(SGLANG.replace("sglang:generation_tokens_total{", "sglang:other_total{"))
    (inst,), _ = instances_from_metrics(["qwen"], gauge_only, previous={}, now=4.0)
    assert inst.tokens_per_s == 812.5


TGI = """# TYPE tgi_queue_size gauge
tgi_queue_size 4
# TYPE tgi_batch_current_size gauge
tgi_batch_current_size 8
# TYPE tgi_request_generated_tokens histogram
tgi_request_generated_tokens_bucket{le="+Inf"} 10
tgi_request_generated_tokens_sum 2500
tgi_request_generated_tokens_count 10
"""


def test_tgi_names() -> None:
    scrape = parse_metrics(TGI)
    assert scrape.engine is not None and scrape.engine.kind == "tgi"
    (inst,), _ = instances_from_metrics(
        ["bigscience/bloom"], scrape, previous={"bigscience/bloom": (0.0, 500.0)}, now=10.0
    )
    assert (inst.running, inst.queued, inst.kv_cache_pct, inst.ttft_ms, inst.tokens_per_s) == (8, 4, None, None, 200.0)


def test_unlabelled_series_are_not_given_to_one_of_several_models() -> None:
    scrape = parse_metrics("llamacpp:requests_processing 3\n")
    insts, _ = instances_from_metrics(["a", "b"], scrape, previous={}, now=1.0)
    assert [i.running for i in insts] == [None, None]


def test_unknown_metrics_are_plain_openai() -> None:
    scrape = parse_metrics("# TYPE http_requests_total counter\nhttp_requests_total 3\n")
    (inst,), _ = instances_from_metrics(["m"], scrape, previous={}, now=1.0)
    assert scrape.engine is None and inst.engine == "openai" and inst.running is None


@pytest.mark.parametrize("page", ['vllm:num_requests_running{model_name="m" 3\n', 'metric{a="b"} notanumber\n'])
def test_unreadable_metrics_are_a_fleet_error(page: str) -> None:
    with pytest.raises(FleetError, match="metrics unreadable"):
        parse_metrics(page)


@pytest.mark.parametrize("doc", [None, {}, {"data": "x"}, [1]])
def test_a_bad_model_list_is_a_fleet_error(doc: object) -> None:
    with pytest.raises(FleetError, match="not an OpenAI-compatible model list"):
        models_from_list(doc)


def test_model_list_is_bounded_and_checked() -> None:
    data = [{"id": "x" * 1000}, {"id": 3}, "junk", {"id": "a"}, {"id": "a"}] + [{"id": f"m{i}"} for i in range(5000)]
    models = models_from_list({"data": data})
    assert models[0] == "x" * 256 and models[1] == "a" and len(models) <= 4096
