"""``limit``: the ceiling. A minimal aiohttp client does exactly the requests a first sync
needs — one Vault read, one Secret create — at syncd's concurrency, against the same testbed
processes, as syncd's ServiceAccount. ``cold-sync`` is judged against this rate."""

from __future__ import annotations

import argparse
import asyncio
import time

import aiohttp

from bench.harness import Bench, running_bench
from bench.kube_server import NAMESPACE, SYNCD_NAMESPACE

TARGETS: dict[str, str] = {}


async def measure(bench: Bench, *, secrets: int, concurrency: int) -> float:
    """Seconds for ``secrets`` reads and creates by ``concurrency`` workers."""
    pending = list(range(secrets))
    vault = {"X-Vault-Token": bench.vault_token}
    kube = {"Authorization": f"Bearer {bench.syncd_token}"}
    create = f"{bench.kube_url}/api/v1/namespaces/{NAMESPACE}/secrets"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def worker() -> None:
            while pending:
                index = pending.pop()
                async with session.get(f"{bench.vault_address}/v1/secret/data/app/{index}",
                                       headers=vault) as response:
                    data = (await response.json())["data"]["data"]
                async with session.post(create, headers=kube, json={
                        "metadata": {"name": f"limit-{index}", "namespace": NAMESPACE,
                                     "labels": {"app.kubernetes.io/managed-by": "limit"}},
                        "stringData": data}) as response:
                    await response.read()
                    response.raise_for_status()

        began = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.monotonic() - began


async def run(args: argparse.Namespace) -> dict[str, float]:
    async with running_bench() as bench:
        await bench.write_secrets(range(args.secrets), "v1")
        seconds = await measure(bench, secrets=args.secrets, concurrency=args.concurrency)
    rate = args.secrets / seconds
    return {"seconds": round(seconds, 2), "per_second": round(rate, 1),
            "identity": f"system:serviceaccount:{SYNCD_NAMESPACE}:vault-syncd"}
