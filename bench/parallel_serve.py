"""Parallel slots (continuous batching) and prompt-lookup speculation in `llm-tui serve`, against llama-server.

Model and prompts as `bench/serve_decode.py` (the tests' Gemma 3 270M Q4_K_M, its "dragon story" prompt, chat
completions through the official `openai` client, greedy, streamed with a usage chunk). Every server is started,
measured and stopped before the next one starts (two cores: never two at work at once); each gets one untimed
warm-up request first. Sections (`--only`, default all):

- ours: `llm-tui serve --port 0 --model PATH --threads 2 --n-ctx 2048 --engine llama.cpp --parallel P` (P = the
  largest concurrency, one server for the whole sweep), an empty config file. For each concurrency C (`--concurrency
  1,2,4,8`), `--rounds` rounds of C client threads released together, each with its own prompt (the round, C and
  the client are in the text, so no two requests share a prefix beyond the template and "Round "), max_tokens 96.
  Per C: aggregate tok/s = completion tokens of all C replies / (last token of any - first request sent), median
  over rounds; TTFT = request sent -> first visible text, p50 / p99 over all requests of all rounds (nearest
  rank); scaling = aggregate(C) / aggregate(C=1); slots_busy = the instance's "slots_busy" in GET
  /v1/llm-tui/metrics, read once per round when every client has its first token (C when all are decoded in one
  batch).
  Then slots off / on with one client: `--slot-blocks` blocks (default 2), each a fresh `--parallel 1` server and
  a fresh `--parallel P` one, in alternating order, `--rounds` C=1 rounds each (two identical servers started one
  after the other differ by several % on the 2-core VM: one block is too few for a 0.97 target). slots_on_off =
  the median single-client decode tok/s ((tokens - 1) / (last - first visible token), as serve_decode) with P
  slots / with 1. Target >= 0.97.
- theirs: the same sweep against llama.cpp's own llama-server of the same llama.cpp as the installed
  llama-cpp-python (build it with `bash bench/build_llama_server.sh`; skipped with a message when missing):
  `llama-server -m PATH -c 2048*P -np P -t 2 -tb 2 --jinja --chat-template-file F`, F being the template
  `llm-tui serve` uses for the model (the GGUF carries none; the catalog's, minus its `{{ bos_token }}`, as
  llama-server adds the BOS token itself: the reported prompt token counts show whether both see the same
  prompt). Ready when GET /health answers 200. Both sides get the model's stop texts in the request.
  ours_vs_theirs = aggregate tok/s ours / theirs per C. Target >= 0.8.
- spec: a code-editing prompt (~40 lines of Python to rewrite with one variable renamed: the reply copies most of
  the prompt), one client, greedy, max_tokens 256, `--rounds` rounds, on `llm-tui serve --speculative
  prompt-lookup` and on one without. speed-up = median decode tok/s with / without; acceptance = draft_accepted /
  draft_proposed of the speculative server's instance in GET /v1/llm-tui/metrics (the change over the measured rounds);
  identical = every reply's text the same on both servers (speculation must not change greedy output).

`--plain` leaves out --parallel and --speculative (for checking the harness against a serve without them: the
"slots" figures then compare two plain servers, and /v1/llm-tui/metrics fields the serve lacks read null).
Prints a table per section, then one JSON line with every figure. Nothing is asserted.

    python bench/parallel_serve.py [--rounds 3] [--max-tokens 96] [--concurrency 1,2,4,8] [--slot-blocks 2]
        [--only ours,theirs,spec] [--spec-max-tokens 256] [--threads 2] [--model PATH] [--llama-server PATH]
        [--plain]

Measured on the 2-core CPU dev VM (Gemma 3 270M Q4_K_M, 3 rounds, 96 tokens, idle machine), aggregate tok/s
ours / theirs by C: 1: 80.0 / 88.6, 2: 76.1 / 77.5, 4: 110.4 / 115.6, 8: 179.7 / 181.9 (ours / theirs 0.90,
0.98, 0.96, 0.99; target >= 0.8 met); scaling over C=1: 1.38 at C=4 (target 1.8 not met; llama-server 1.30),
2.25 at C=8; TTFT p50 / p99 88 / 88 ms at C=1, 296 / 330 ms at C=4 (3.8x; llama-server 251 / 325 ms); slots on
/ off, one client: 0.987 (target >= 0.97 met). Why C=4 cannot reach 1.8x here: each slot's token needs its own
row of logits over the 262k vocabulary, which costs about as much as the rest of the step, and llama.cpp's CPU
kernels batch those rows four at a time (1 row 11 ms, 2 rows 23, 4 rows 29, 8 rows 36). Prompt lookup on the
code-editing prompt: 1.22x decode speed, 49 % of drafted tokens accepted, the same text.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import queue
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.serve_decode import N_CTX, PROMPT, ServeProcess, _decode_tps, default_model

SECTIONS = ("ours", "theirs", "spec")
TARGET_SLOTS_ON_OFF = 0.97
TARGET_OURS_VS_THEIRS = 0.8

# A repetitive code edit: the answer is the prompt's code again with one name changed, which is what prompt-lookup
# drafting predicts well (the text to come is already in the prompt).
SPEC_CODE = """\
def summarize(orders, tax_rate, discount):
    total = 0.0
    count = 0
    lines = []
    for order in orders:
        price = order["price"]
        quantity = order["quantity"]
        if quantity <= 0:
            continue
        subtotal = price * quantity
        if order.get("member"):
            subtotal = subtotal * (1 - discount)
        tax = subtotal * tax_rate
        total = total + subtotal + tax
        count = count + 1
        lines.append(f"{order['name']}: {subtotal:.2f} + {tax:.2f} tax")
    if count == 0:
        return {"total": 0.0, "count": 0, "lines": []}
    average = total / count
    lines.append(f"total: {total:.2f}")
    lines.append(f"average: {average:.2f}")
    return {"total": total, "count": count, "lines": lines, "average": average}


