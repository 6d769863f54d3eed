"""A fake llama-server (llama.cpp's tools/server): `GET /v1/models` in its shape and, when started with
`--metrics`, `GET /metrics` in its names (`llamacpp:` prefix, no labels; one model per server). Without
`--metrics` it answers /metrics with 501 "This server does not support metrics endpoint", as llama-server does.

Each scrape adds `tokens_per_scrape` to llamacpp:tokens_predicted_total.
"""

from __future__ import annotations

from typing import Any

from tests.engines.fleet.fake_http import Answer, FakeHttp, Mode, error_answer, json_answer


class FakeLlamaServer(FakeHttp):
    def __init__(
        self,
        model: str = "gemma-3-270m-it-Q4_K_M.gguf",
        *,
        processing: int = 1,
        deferred: int = 2,
        kv_ratio: float | None = 0.25,
        tokens_per_scrape: int = 90,
        metrics: bool = True,
        mode: Mode = "ok",
        keep_alive: bool = True,
    ) -> None:
        self.model = model
        self.processing, self.deferred, self.kv_ratio = processing, deferred, kv_ratio
        self.tokens_per_scrape = tokens_per_scrape
        self.metrics = metrics
        self.scrapes = 0
        super().__init__(mode=mode, keep_alive=keep_alive)

    def answer(self, method: str, path: str, headers: dict[str, str], body: Any) -> Answer:
        if path in ("/v1/models", "/models"):
            meta = {"vocab_type": 2, "n_vocab": 262144, "n_ctx_train": 32768, "n_embd": 640, "n_params": 268098176}
            data = [{"id": self.model, "object": "model", "created": 1733600000, "owned_by": "llamacpp", "meta": meta}]
            models = [{"name": self.model, "model": self.model, "type": "model", "capabilities": ["completion"]}]
            return json_answer(200, {"models": models, "object": "list", "data": data})
        if path == "/metrics":
            if not self.metrics:
                message = "This server does not support metrics endpoint. Start it with `--metrics`"
                return error_answer(501, message, code="501", kind="not_supported_error")
            self.scrapes += 1
            return Answer(200, self.page().encode(), "text/plain; version=0.0.4")
        return error_answer(404, "File Not Found", kind="not_found_error")

    def page(self) -> str:
        n = self.scrapes
        rows = [
            ("counter", "prompt_tokens_total", "Number of prompt tokens processed.", 400 * n),
            ("counter", "prompt_seconds_total", "Prompt process time", 0.5 * n),
            ("counter", "tokens_predicted_total", "Number of generation tokens processed.", self.tokens_per_scrape * n),
            ("counter", "tokens_predicted_seconds_total", "Predict process time", 1.5 * n),
            ("counter", "n_decode_total", "Total number of llama_decode() calls", 95 * n),
            ("counter", "n_tokens_max", "Largest observed n_tokens.", 4096),
            ("gauge", "prompt_tokens_seconds", "Average prompt throughput in tokens/s.", 800.0),
            ("gauge", "predicted_tokens_seconds", "Average generation throughput in tokens/s.", 60.0),
            ("gauge", "requests_processing", "Number of requests processing.", self.processing),
            ("gauge", "requests_deferred", "Number of requests deferred.", self.deferred),
            ("gauge", "n_busy_slots_per_decode", "Average number of busy slots per llama_decode() call", 1.0),
        ]
        if self.kv_ratio is not None:  # older builds also published the KV cache
            rows.append(("gauge", "kv_cache_usage_ratio", "KV-cache usage. 1 means 100 percent usage.", self.kv_ratio))
            rows.append(("gauge", "kv_cache_tokens", "KV-cache tokens.", 1024))
        out = []
        for kind, name, doc, value in rows:
            out += [f"# HELP llamacpp:{name} {doc}", f"# TYPE llamacpp:{name} {kind}", f"llamacpp:{name} {value}"]
        return "\n".join(out) + "\n"
