"""``vault-reads``: KV v2 reads per second the Vault emulation serves on one core.

Run on demand (not by pytest):

    .venv/bin/python -m bench vault-reads [--seconds 10] [--concurrency 32]

It starts the emulation in its own process (``python -m testbed.vault --vault-bootstrap``,
pinned to one CPU where the OS allows it), writes a few secrets, then drives
``GET /v1/secret/data/<key>`` from this process with concurrent aiohttp clients (pinned to
another CPU) for a bounded time, and writes the result to bench/results/vault-reads.json.
The emulation's own request counter (``/_testbed/requests``) cross-checks the client's count.
The target is at least 2,000 reads/s: the load the services' benchmarks put on Vault must not be
limited by the emulation.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "bench" / "results" / "vault-reads.json"
TARGET_READS_PER_SECOND = 2000
KEYS = 16


def _pin(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and cpu < (os.cpu_count() or 1):
        os.sched_setaffinity(0, {cpu})


@contextlib.contextmanager
def _emulation(directory: Path, *, server_cpu: int) -> Iterator[dict[str, str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "testbed.vault", "--dir", str(directory), "--vault-bootstrap"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        preexec_fn=lambda: _pin(server_cpu),  # noqa: PLW1509 - runs before exec, no threads yet
    )
    try:
        deadline = time.monotonic() + 30
        while not (directory / "ready").exists():
            if process.poll() is not None:
                raise RuntimeError("the emulation exited before it was ready")
            if time.monotonic() > deadline:
                raise RuntimeError("the emulation did not become ready within 30 s")
            time.sleep(0.05)
        lines = (directory / "vault.env").read_text().split()
        yield dict(line.split("=", 1) for line in lines)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)


async def _drive(
    address: str, token: str, *, seconds: float, warmup: float, concurrency: int
) -> dict[str, Any]:
    root = {"X-Vault-Token": token}
    connector = aiohttp.TCPConnector(limit=concurrency)
    # Control requests get their own session: the readers keep every pooled connection busy.
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        aiohttp.ClientSession(headers=root) as control,
    ):
        for index in range(KEYS):
            body = {"data": {"username": f"user-{index}", "password": "x" * 32}}
            async with control.post(f"{address}/v1/secret/data/bench/{index}", json=body) as r:
                r.raise_for_status()
        # Read as a service would: a non-root token whose policy the ACL check evaluates.
        policy = {"policy": 'path "secret/data/bench/*" { capabilities = ["read"] }'}
        async with control.put(f"{address}/v1/sys/policies/acl/bench", json=policy) as r:
            r.raise_for_status()
        async with control.post(
            f"{address}/v1/auth/token/create", json={"policies": ["bench"]}
        ) as r:
            r.raise_for_status()
            session.headers["X-Vault-Token"] = (await r.json())["auth"]["client_token"]
        counts = {"ok": 0, "errors": 0}
        measuring = False
        stop = False

        async def worker(offset: int) -> None:
            index = offset
            while not stop:
                url = f"{address}/v1/secret/data/bench/{index % KEYS}"
                async with session.get(url) as response:
                    await response.read()
                    if measuring:
                        counts["ok" if response.status == 200 else "errors"] += 1
                index += 1

        workers = [asyncio.create_task(worker(i)) for i in range(concurrency)]
        await asyncio.sleep(warmup)
        async with control.delete(f"{address}/_testbed/requests"):
            pass
        measuring = True
        started = time.perf_counter()
        await asyncio.sleep(seconds)
        measuring = False
        elapsed = time.perf_counter() - started
        async with control.get(f"{address}/_testbed/requests") as response:
            server = await response.json()
        stop = True
        await asyncio.gather(*workers)
    served = sum(n for key, n in server["requests"].items() if key.startswith("GET /v1/secret/"))
    return {
        "reads": counts["ok"],
        "errors": counts["errors"],
        "elapsed_s": round(elapsed, 3),
        "reads_per_second": round(counts["ok"] / elapsed, 1),
        "server_counted_reads": served,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench vault-reads",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args(argv)
    cpus = os.cpu_count() or 1
    server_cpu, client_cpu = 0, (1 if cpus > 1 else 0)
    with (
        tempfile.TemporaryDirectory() as temporary,
        _emulation(Path(temporary), server_cpu=server_cpu) as env,
    ):
        _pin(client_cpu)
        measured = asyncio.run(
            _drive(
                env["VAULT_ADDR"],
                env["VAULT_TOKEN"],
                seconds=args.seconds,
                warmup=args.warmup,
                concurrency=args.concurrency,
            )
        )
    result = {
        "benchmark": "vault_kv_reads",
        "what": "GET /v1/secret/data/<key> (kv-v2, token with a read policy) against the emulation",
        **measured,
        "target_reads_per_second": TARGET_READS_PER_SECOND,
        "meets_target": measured["reads_per_second"] >= TARGET_READS_PER_SECOND,
        "concurrency": args.concurrency,
        "server_cpu": server_cpu if hasattr(os, "sched_setaffinity") else None,
        "client_cpu": client_cpu if hasattr(os, "sched_setaffinity") else None,
        "cpus": cpus,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "python -m bench " + " ".join(sys.argv[1:]),
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    temporary_result = RESULT.with_suffix(".tmp")
    temporary_result.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(temporary_result, RESULT)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