def cheapest(orders):
    best = None
    for order in orders:
        price = order["price"]
        if best is None or price < best["price"]:
            best = order
    return best


def report(orders, tax_rate, discount):
    summary = summarize(orders, tax_rate, discount)
    best = cheapest(orders)
    for line in summary["lines"]:
        print(line)
    if best is not None:
        print(f"cheapest: {best['name']}")
    return summary["total"]
"""
SPEC_PROMPT = (
    "Rewrite the following Python code with the variable `total` renamed to `grand_total` everywhere. "
    "Change nothing else and reply with the complete code only.\n\n```python\n" + SPEC_CODE + "```"
)

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only


def get_json(url: str, timeout: float = 10.0) -> Any:
    with _NO_PROXY.open(url, timeout=timeout) as response:
        return json.load(response)


# ---------------------------------------------------------------------------------------------------- servers


class Server:
    """What a section needs from a server: the base URL (…/v1), its model id, /v1/llm-tui/metrics, stop()."""

    def __init__(self, label: str, proc: ServeProcess, url: str, has_metrics: bool) -> None:
        self.label = label
        self.proc = proc
        self.url = url
        self.root = url.removesuffix("/v1")
        self.has_metrics = has_metrics
        self.model = get_json(self.root + "/v1/models")["data"][0]["id"]

    def instance(self) -> dict[str, Any]:
        """Our GET /v1/llm-tui/metrics, the (one) instance's entry; {} for llama-server or when the read fails."""
        if not self.has_metrics:
            return {}
        try:
            instances = get_json(self.root + "/v1/llm-tui/metrics").get("instances") or [{}]
        except (OSError, ValueError):
            return {}
        return dict(instances[0])

    def stop(self) -> None:
        self.proc.stop()


