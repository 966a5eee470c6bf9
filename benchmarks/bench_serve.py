"""Load check for `vaekit serve` (issue 7), printed as JSON. Nothing here asserts a time.

    python benchmarks/bench_serve.py --run RUN [--clients 20] [--seconds 30] [--endpoint vary|healthz|sample]

Starts `vaekit serve RUN` on a free loopback port in a subprocess, then runs ``--clients`` concurrent
clients (httpx, asyncio) that each send requests back to back for ``--seconds``; reports requests/s, the
median and 99th-percentile latency, and every non-200 answer or transport error as an error.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

TEXTS = ["Scientists discover a new species of frog in the Amazon",
         "This is what happens when you leave your dog alone for a day",
         "Stocks fall as oil prices rise", "21 things only people who grew up in the nineties will understand"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def client(base: str, endpoint: str, deadline: float, latencies: list, errors: list, index: int) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        i = index
        while time.perf_counter() < deadline:
            if endpoint == "vary":
                request = http.post("/v1/vary", json={"text": TEXTS[i % len(TEXTS)], "n": 5, "seed": i})
            elif endpoint == "sample":
                request = http.post("/v1/sample", json={"n": 5, "seed": i})
            else:
                request = http.get("/healthz")
            start = time.perf_counter()
            try:
                response = await request
                if response.status_code != 200:
                    errors.append(f"{response.status_code}: {response.text[:200]}")
            except httpx.HTTPError as exc:
                errors.append(repr(exc))
            latencies.append((time.perf_counter() - start) * 1000)
            i += 1


async def load(base: str, args) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    start = time.perf_counter()
    deadline = start + args.seconds
    await asyncio.gather(*(client(base, args.endpoint, deadline, latencies, errors, i) for i in range(args.clients)))
    elapsed = time.perf_counter() - start
    latencies.sort()
    return {"bench": "serve_load", "endpoint": args.endpoint, "clients": args.clients, "seconds": round(elapsed, 1),
            "requests": len(latencies), "requests_per_s": round(len(latencies) / elapsed, 2),
            "p50_ms": round(statistics.median(latencies), 1) if latencies else None,
            "p99_ms": round(latencies[max(0, int(0.99 * len(latencies)) - 1)], 1) if latencies else None,
            "errors": len(errors), "first_errors": errors[:3]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a trained text run folder")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--endpoint", choices=["vary", "sample", "healthz"], default="vary")
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "vaekit", "serve", str(args.run), "--port", str(port),
                               "--max-n", "50", "--timeout", "120"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            sys.exit("error: the server did not start")
        httpx.post(base + "/v1/vary", json={"text": TEXTS[0], "n": 5}, timeout=120)  # warm-up (similarity model)
        print(json.dumps(asyncio.run(load(base, args))), flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
