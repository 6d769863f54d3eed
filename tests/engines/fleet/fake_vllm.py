"""A fake vLLM OpenAI server: `GET /v1/models` and `GET /metrics` in vLLM V1's own names, HELP and TYPE lines and
labels (`model_name`, `engine`), as vllm/v1/metrics/loggers.py (PrometheusStatLogger) registers them.

Each scrape advances the counters: `tokens_per_scrape` generated tokens per model and two more first tokens of
0.15 s each, so tokens/s between two polls is `tokens_per_scrape / seconds between them`.
"""

from __future__ import annotations

from typing import Any

from tests.engines.fleet.fake_http import Answer, FakeHttp, Mode, json_answer


class FakeVllm(FakeHttp):
    def __init__(
        self,
        models: tuple[str, ...] = ("Qwen/Qwen3-0.6B",),
        *,
        running: int = 3,
        waiting: int = 1,
        kv_usage: float = 0.42,
        tokens_per_scrape: int = 600,
        metrics: bool = True,
        legacy_cache_name: bool = False,
        mode: Mode = "ok",
        keep_alive: bool = True,
    ) -> None:
        self.models = models
        self.running, self.waiting, self.kv_usage = running, waiting, kv_usage
        self.tokens_per_scrape = tokens_per_scrape
        self.metrics = metrics
        self.legacy_cache_name = legacy_cache_name  # vLLM < 0.9 named it vllm:gpu_cache_usage_perc
        self.scrapes = 0
        super().__init__(mode=mode, keep_alive=keep_alive)

    def answer(self, method: str, path: str, headers: dict[str, str], body: Any) -> Answer:
        if path == "/v1/models":
            data = [
                {"id": m, "object": "model", "created": 1733600000, "owned_by": "vllm", "root": m, "parent": None,
                 "max_model_len": 40960, "permission": []}
                for m in self.models
            ]  # fmt: skip
            return json_answer(200, {"object": "list", "data": data})
        if path == "/metrics" and self.metrics:
            self.scrapes += 1
            return Answer(200, self.page().encode(), "text/plain; version=0.0.4; charset=utf-8")
        return json_answer(404, {"detail": "Not Found"})

    def page(self) -> str:
        n = self.scrapes
        cache = "vllm:gpu_cache_usage_perc" if self.legacy_cache_name else "vllm:kv_cache_usage_perc"
        out = [
            "# HELP python_gc_objects_collected_total Objects collected during gc",
            "# TYPE python_gc_objects_collected_total counter",
            'python_gc_objects_collected_total{generation="0"} 12345.0',
        ]

        def family(name: str, kind: str, doc: str, lines: list[str]) -> None:
            out.extend([f"# HELP {name} {doc}", f"# TYPE {name} {kind}", *lines])

        label = [f'engine="0",model_name="{m}"' for m in self.models]
        family(
            "vllm:num_requests_running",
            "gauge",
            "Number of requests in model execution batches.",
            [f"vllm:num_requests_running{{{lb}}} {float(self.running)}" for lb in label],
        )
        family(
            "vllm:num_requests_waiting",
            "gauge",
            "Number of requests waiting to be processed.",
            [f"vllm:num_requests_waiting{{{lb}}} {float(self.waiting)}" for lb in label],
        )
        family(
            cache,
            "gauge",
            "KV-cache usage. 1 means 100 percent usage.",
            [f"{cache}{{{lb}}} {self.kv_usage}" for lb in label],
        )
        family(
            "vllm:prompt_tokens_total",
            "counter",
            "Number of prefill tokens processed.",
            [f"vllm:prompt_tokens_total{{{lb}}} {float(2000 * n)}" for lb in label],
        )
        family(
            "vllm:generation_tokens_total",
            "counter",
            "Number of generation tokens processed.",
            [f"vllm:generation_tokens_total{{{lb}}} {float(self.tokens_per_scrape * n)}" for lb in label],
        )
        buckets = []
        for lb in label:
            for le in ("0.1", "0.25", "0.5", "+Inf"):
                seen = 0 if le == "0.1" else 2 * n
                buckets.append(f'vllm:time_to_first_token_seconds_bucket{{{lb},le="{le}"}} {float(seen)}')
            buckets.append(f"vllm:time_to_first_token_seconds_count{{{lb}}} {float(2 * n)}")
            buckets.append(f"vllm:time_to_first_token_seconds_sum{{{lb}}} {0.3 * n}")
        family("vllm:time_to_first_token_seconds", "histogram", "Histogram of time to first token in seconds.", buckets)
        return "\n".join(out) + "\n"  # fmt: skip