def start_ours(model: Path, threads: int, workdir: Path, flags: Sequence[str], label: str) -> Server:
    """`llm-tui serve` exactly as serve_decode starts it, with `flags` added to its command line."""
    workdir.mkdir(parents=True, exist_ok=True)
    proc = ServeProcess(model, threads, workdir, flags)
    try:
        url = proc.wait_ready()
        return Server(label, proc, url, has_metrics=True)
    except BaseException:
        proc.stop()
        raise


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LlamaServerProcess(ServeProcess):
    """llama.cpp's llama-server as a subprocess; reuses ServeProcess's stderr drain and stop (SIGINT)."""

    def __init__(self, cmd: list[str], binary: Path, port: int) -> None:
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(binary.parent), env.get("LD_LIBRARY_PATH")]))
        self.port = port
        self.proc = subprocess.Popen(
            cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        self.log: deque[str] = deque(maxlen=40)
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._drain, name="llama-server-stderr", daemon=True).start()

    def wait_ready(self, timeout: float = 300.0) -> str:
        """Poll GET /health until 200 (503 while loading); SystemExit with the log if it exits or is too slow."""
        url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                time.sleep(0.2)  # let the drain thread catch the last lines
                raise SystemExit("llama-server exited:\n" + "\n".join(self.log))
            try:
                with _NO_PROXY.open(url + "/health", timeout=5) as response:
                    if response.status == 200:
                        return url + "/v1"
            except (OSError, ValueError):  # refused while starting, HTTPError 503 while loading
                pass
            time.sleep(0.25)
        raise SystemExit(f"llama-server was not ready after {timeout:.0f} s:\n" + "\n".join(self.log))


def start_theirs(binary: Path, model: Path, threads: int, parallel: int, template: Path) -> Server:
    port = free_port()
    cmd = [
        str(binary),
        "-m",
        str(model),
        "-c",
        str(N_CTX * parallel),
        "-np",
        str(parallel),
        "-t",
        str(threads),
        "-tb",
        str(threads),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--jinja",
        "--chat-template-file",
        str(template),
    ]
    proc = LlamaServerProcess(cmd, binary, port)
    try:
        url = proc.wait_ready()
        return Server(f"llama-server -np {parallel}", proc, url, has_metrics=False)
    except BaseException:
        proc.stop()
        raise


def default_llama_server() -> Path:
    import llama_cpp

    version = llama_cpp.__version__
    return Path.home() / ".cache" / "llm-tui-bench" / f"llama-server-{version}" / "llama-server"


def template_and_stop(model: Path) -> tuple[str, list[str]]:
    """The chat template `llm-tui serve` uses for the model (the GGUF's, else the catalog's) and its stop texts."""
    from engines.catalog.gguf_header import read_gguf_header
    from engines.catalog.resolve import resolve_model

    spec = resolve_model(str(model), models_dir=model.parent)
    template = read_gguf_header(model).chat_template or spec.chat_template
    if not template:
        raise SystemExit(f"{model}: no chat template in the file or the catalog")
    return template, list(spec.stop)


# ---------------------------------------------------------------------------------------------------- clients


@dataclass
class Reply:
    """One streamed chat reply; times are time.perf_counter()."""

    sent: float
    first: float  # first visible text (0.0: none)
    last: float
    tokens: int
    prompt_tokens: int
    finish: str | None
    text: str

    @property
    def ttft_ms(self) -> float:
        return (self.first - self.sent) * 1000 if self.first else math.nan

    @property
    def decode_tps(self) -> float:
        return _decode_tps(self.tokens, self.first, self.last)

    @property
    def early(self) -> bool:
        return self.finish != "length"


def make_client(url: str) -> Any:
    import openai

    http = openai.DefaultHttpxClient(trust_env=False, timeout=600.0)  # loopback only: no proxy
    return openai.OpenAI(base_url=url, api_key="unused", max_retries=0, http_client=http)


