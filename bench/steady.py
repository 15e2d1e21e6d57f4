"""``steady``: N synced objects, nothing changes. Over a window: Vault reads, Kubernetes
requests (the Lease renewals apart), syncd's CPU per refresh, and refreshes done against
refreshes due (N * window / refreshAfter)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import Iterable
from pathlib import Path

from bench.harness import TICKS, cold_sync, prepare, running_bench

TARGETS = {"refreshes_done": "= refreshes due", "vault_other_requests": "0",
           "kube_requests_not_lease": "0", "cpu_ms_per_refresh": "≤ 0.5"}


async def run(args: argparse.Namespace) -> dict[str, float | int | dict[str, int]]:
    async with running_bench() as bench:
        await prepare(bench, secrets=args.secrets, refresh=args.refresh)
        synced = await cold_sync(bench, secrets=args.secrets)
        # Let the first sync's status patches and Events settle: one refresh period.
        await asyncio.sleep(min(args.refresh, args.window))
        await bench.kube_requests(reset=True)
        await bench.vault_requests(reset=True)
        cpu, system, began = synced.syncd.cpu(), _system(synced.syncd.pids()), time.monotonic()
        await asyncio.sleep(args.window)
        elapsed = time.monotonic() - began
        cpu = synced.syncd.cpu() - cpu
        system = _system(synced.syncd.pids()) - system
        vault = await bench.vault_requests()
        kube = await bench.kube_requests()
        rss = synced.syncd.rss()
    reads = sum(n for key, n in vault.items() if key.startswith("GET /v1/secret/data/"))
    other_vault = sum(vault.values()) - reads
    leases = {k: n for k, n in kube.items() if "leases" in k}
    other_kube = {k: n for k, n in kube.items() if "leases" not in k}
    due = args.secrets * elapsed / args.refresh
    return {
        "window_s": round(elapsed, 1),
        "refreshes_done": reads,
        "refreshes_due": round(due),
        "vault_other_requests": other_vault,
        "kube_requests_not_lease": sum(other_kube.values()),
        "kube_requests_not_lease_detail": other_kube,
        "lease_requests": sum(leases.values()),
        "cpu_percent": round(100 * cpu / elapsed, 2),
        "cpu_ms_per_refresh": round(1000 * cpu / max(reads, 1), 3),
        # The kernel's share (sockets, epoll): what no Python-level change removes.
        "cpu_ms_per_refresh_in_kernel": round(1000 * system / max(reads, 1), 3),
        "rss_mib": round(rss, 1),
    }


def _system(pids: Iterable[int]) -> float:
    """CPU seconds ``pids`` spent in the kernel (stime)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[12])
    return total / TICKS
