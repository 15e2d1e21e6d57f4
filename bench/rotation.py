"""``rotation``: N synced objects; ``--writes`` of them get a new value in Vault at a fixed
rate, in random order; for each, the time from the Vault write being answered to the Secret
holding the new value (seen through a watch). refreshAfter is the bound to meet: p99 ≤
refreshAfter + 250 ms. One Deployment uses the first rotated Secret (a rolloutRestartTarget):
its pod template must be restarted exactly once."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time

from bench.harness import Bench, cold_sync, percentile, prepare, running_bench, spread
from bench.kube_server import NAMESPACE, static_secret

DEPLOYMENT = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/web"


async def _with_workload(bench: Bench, index: int, refresh: float) -> None:
    """Deployment ``web`` uses Secret ``s<index>``, whose VaultStaticSecret restarts it."""
    await bench.apply({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": NAMESPACE},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                     {"name": "web", "image": "web:1",
                      "envFrom": [{"secretRef": {"name": f"s{index}"}}]}]}}},
    })
    owner = static_secret(index, refresh=refresh)
    owner["spec"]["rolloutRestartTargets"] = [{"kind": "Deployment", "name": "web"}]
    await bench.apply(owner)


async def _generation(bench: Bench) -> int:
    async with bench.session.get(bench.kube_url + DEPLOYMENT) as response:
        return int((await response.json())["metadata"]["generation"])

TARGETS = {"p99_s": "≤ refreshAfter + 0.25 s", "not_rotated": "0", "deployment_restarts": "1"}


async def run(args: argparse.Namespace) -> dict[str, float | int]:
    chosen = spread(args.secrets, args.writes)
    async with running_bench() as bench:
        await prepare(bench, secrets=args.secrets, refresh=args.refresh)
        await _with_workload(bench, chosen[0], args.refresh)
        synced = await cold_sync(bench, secrets=args.secrets,
                                 syncd_args=("--rollout-debounce", f"{args.debounce}s"))
        await asyncio.sleep(min(args.refresh, 5.0))
        generation = await _generation(bench)
        written: dict[int, float] = {}
        began = time.monotonic()
        for number, index in enumerate(chosen):
            # A fixed rate: write number k is sent at k / rate, however long the last took.
            await asyncio.sleep(max(0.0, began + number / args.rate - time.monotonic()))
            written.update(await bench.write_secrets([index], "v2", concurrency=1))
        names = {f"s{i}": i for i in chosen}
        deadline = args.refresh * 2 + 30
        with contextlib.suppress(TimeoutError):  # those not rotated are counted below
            await bench.secrets.wait_count("v2", len(chosen), deadline=deadline)
        latencies = [bench.secrets.changed[name] - written[index]
                     for name, index in names.items() if bench.secrets.values.get(name) == "v2"]
        # The restart comes after the debounce; wait well past it to see there is no second.
        await asyncio.sleep(2.5 * args.debounce + 0.5)
        restarts = await _generation(bench) - generation
        cpu = synced.syncd.cpu()
    return {
        "writes": len(chosen),
        "rate_per_s": args.rate,
        "rotated": len(latencies),
        "not_rotated": len(chosen) - len(latencies),
        "p50_s": round(percentile(latencies, 0.50), 3),
        "p95_s": round(percentile(latencies, 0.95), 3),
        "p99_s": round(percentile(latencies, 0.99), 3),
        "max_s": round(max(latencies, default=float("nan")), 3),
        "bound_s": args.refresh + 0.25,
        "deployment_restarts": restarts,
        "syncd_cpu_s_total": round(cpu, 2),
    }