def stream_chat(
    client: Any, model: str, prompt: str, max_tokens: int, stop: list[str], on_first: Callable[[], None] | None = None
) -> Reply:
    sent = time.perf_counter()
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": prompt}],
        max_tokens=max_tokens,
        temperature=0,
        stop=stop or None,
        stream=True,
        stream_options={"include_usage": True},
    )
    first = last = 0.0
    chunks = tokens = prompt_tokens = 0
    finish = None
    parts: list[str] = []
    for chunk in stream:
        now = time.perf_counter()
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
            prompt_tokens = chunk.usage.prompt_tokens
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        text = choice.delta.content
        if text:
            chunks += 1
            parts.append(text)
            if first == 0.0 and text.strip():
                first = now
                if on_first is not None:
                    on_first()
            if first:
                last = now
        finish = choice.finish_reason or finish
    if tokens == 0:  # no usage chunk: one chunk per token, but for characters split across tokens
        tokens = max_tokens if finish == "length" else chunks
    if first == 0.0 and on_first is not None:
        on_first()  # an empty reply: don't keep the probe waiting
    return Reply(sent, first, last, tokens, prompt_tokens, finish, "".join(parts))


@dataclass
class RoundResult:
    replies: list[Reply]
    slots_busy: int | None

    @property
    def aggregate_tps(self) -> float:
        wall = max(r.last for r in self.replies) - min(r.sent for r in self.replies)
        return sum(r.tokens for r in self.replies) / wall if wall > 0 else 0.0


def concurrent_round(
    server: Server, clients: list[Any], prompts: list[str], max_tokens: int, stop: list[str]
) -> RoundResult:
    """len(prompts) client threads released together; our /v1/llm-tui/metrics read once all have their first token."""
    n = len(prompts)
    replies: list[Reply | None] = [None] * n
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)
    lock = threading.Lock()
    firsts = [0]
    all_first = threading.Event()

    def saw_first() -> None:
        with lock:
            firsts[0] += 1
            if firsts[0] == n:
                all_first.set()

    def client(i: int) -> None:
        try:
            barrier.wait()
            replies[i] = stream_chat(clients[i], server.model, prompts[i], max_tokens, stop, saw_first)
        except BaseException as error:  # re-raised below, on the main thread
            errors.append(error)
            all_first.set()

    threads = [threading.Thread(target=client, args=(i,), name=f"client-{i}") for i in range(n)]
    for thread in threads:
        thread.start()
    slots_busy = None
    if server.has_metrics:
        all_first.wait(600)
        slots_busy = server.instance().get("slots_busy")
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return RoundResult([r for r in replies if r is not None], slots_busy)


# ---------------------------------------------------------------------------------------------------- figures


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest rank; nan when empty."""
    values = sorted(v for v in values if not math.isnan(v))
    if not values:
        return math.nan
    return values[max(0, math.ceil(p / 100 * len(values)) - 1)]


def _r(value: float | None, digits: int = 2) -> float | None:
    return None if value is None or math.isnan(value) else round(value, digits)


@dataclass
class Level:
    """One concurrency level's rounds."""

    c: int
    rounds: list[RoundResult]

    def figures(self, single: float | None) -> dict[str, Any]:
        replies = [r for rnd in self.rounds for r in rnd.replies]
        aggregate = statistics.median(rnd.aggregate_tps for rnd in self.rounds)
        busy = [rnd.slots_busy for rnd in self.rounds if rnd.slots_busy is not None]
        return {
            "aggregate_tps": _r(aggregate),
            "scaling": _r(aggregate / single, 3) if single else None,
            "ttft_p50_ms": _r(percentile([r.ttft_ms for r in replies], 50), 1),
            "ttft_p99_ms": _r(percentile([r.ttft_ms for r in replies], 99), 1),
            "decode_tps_per_request": _r(statistics.median(r.decode_tps for r in replies)),
            "completion_tokens": sum(r.tokens for r in replies),
            "prompt_tokens": sorted({r.prompt_tokens for r in replies}),
            "slots_busy": max(busy) if busy else None,
            "early": any(r.early for r in replies),
        }


