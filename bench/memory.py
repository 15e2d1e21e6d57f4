"""``memory``: syncd's resident memory (every process of the service, summed) after a cold
sync of each size, and what each 1,000 objects add above the idle floor (a handful)."""

from __future__ import annotations

import argparse
import asyncio

from bench.harness import cold_sync, prepare, running_bench

IDLE = 5

TARGETS = {"idle_rss_mib": "≤ 60", "sizes": "≤ 150 MiB at 10,000 (stretch: < 128)"}


async def _rss_after_sync(secrets: int, refresh: float) -> tuple[float, int]:
    async with running_bench() as bench:
        await prepare(bench, secrets=secrets, refresh=refresh)
        synced = await cold_sync(bench, secrets=secrets)
        await asyncio.sleep(min(3.0, secrets / 100))  # the first sync's writes settle
        return synced.syncd.rss(), synced.syncd.processes()


async def run(args: argparse.Namespace) -> dict[str, object]:
    floor, idle_processes = await _rss_after_sync(IDLE, args.refresh)
    sizes: dict[str, object] = {}
    for secrets in args.sizes:
        rss, processes = await _rss_after_sync(secrets, args.refresh)
        sizes[str(secrets)] = {
            "rss_mib": round(rss, 1),
            "processes": processes,
            "mib_per_1000_above_idle": round((rss - floor) * 1000 / (secrets - IDLE), 1)
            if secrets > IDLE else None,
        }
    return {"idle_objects": IDLE, "idle_rss_mib": round(floor, 1), "idle_processes": idle_processes,
            "sizes": sizes}
