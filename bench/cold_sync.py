"""``cold-sync``: syncd starts with N VaultStaticSecrets and none of their Secrets; the time
until the last Secret holds its data, against the ``limit`` rate on the same testbed, both at
``--concurrency`` (syncd's reconciles and Vault threads; 4 by default, as syncd's).

The ratio of the two rates is wall time, so it also measures the emulations (the Kubernetes
one spends about as much CPU serving syncd's requests as syncd spends making them) and
whatever else runs on the machine. What is syncd's own is its CPU per object (its start
included), set beside the ``limit`` client's (the driver process during ``limit``: an upper
bound, the driver's Secret watch is in it too)."""

from __future__ import annotations

import argparse
import time

from bench import limit
from bench.harness import cold_sync, prepare, running_bench

TARGETS = {"ratio_to_limit": "≥ 0.8"}


async def run(args: argparse.Namespace) -> dict[str, float]:
    async with running_bench() as bench:
        await prepare(bench, secrets=args.secrets, refresh=args.refresh)
        before = bench.testbed_cpu()
        synced = await cold_sync(bench, secrets=args.secrets, syncd_args=(
            "--max-concurrent-reconciles", str(args.concurrency),
            "--vault-threads", str(args.concurrency)))
        rss = synced.syncd.rss()
        testbed = {k: v - before[k] for k, v in bench.testbed_cpu().items()}
    async with running_bench() as bench:
        await bench.write_secrets(range(args.secrets), "v1")
        began = time.process_time()
        ceiling = await limit.measure(bench, secrets=args.secrets,
                                      concurrency=args.concurrency)
        limit_cpu = time.process_time() - began
    rate = args.secrets / synced.seconds
    ceiling_rate = args.secrets / ceiling
    return {
        "seconds": round(synced.seconds, 2),
        "per_second": round(rate, 1),
        "first_secret_after_s": round(synced.first_secret, 2),
        "syncd_cpu_s": round(synced.cpu_seconds, 2),
        "syncd_cpu_ms_per_object": round(1000 * synced.cpu_seconds / args.secrets, 2),
        "limit_client_cpu_ms_per_object": round(1000 * limit_cpu / args.secrets, 2),
        "kube_emulation_cpu_ms_per_object": round(1000 * testbed["kube"] / args.secrets, 2),
        "kube_emulation_cpu_s": round(testbed["kube"], 2),
        "vault_emulation_cpu_s": round(testbed["vault"], 2),
        "rss_mib_after": round(rss, 1),
        "limit_seconds": round(ceiling, 2),
        "limit_per_second": round(ceiling_rate, 1),
        "ratio_to_limit": round(rate / ceiling_rate, 2),
    }
