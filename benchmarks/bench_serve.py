"""Load and soak check for `vaekit serve` (issues 7 and 33), printed as JSON. Nothing here asserts a time.

    python benchmarks/bench_serve.py --run RUN [--clients 20] [--seconds 60] [--endpoint mix|vary|sample|healthz]
                                     [--hostile]

Starts `vaekit serve RUN` on a free loopback port in a subprocess, then runs ``--clients`` concurrent
clients (httpx, asyncio) that each send requests back to back for ``--seconds``; ``mix`` goes round vary,
sample, encode, score, models and healthz. Reports requests/s, the median and 99th-percentile latency overall
and per endpoint, every non-200 answer or transport error as an error, and the server's resident memory at
the start and the end. ``--hostile`` adds one more client that sends oversized bodies and bodies that stall
(its own answers, 413 and 408, are counted apart): compare the others' p99 with a run without it.
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


MIX = ["vary", "sample", "encode", "score", "models", "healthz"]
CONDITION_TEXT = {"needed": False}  # set from /v1/models once the server is up


def request_for(http, endpoint: str, i: int):
    text = TEXTS[i % len(TEXTS)]
    if endpoint == "vary":
        return http.post("/v1/vary", json={"text": text, "n": 5, "seed": i})
    if endpoint == "sample":
        body = {"n": 5, "seed": i}
        if CONDITION_TEXT["needed"]:  # a model conditioned on a text embedding samples written like a text
            body["condition_text"] = text
        return http.post("/v1/sample", json=body)
    if endpoint == "encode":
        return http.post("/v1/encode", json={"texts": [text]})
    if endpoint == "score":
        return http.post("/v1/score", json={"texts": [text], "seed": i})
    if endpoint == "models":
        return http.get("/v1/models")
    return http.get("/healthz")


async def client(base: str, endpoint: str, deadline: float, latencies: dict, errors: list, index: int) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        i = index
        while time.perf_counter() < deadline:
            name = MIX[i % len(MIX)] if endpoint == "mix" else endpoint
            start = time.perf_counter()
            try:
                response = await request_for(http, name, i)
                if response.status_code != 200:
                    errors.append(f"{name} {response.status_code}: {response.text[:200]}")
            except httpx.HTTPError as exc:
                errors.append(f"{name} {exc!r}")
            latencies.setdefault(name, []).append((time.perf_counter() - start) * 1000)
            i += 1


async def hostile(base: str, deadline: float, answers: dict) -> None:
    """Oversized bodies (2 MB, declared and chunked) and a body that stops after its first bytes, in turn."""
    async def chunks(total: int):
        for _ in range(total // 65536):
            yield b" " * 65536

    async def stalled() -> str:  # headers promising 100 bytes, then 9 and nothing: the server should answer 408
        host, port = base.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"POST /v1/vary HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"text\": ")
        await writer.drain()
        try:
            line = await asyncio.wait_for(reader.readline(), 60)
            return line.decode(errors="replace").split(" ")[1] if line else "closed"
        except asyncio.TimeoutError:
            return "no answer in 60 s"
        finally:
            writer.close()

    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        i = 0
        while time.perf_counter() < deadline:
            kind = ("declared", "chunked", "stalled")[i % 3]
            try:
                if kind == "stalled":
                    status = await stalled()
                else:
                    body = b" " * 2_000_000 if kind == "declared" else chunks(2_000_000)
                    status = (await http.post("/v1/vary", content=body,
                                              headers={"content-type": "application/json"})).status_code
            except (httpx.HTTPError, OSError) as exc:
                status = type(exc).__name__
            answers[f"{kind} {status}"] = answers.get(f"{kind} {status}", 0) + 1
            i += 1


def proc_status(pid: int, field: str) -> int | None:
    """A number from /proc/PID/status (VmRSS in kB, Threads)."""
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith(field + ":"))
    except (OSError, StopIteration):
        return None


def rss_mb(pid: int) -> float | None:
    kb = proc_status(pid, "VmRSS")
    return None if kb is None else kb / 1024


async def watch(pid: int, deadline: float, every: float, timeline: list) -> None:
    """RSS and thread count every ``every`` seconds: a plateau is a one-off cost, a steady climb a leak."""
    start = time.perf_counter()
    while time.perf_counter() < deadline:
        await asyncio.sleep(min(every, max(0.0, deadline - time.perf_counter())))
        timeline.append([round(time.perf_counter() - start), round(rss_mb(pid) or 0), proc_status(pid, "Threads")])


def percentiles(values: list[float]) -> dict:
    values = sorted(values)
    return {"requests": len(values), "p50_ms": round(statistics.median(values), 1) if values else None,
            "p99_ms": round(values[max(0, int(0.99 * len(values)) - 1)], 1) if values else None}


async def load(base: str, args, pid: int) -> dict:
    latencies: dict[str, list[float]] = {}
    errors: list[str] = []
    hostile_answers: dict[str, int] = {}
    memory_start, threads_start = rss_mb(pid), proc_status(pid, "Threads")
    start = time.perf_counter()
    deadline = start + args.seconds
    timeline: list = []
    clients = [client(base, args.endpoint, deadline, latencies, errors, i) for i in range(args.clients)]
    clients.append(watch(pid, deadline, max(5.0, args.seconds / 12), timeline))
    if args.hostile:
        clients.append(hostile(base, deadline, hostile_answers))
    await asyncio.gather(*clients)
    elapsed = time.perf_counter() - start
    every = [v for values in latencies.values() for v in values]
    memory_end = rss_mb(pid)
    return {"bench": "serve_load", "endpoint": args.endpoint, "clients": args.clients, "hostile": args.hostile,
            "seconds": round(elapsed, 1), "requests_per_s": round(len(every) / elapsed, 2), **percentiles(every),
            "per_endpoint": {name: percentiles(values) for name, values in sorted(latencies.items())},
            "errors": len(errors), "first_errors": errors[:3], "hostile_answers": hostile_answers,
            "server_rss_mb": {"start": round(memory_start, 1) if memory_start else None,
                              "end": round(memory_end, 1) if memory_end else None,
                              "growth": round(memory_end / memory_start - 1, 3) if memory_start and memory_end else None},
            "server_threads": {"start": threads_start, "end": proc_status(pid, "Threads")},
            "timeline_s_rss_mb_threads": timeline}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a trained text run folder")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--endpoint", choices=["mix", "vary", "sample", "healthz"], default="mix")
    parser.add_argument("--hostile", action="store_true", help="add one client sending oversized and stalled bodies")
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "vaekit", "serve", str(args.run), "--port", str(port),
                               "--max-n", "50", "--timeout", "120", "--body-timeout", "5"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
        models = httpx.get(base + "/v1/models", timeout=10).json()
        conditions = (models.get("models") or [{}])[0].get("conditions") or {}
        CONDITION_TEXT["needed"] = bool(conditions.get("text_embedding"))
        with httpx.Client(base_url=base, timeout=120) as http:  # warm-up: one of each, before memory is read
            for round_ in range(3):
                for name in MIX:
                    request_for(http, name, round_)
        print(json.dumps(asyncio.run(load(base, args, server.pid))), flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
