"""``memory``: syncd's resident memory (every process of the service, summed; RSS, and PSS,
which counts a page shared between them once, as a container's limit does) after a cold
sync of each size, and what each 1,000 objects add above the idle floor (a handful).
``--templates K``: the first K objects of each size (and of the floor) render a template, so
the template workers (processes of their own) run and are counted too."""

from __future__ import annotations

import argparse
import asyncio

from bench.harness import cold_sync, prepare, running_bench

IDLE = 5

TARGETS = {"idle_rss_mib": "≤ 60", "sizes": "≤ 150 MiB at 10,000 (stretch: < 128)"}


async def _rss_after_sync(secrets: int, refresh: float,
                          templates: int) -> tuple[float, float, int]:
    async with running_bench() as bench:
        await prepare(bench, secrets=secrets, refresh=refresh,
                      templates=min(templates, secrets))
        synced = await cold_sync(bench, secrets=secrets)
        await asyncio.sleep(min(3.0, secrets / 100))  # the first sync's writes settle
        return synced.syncd.rss(), synced.syncd.pss(), synced.syncd.processes()


async def run(args: argparse.Namespace) -> dict[str, object]:
    floor, floor_pss, idle_processes = await _rss_after_sync(IDLE, args.refresh, args.templates)
    sizes: dict[str, object] = {}
    for secrets in args.sizes:
        rss, pss, processes = await _rss_after_sync(secrets, args.refresh, args.templates)
        sizes[str(secrets)] = {
            "rss_mib": round(rss, 1),
            "pss_mib": round(pss, 1),
            "processes": processes,
            "mib_per_1000_above_idle": round((rss - floor) * 1000 / (secrets - IDLE), 1)
            if secrets > IDLE else None,
        }
    return {"templated_objects": args.templates, "idle_objects": IDLE,
            "idle_rss_mib": round(floor, 1), "idle_pss_mib": round(floor_pss, 1),
            "idle_processes": idle_processes, "sizes": sizes}
