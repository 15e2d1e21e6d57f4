"""``python -m bench SCENARIO [--secrets N] ...``: run one benchmark scenario.

Each scenario starts its own testbed processes and syncd, writes its figures to
``bench/results/<scenario>-<N>.json`` and prints a Markdown table with the machine, its
cores and the versions measured.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from collections.abc import Mapping
from typing import Any

from bench.harness import report

SCENARIOS = {
    "limit": "bench.limit",
    "cold-sync": "bench.cold_sync",
    "steady": "bench.steady",
    "rotation": "bench.rotation",
    "memory": "bench.memory",
    "unseal": "bench.unseal",
    "vault-reads": "bench.vault_reads",
    "kube-requests": "bench.kube_requests",
    "faults": "bench.faults.runner",
    "unsealer-faults": "bench.unsealer_faults",
}
#: Scenarios with a command line and a report of their own (the testbed's speed).
STANDALONE = ("vault-reads", "kube-requests", "faults", "unsealer-faults")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--secrets", type=int, default=1000,
                        help="VaultStaticSecrets (default 1,000)")
    parser.add_argument("--refresh", type=float, default=30.0,
                        help="their refreshAfter in seconds (default 30)")
    parser.add_argument("--concurrency", type=int, default=4,
                        help="limit and cold-sync: concurrent workers, and syncd's"
                        " --max-concurrent-reconciles and --vault-threads (default 4, syncd's)")
    parser.add_argument("--window", type=float, default=60.0,
                        help="steady: the measured window in seconds")
    parser.add_argument("--writes", type=int, default=200, help="rotation: secrets rotated")
    parser.add_argument("--rate", type=float, default=10.0,
                        help="rotation: Vault writes per second")
    parser.add_argument("--debounce", type=float, default=2.0,
                        help="rotation: syncd's --rollout-debounce in seconds (default 2, its)")
    parser.add_argument("--source", choices=("poll", "events", "audit"), default="poll",
                        help="rotation: how syncd learns of a write: polling only (default), "
                        "Vault's event notifications, or syncd audit-relay")
    parser.add_argument("--safety", type=float, default=600.0,
                        help="rotation with a source: syncd's --instant-updates-safety-interval"
                        " in seconds (default 600, its)")
    parser.add_argument("--late", action="store_true",
                        help="rotation --source audit: start the relay after the cold sync")
    parser.add_argument("--latency-blocks", type=int, default=3,
                        help="rotation --source audit: blocks of 100 Vault writes each without"
                        " and with the relay's audit device (default 3)")
    parser.add_argument("--restarts", type=int, default=20, help="unseal: pod restarts")
    parser.add_argument("--power-losses", type=int, default=5,
                        help="unseal: power cuts (every pod at once)")
    parser.add_argument("--peer", action="store_true",
                        help="unseal: two shares from a peer unsealer over mutual TLS")
    parser.add_argument("--pause", type=float, default=None,
                        help="unseal: seconds between events (default 0; 6 with --peer)")
    parser.add_argument("--templates", type=int, default=0,
                        help="memory: objects (of each size) that render a template")
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")],
                        default=[100, 1000, 10000], help="memory: sizes, comma-separated")
    return parser


def _rows(results: Mapping[str, Any], targets: Mapping[str, str]) -> list[tuple[str, Any, str]]:
    rows = []
    for key, value in results.items():
        if isinstance(value, Mapping) and all(isinstance(v, Mapping) for v in value.values()):
            for inner, figures in value.items():
                shown = ", ".join(f"{k} {v}" for k, v in figures.items())
                rows.append((f"{key} {inner}", shown, targets.get(key, "")))
        elif isinstance(value, Mapping):
            rows.append((key, ", ".join(f"{k} {v}" for k, v in value.items()),
                         targets.get(key, "")))
        else:
            rows.append((key, value, targets.get(key, "")))
    return rows


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in STANDALONE:
        importlib.import_module(SCENARIOS[argv[0]]).main(argv[1:])
        return
    args = _parser().parse_args(argv)
    module = importlib.import_module(SCENARIOS[args.scenario])
    results = asyncio.run(module.run(args))
    parameters = {"secrets": args.secrets, "refreshAfter_s": args.refresh}
    if args.scenario == "memory":
        parameters = {"sizes": ",".join(map(str, args.sizes)), "refreshAfter_s": args.refresh,
                      "templates": args.templates}
    elif args.scenario == "unseal":
        parameters = {"restarts": args.restarts, "power_losses": args.power_losses,
                      "custody": "peer" if args.peer else "local"}
    elif args.scenario == "steady":
        parameters["window_s"] = args.window
    elif args.scenario == "rotation":
        parameters |= {"writes": args.writes, "rate_per_s": args.rate, "source": args.source}
        if args.source != "poll":
            parameters["safety_interval_s"] = args.safety
        if args.source == "audit":
            parameters["relay_started"] = "after the cold sync" if args.late else "before syncd"
    elif args.scenario in ("limit", "cold-sync"):
        parameters["concurrency"] = args.concurrency
    suffix = f"-templates-{args.templates}" if args.templates else ""
    if args.scenario != "memory":
        suffix = f"-{args.secrets}"
    if args.scenario == "unseal":
        suffix = "-peer" if args.peer else "-local"
    targets = module.TARGETS
    if args.scenario == "rotation":
        suffix, targets = module.suffix(args), module.targets(args)
    report(args.scenario, parameters=parameters, results=results,
           rows=_rows(results, targets), suffix=suffix)


if __name__ == "__main__":
    main()