def sweep(server: Server, levels: Sequence[int], rounds: int, max_tokens: int, stop: list[str]) -> list[Level]:
    clients = [make_client(server.url) for _ in range(max(levels))]
    try:
        stream_chat(clients[0], server.model, PROMPT.format(i="warm-up"), 8, stop)
        out = []
        for c in levels:
            results = []
            for k in range(rounds):
                # Distinct per server run, level, round and client: no reply can reuse a cached prompt.
                prompts = [PROMPT.format(i=f"{c}-{k + 1}-{j + 1}") for j in range(c)]
                results.append(concurrent_round(server, clients[:c], prompts, max_tokens, stop))
            out.append(Level(c, results))
        return out
    finally:
        for client in clients:
            client.close()


def print_levels(title: str, levels: list[Level]) -> dict[str, dict[str, Any]]:
    single = next((lv for lv in levels if lv.c == 1), None)
    single_tps = statistics.median(r.aggregate_tps for r in single.rounds) if single else None
    table = {str(lv.c): lv.figures(single_tps) for lv in levels}
    print(f"\n== {title} ==")
    print(f"{'C':>3} {'agg tok/s':>10} {'x C=1':>7} {'TTFT p50':>9} {'TTFT p99':>9} {'tok/s/req':>10} {'busy':>5}")
    for c, f in table.items():
        scaling = f"{f['scaling']:.2f}" if f["scaling"] is not None else "-"
        busy = f["slots_busy"] if f["slots_busy"] is not None else "-"
        early = "  [a reply stopped before max_tokens]" if f["early"] else ""
        print(
            f"{c:>3} {f['aggregate_tps']:>10.1f} {scaling:>7} {f['ttft_p50_ms']:>7.0f}ms {f['ttft_p99_ms']:>7.0f}ms"
            f" {f['decode_tps_per_request']:>10.1f} {busy!s:>5}{early}"
        )
    return table


# ---------------------------------------------------------------------------------------------------- sections


def run_ours(args: argparse.Namespace, model: Path, tmp: Path, stop: list[str]) -> dict[str, Any]:
    parallel = max(args.concurrency)
    flags = {"on": ["--parallel", str(parallel)], "off": ["--parallel", "1"]}
    if args.plain:
        flags = {"on": [], "off": []}

    def start(side: str, name: str) -> Server:
        return start_ours(model, args.threads, tmp / name, flags[side], f"llm-tui serve {' '.join(flags[side])}")

    server = start("on", "ours-sweep")
    try:
        slots = server.instance().get("slots")
        levels = sweep(server, args.concurrency, args.rounds, args.max_tokens, stop)
    finally:
        server.stop()
    table = print_levels(f"ours: {server.label.strip()} (slots {slots})", levels)

    # Slots off / on, one client: blocks of one fresh server each, alternating which side goes first, so drift
    # and a process's luck (two identical servers differ by a few % here) hit both sides alike.
    print(f"\n== ours, one client, slots off ({' '.join(flags['off'])}) / on ({' '.join(flags['on'])}) ==")
    single: dict[str, list[Reply]] = {"off": [], "on": []}
    for block in range(args.slot_blocks):
        for side in ("off", "on") if block % 2 == 0 else ("on", "off"):
            server = start(side, f"ours-{side}-{block}")
            try:
                replies = [
                    r for rnd in sweep(server, [1], args.rounds, args.max_tokens, stop)[0].rounds for r in rnd.replies
                ]
            finally:
                server.stop()
            single[side].extend(replies)
            tps = ", ".join(f"{r.decode_tps:.1f}" for r in replies)
            ttft = ", ".join(f"{r.ttft_ms:.0f}" for r in replies)
            print(f"block {block + 1} {side:>3}: decode tok/s {tps}; TTFT ms {ttft}")
    off_tps = statistics.median(r.decode_tps for r in single["off"])
    on_tps = statistics.median(r.decode_tps for r in single["on"])
    ratio = on_tps / off_tps if off_tps else None
    print(
        f"single-client decode (median): {on_tps:.1f} tok/s with {parallel} slots, {off_tps:.1f} with 1:"
        f" ratio {ratio:.3f} (target >= {TARGET_SLOTS_ON_OFF})"
    )
    return {
        "parallel": parallel,
        "plain": args.plain,
        "slots": slots,
        "by_c": table,
        "single_off_tps": _r(off_tps),
        "single_on_tps": _r(on_tps),
        "single_off_ttft_p50_ms": _r(percentile([r.ttft_ms for r in single["off"]], 50), 1),
        "single_on_ttft_p50_ms": _r(percentile([r.ttft_ms for r in single["on"]], 50), 1),
        "slot_blocks": args.slot_blocks,
        "slots_on_off": _r(ratio, 4),
        "target_slots_on_off": TARGET_SLOTS_ON_OFF,
        "early": any(r.early for r in single["off"] + single["on"]),
    }


