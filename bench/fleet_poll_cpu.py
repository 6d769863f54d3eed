"""CPU the fleet poller costs this process: 10 llm-tui status servers on loopback, polled every 2 s.

The servers (http.server, HTTP/1.1 keep-alive) run in a separate process, so their CPU is not counted here; each
answers a realistic status document (2 GPUs, 3 instances, 20 models) built by engines.fleet.status. In this
process a FleetPoller polls the ten at once every --interval seconds for --seconds; after one warm-up poll the
process's CPU time (time.process_time, every thread) is divided by the wall time and printed as a share of one
core, with the mean and worst host latency. Target: ≤ 2 % of a core. One JSON line.

    python bench/fleet_poll_cpu.py [--seconds 30] [--interval 2] [--hosts 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engines.fleet.poller import FleetPoller
from engines.fleet.status import STATUS_PATH, status_document
from engines.fleet.types import FleetMember
from engines.telemetry.fake import default_gpus
from engines.telemetry.snapshot import HostStats, Snapshot
from engines.types import Footprint, InstanceInfo, InstanceState

TARGET = 0.02
GIB = 1 << 30


def realistic_document() -> bytes:
    """2 GPUs, 3 instances, 20 launchable models: what a busy workstation publishes."""
    instances = [
        InstanceInfo(
            run_id=f"run-{i:04d}",
            model_id=f"org/model-{i}-7b-instruct-q4_k_m",
            engine="llama.cpp",
            device=f"cuda:{i % 2}",
            state=InstanceState.BUSY if i else InstanceState.READY,
            requests_served=100 * i,
            last_tokens_per_s=42.0 + i,
            started_at=1733600000.0,
            footprint=Footprint(ram_bytes=GIB, vram_bytes=(4 + i) * GIB),
            pending_requests=i,
            slots=4,
            slots_busy=min(i, 4),
        )
        for i in range(3)
    ]
    host = HostStats(cpu_pct=31.0, per_cpu_pct=(30.0,) * 16, ram_used_bytes=40 * GIB, ram_total_bytes=128 * GIB)
    snapshot = Snapshot(taken_at=time.time(), gpus=default_gpus(), host=host)
    models = [f"org/catalog-model-{i}-gguf" for i in range(20)]
    server = {"requests": 1234, "errors": 2, "in_flight": 3}
    return json.dumps(status_document(instances, snapshot, models, server=server)).encode()


def serve(count: int, ready: Connection) -> None:
    """Run `count` status servers in this (child) process until it is terminated; send their ports."""
    import threading

    body = realistic_document()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            if self.path != STATUS_PATH:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    servers = [ThreadingHTTPServer(("127.0.0.1", 0), Handler) for _ in range(count)]
    for server in servers:
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
    ready.send([s.server_address[1] for s in servers])
    threading.Event().wait()


async def measure(ports: list[int], seconds: float, interval: float) -> dict[str, object]:
    members = [FleetMember(f"host-{i}", f"http://127.0.0.1:{port}") for i, port in enumerate(ports)]
    poller = FleetPoller(members, {})
    latencies: list[float] = []
    failures = 0
    try:
        await poller.poll()  # warm-up: imports, first connections
        cpu0, wall0 = time.process_time(), time.perf_counter()
        polls = 0
        while time.perf_counter() - wall0 < seconds:
            views = await poller.poll()
            polls += 1
            latencies += [v.latency_ms for v in views if v.latency_ms is not None and v.reachable]
            failures += sum(not v.reachable for v in views)
            next_at = wall0 + polls * interval
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    finally:
        await poller.aclose()
    share = cpu / wall
    return {
        "bench": "fleet_poll_cpu",
        "hosts": len(ports),
        "interval_s": interval,
        "wall_s": round(wall, 2),
        "polls": polls,
        "cpu_s": round(cpu, 4),
        "cpu_pct_of_one_core": round(100 * share, 3),
        "target_pct": 100 * TARGET,
        "ok": share <= TARGET and failures == 0,
        "mean_latency_ms": round(statistics.fmean(latencies), 2) if latencies else None,
        "max_latency_ms": round(max(latencies), 2) if latencies else None,
        "failed_host_polls": failures,
        "document_bytes": len(realistic_document()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--hosts", type=int, default=10)
    args = parser.parse_args()
    receive, send = multiprocessing.Pipe(duplex=False)
    child = multiprocessing.get_context("spawn").Process(target=serve, args=(args.hosts, send), daemon=True)
    child.start()
    try:
        if not receive.poll(60):
            raise SystemExit("the status servers did not start")
        ports = receive.recv()
        result = asyncio.run(measure(ports, args.seconds, args.interval))
    finally:
        child.terminate()
        child.join(10)
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
