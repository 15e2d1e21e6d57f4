"""``kube-requests``: the Kubernetes emulation's simple requests per second and concurrent watches.

Run on demand (not by pytest):

    .venv/bin/python -m bench kube-requests [--seconds 5] [--concurrency 16] [--watches 100]

The server runs in its own process, pinned to one CPU when the platform allows it; the load comes
from this process (pinned to another CPU when there is one). Results are printed and written to
bench/results/kube-requests.json. Phases:

1. ``get``: GET one Secret, by ``concurrency`` keep-alive connections, for ``seconds``.
2. ``list``: GET a list of 20 ConfigMaps.
3. ``patch``: merge-patch one Secret with a changing value (a real write each time).
4. ``watch``: open ``watches`` concurrent watches on Secrets, make 200 writes, and measure until
   every watcher has seen every event (events delivered per second, and the lag of the last one).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from testbed.kube import running_kube

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "kube-requests.json"


def _pin(cpu: int) -> str:
    if hasattr(os, "sched_setaffinity") and os.cpu_count() and cpu < (os.cpu_count() or 1):
        os.sched_setaffinity(0, {cpu})
        return str(cpu)
    return "unpinned"


async def _serve(port: int) -> None:
    pinned = _pin(0)
    async with running_kube(port=port) as kube:
        print(json.dumps({"ready": kube.url, "cpu": pinned}), flush=True)
        await asyncio.Event().wait()


async def _timed(
    session: aiohttp.ClientSession, seconds: float, concurrency: int, make: Any
) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    counter = 0

    async def worker() -> None:
        nonlocal errors, counter
        while time.perf_counter() < deadline:
            counter += 1
            method, url, kwargs = make(counter)
            start = time.perf_counter()
            async with session.request(method, url, **kwargs) as resp:
                await resp.read()
                if resp.status >= 400:
                    errors += 1
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": errors,
        "seconds": round(elapsed, 3),
        "requests_per_second": round(len(latencies) / elapsed, 1),
        "latency_ms": {
            "p50": round(statistics.median(latencies) * 1000, 2),
            "p99": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2),
            "max": round(latencies[-1] * 1000, 2),
        },
    }


async def _watch_phase(base: str, watches: int, writes: int) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        async with session.get(f"{base}/api/v1/namespaces/bench/secrets") as resp:
            rv = (await resp.json())["metadata"]["resourceVersion"]
        received = [0] * watches
        done = asyncio.Event()
        last_seen = [0.0]

        async def watcher(index: int) -> None:
            url = (
                f"{base}/api/v1/namespaces/bench/secrets?watch=true&resourceVersion={rv}"
                "&timeoutSeconds=120"
            )
            async with session.get(url) as resp:
                async for _line in resp.content:
                    received[index] += 1
                    if received[index] == writes:
                        last_seen[0] = time.perf_counter()
                        if all(n >= writes for n in received):
                            done.set()
                        return

        tasks = [asyncio.create_task(watcher(i)) for i in range(watches)]
        await asyncio.sleep(1.0)  # let every watch connect before writing
        start = time.perf_counter()
        for i in range(writes):
            body = {"data": {"v": f"{i:08d}"}}
            async with session.patch(
                f"{base}/api/v1/namespaces/bench/secrets/watched",
                json=body,
                headers={"Content-Type": "application/merge-patch+json"},
            ) as resp:
                await resp.read()
        written = time.perf_counter()
        await asyncio.wait_for(done.wait(), 60)
        for task in tasks:
            task.cancel()
        elapsed = last_seen[0] - start
        return {
            "watches": watches,
            "writes": writes,
            "events_delivered": sum(received),
            "seconds": round(elapsed, 3),
            "events_per_second": round(sum(received) / elapsed, 1),
            "writes_per_second_while_watched": round(writes / (written - start), 1),
            "lag_after_last_write_ms": round((last_seen[0] - written) * 1000, 1),
        }


async def _load(base: str, args: argparse.Namespace) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.post(
            f"{base}/api/v1/namespaces", json={"metadata": {"name": "bench"}}
        ) as r:
            await r.read()
        for name in ("target", "watched"):
            async with session.post(
                f"{base}/api/v1/namespaces/bench/secrets",
                json={"metadata": {"name": name}, "stringData": {"v": "x"}},
            ) as r:
                await r.read()
        for i in range(20):
            async with session.post(
                f"{base}/api/v1/namespaces/bench/configmaps",
                json={"metadata": {"name": f"cm{i}"}, "data": {"k": "v" * 100}},
            ) as r:
                await r.read()
        results: dict[str, Any] = {}
        secret = f"{base}/api/v1/namespaces/bench/secrets/target"
        configmaps = f"{base}/api/v1/namespaces/bench/configmaps"
        results["get"] = await _timed(
            session, args.seconds, args.concurrency, lambda n: ("GET", secret, {})
        )
        results["list"] = await _timed(
            session, args.seconds, args.concurrency, lambda n: ("GET", configmaps, {})
        )
        results["patch"] = await _timed(
            session,
            args.seconds,
            args.concurrency,
            lambda n: (
                "PATCH",
                secret,
                {
                    "json": {"stringData": {"v": str(n)}},
                    "headers": {"Content-Type": "application/merge-patch+json"},
                },
            ),
        )
    results["watch"] = await _watch_phase(base, args.watches, 200)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench kube-requests",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--watches", type=int, default=100)
    parser.add_argument("--port", type=int, default=18555)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(_serve(args.port))
        return
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.kube_requests", "--serve", "--port", str(args.port)],
        stdout=subprocess.PIPE,
        env=env,
        cwd=ROOT,
        text=True,
    )
    try:
        assert server.stdout is not None
        ready = json.loads(server.stdout.readline())
        client_cpu = _pin(1)
        results = asyncio.run(_load(ready["ready"], args))
    finally:
        server.terminate()
        server.wait(10)
    report = {
        "benchmark": "kube_requests",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "server_cpu": ready["cpu"],
        "client_cpu": client_cpu,
        "concurrency": args.concurrency,
        "results": results,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":  # the server half: python -m bench.kube_requests --serve
    main()