def run_theirs(args: argparse.Namespace, model: Path, tmp: Path, stop: list[str], template: str) -> dict[str, Any]:
    binary = args.llama_server or default_llama_server()
    if not binary.is_file():
        print(f"\n== theirs: skipped: no llama-server at {binary} (build it: bash bench/build_llama_server.sh) ==")
        return {"skipped": f"no llama-server at {binary}"}
    parallel = max(args.concurrency)
    template_file = tmp / "chat_template.jinja"
    # llama-server adds the BOS token itself (the vocab says so); the template's own would make it two.
    template_file.write_text(template.replace("{{ bos_token }}", ""))
    server = start_theirs(binary, model, args.threads, parallel, template_file)
    try:
        levels = sweep(server, args.concurrency, args.rounds, args.max_tokens, stop)
    finally:
        server.stop()
    table = print_levels(f"theirs: {server.label}", levels)
    return {"binary": str(binary), "parallel": parallel, "by_c": table}


def run_spec(args: argparse.Namespace, model: Path, tmp: Path, stop: list[str]) -> dict[str, Any]:
    sides: dict[str, dict[str, Any]] = {}
    for name, flags in (("off", []), ("on", [] if args.plain else ["--speculative", "prompt-lookup"])):
        server = start_ours(model, args.threads, tmp / f"spec-{name}", flags, f"llm-tui serve {' '.join(flags)}")
        client = make_client(server.url)
        try:
            stream_chat(client, server.model, PROMPT.format(i="warm-up"), 8, stop)
            before = server.instance()
            replies = [
                stream_chat(client, server.model, SPEC_PROMPT, args.spec_max_tokens, stop) for _ in range(args.rounds)
            ]
            after = server.instance()
        finally:
            client.close()
            server.stop()
        counts = {}
        for key in ("draft_proposed", "draft_accepted"):
            counts[key] = after[key] - before.get(key, 0) if isinstance(after.get(key), int) else None
        sides[name] = {"label": server.label.strip(), "replies": replies, **counts}
    off, on = sides["off"]["replies"], sides["on"]["replies"]
    off_tps = statistics.median(r.decode_tps for r in off)
    on_tps = statistics.median(r.decode_tps for r in on)
    proposed, accepted = sides["on"]["draft_proposed"], sides["on"]["draft_accepted"]
    acceptance = accepted / proposed if proposed and accepted is not None else None
    identical = len({r.text for r in off + on}) == 1
    print("\n== spec: prompt-lookup speculative decoding, one client ==")
    for name in ("off", "on"):
        side = sides[name]
        tps = [f"{r.decode_tps:.1f}" for r in side["replies"]]
        r0 = side["replies"][0]
        print(
            f"{name:>3}: {side['label']}: decode tok/s {', '.join(tps)} ({r0.tokens} tok, {r0.finish},"
            f" prompt {r0.prompt_tokens} tok, TTFT {r0.ttft_ms:.0f} ms)"
        )
    accept_text = f"{acceptance:.3f} ({accepted}/{proposed})" if acceptance is not None else "n/a"
    print(f"speed-up {on_tps / off_tps:.3f}; acceptance {accept_text}; identical output: {identical}")
    if not identical:
        print(f"off reply: {off[0].text[:300]!r}\non reply:  {on[0].text[:300]!r}")
    return {
        "max_tokens": args.spec_max_tokens,
        "off_tps": _r(off_tps),
        "on_tps": _r(on_tps),
        "speedup": _r(on_tps / off_tps if off_tps else None, 3),
        "draft_proposed": proposed,
        "draft_accepted": accepted,
        "acceptance": _r(acceptance, 3),
        "identical": identical,
        "completion_tokens": [r.tokens for r in on],
        "early": any(r.early for r in off + on),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="rounds per concurrency level (and spec side)")
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--spec-max-tokens", type=int, default=256)
    parser.add_argument(
        "--concurrency",
        type=lambda s: sorted({int(x) for x in s.split(",")}),
        default=[1, 2, 4, 8],
        help="comma-separated client counts; the largest is --parallel / -np",
    )
    parser.add_argument(
        "--only",
        type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
        default=list(SECTIONS),
        help="comma-separated sections: ours, theirs, spec (default all)",
    )
    parser.add_argument(
        "--slot-blocks",
        type=int,
        default=2,
        help="blocks of (slots off server, slots on server) for the one-client comparison, each --rounds rounds",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", type=Path, help="GGUF file (default: the tests' Gemma 3 270M Q4_K_M)")
    parser.add_argument("--llama-server", type=Path, help="llama-server binary (default: build_llama_server.sh's)")
    parser.add_argument(
        "--plain", action="store_true", help="leave out --parallel / --speculative (check the harness on a plain serve)"
    )
    args = parser.parse_args()
    unknown = set(args.only) - set(SECTIONS)
    if unknown:
        parser.error(f"--only: unknown section(s) {', '.join(sorted(unknown))}; known: {', '.join(SECTIONS)}")

    model = args.model or default_model()
    template, stop = template_and_stop(model)
    print(f"model {model.name}; concurrency {args.concurrency}; rounds {args.rounds}; max_tokens {args.max_tokens}")
    result: dict[str, Any] = {
        "bench": "parallel_serve",
        "model": model.name,
        "rounds": args.rounds,
        "max_tokens": args.max_tokens,
        "threads": args.threads,
        "concurrency": args.concurrency,
    }
    with tempfile.TemporaryDirectory(prefix="parallel-serve-") as tmp_dir:
        tmp = Path(tmp_dir)
        if "ours" in args.only:
            result["ours"] = run_ours(args, model, tmp, stop)
        if "theirs" in args.only:
            result["theirs"] = run_theirs(args, model, tmp, stop, template)
        if "spec" in args.only:
            result["spec"] = run_spec(args, model, tmp, stop)
    ours, theirs = result.get("ours"), result.get("theirs")
    if ours and theirs and "by_c" in theirs:
        ratios = {}
        print("\n== ours / theirs, aggregate tok/s ==")
        for c, f in ours["by_c"].items():
            theirs_tps = theirs["by_c"][c]["aggregate_tps"]
            ratios[c] = _r(f["aggregate_tps"] / theirs_tps, 3) if theirs_tps else None
            print(
                f"C={c}: {f['aggregate_tps']:.1f} / {theirs_tps:.1f} = {ratios[c]} (target >= {TARGET_OURS_VS_THEIRS})"
            )
        result["ours_vs_theirs"] = ratios
        result["target_ours_vs_theirs"] = TARGET_OURS_VS_THEIRS
    print(json.dumps(result))


if __name__ == "__main__":
    main()
