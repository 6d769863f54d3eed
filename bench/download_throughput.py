"""Throughput of our transfer (sha256 on, .part, fsync, rename) vs a plain httpx streaming download.

Both fetch the same ~200 MB of random bytes from the fake hub on 127.0.0.1, run in a separate process so
the server does not share our GIL. Runs alternate and the best of each is reported; target ratio >= 0.9.
`--link-mbps 1000` makes the server send at about that many megabits per second, as a real link would.

Usage: python bench/download_throughput.py [--mb 200] [--rounds 3] [--link-mbps N]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engines.downloads.part_file import PartFile  # noqa: E402
from engines.downloads.transfer import download_file  # noqa: E402


def plain(client: httpx.Client, url: str, target: Path, *, durable: bool = False) -> None:
    """The baseline: stream the body to a file, nothing else (durable: fsync it at the end, as we do)."""
    with client.stream("GET", url) as response, target.open("wb") as f:
        response.raise_for_status()
        for chunk in response.iter_raw():
            f.write(chunk)
        if durable:
            f.flush()
            os.fsync(f.fileno())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--link-mbps", type=int, default=0, help="server send rate in Mbit/s (0: as fast as it can)")
    args = parser.parse_args()
    size = args.mb * 1_000_000
    with tempfile.TemporaryDirectory(prefix="llm-tui-bench-") as tmp:
        folder = Path(tmp)
        source = folder / "source.bin"
        data = os.urandom(size)
        source.write_bytes(data)
        sha = hashlib.sha256(data).hexdigest()
        del data
        rate = args.link_mbps * 125_000 or None
        serve = (
            "import sys; from pathlib import Path; from tests.engines.fake_hub import FakeHub, Fault\n"
            "with FakeHub() as hub:\n"
            f"    hub.add('/file', Path(sys.argv[1]).read_bytes(), default=Fault(throttle_bps={rate}))\n"
            "    print(hub.port, flush=True)\n"
            "    hub.stopping.wait()\n"
        )
        server = subprocess.Popen(
            [sys.executable, "-c", serve, str(source)], cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        try:
            assert server.stdout is not None
            url = f"http://127.0.0.1:{int(server.stdout.readline())}/file"
            ours_s, plain_s, durable_s, nosync_s = [], [], [], []
            with httpx.Client() as client:
                for i in range(args.rounds):
                    for durable, times in ((False, plain_s), (True, durable_s)):
                        target = folder / f"plain{i}.bin"
                        started = time.perf_counter()
                        plain(client, url, target, durable=durable)
                        times.append(time.perf_counter() - started)
                        target.unlink()
                    target = folder / f"ours{i}.bin"
                    started = time.perf_counter()
                    result = download_file(url, target, expected_sha256=sha, expected_size=size, client=client)
                    ours_s.append(time.perf_counter() - started)
                    assert result.sha256 == sha
                    target.unlink()
                    real_sync = PartFile.sync
                    PartFile.sync = lambda self: None  # type: ignore[method-assign]  # diagnostic only
                    try:
                        started = time.perf_counter()
                        download_file(url, target, expected_sha256=sha, expected_size=size, client=client)
                        nosync_s.append(time.perf_counter() - started)
                    finally:
                        PartFile.sync = real_sync  # type: ignore[method-assign]
                    target.unlink()
        finally:
            server.kill()
            server.wait()
    ours, base, durable, nosync = (size / min(times) / 1e6 for times in (ours_s, plain_s, durable_s, nosync_s))
    link = f", server capped at {args.link_mbps} Mbit/s" if args.link_mbps else ", server unthrottled"
    print(f"payload            {args.mb} MB over 127.0.0.1{link}, best of {args.rounds}")
    print(f"plain httpx        {base:8.1f} MB/s")
    print(f"plain httpx+fsync  {durable:8.1f} MB/s")
    print(f"download_file      {ours:8.1f} MB/s  (sha256 + .part + fsync + rename)")
    print(f"ratio vs plain     {ours / base:8.2f}  (target >= 0.90)")
    print(f"ratio vs +fsync    {ours / durable:8.2f}  (same durability)")
    print(f"no final fsync     {nosync:8.1f} MB/s  (diagnostic; ratio vs plain {nosync / base:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
