"""The ``syncd`` command line: ``syncd run`` and ``syncd --version``.

Every option is also an environment variable (``SYNCD_*``); see :mod:`plumbing.options`.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
from collections.abc import Sequence

from plumbing.lifecycle import serve
from plumbing.options import OptionParser, add_telemetry_options, positive_float, positive_int
from plumbing.version import VERSION
from syncd.durations import parse_duration
from syncd.operator import Settings, run

PROG = "syncd"


def build_parser() -> OptionParser:
    parser = OptionParser(
        prog=PROG,
        env_prefix="SYNCD_",
        description="Mirror Vault KV secrets into Kubernetes Secrets and restart the workloads "
        "that use them when the data really changes.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {VERSION}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser(
        "run",
        help="run the controller until SIGTERM",
        description="Run the controller until SIGTERM or SIGINT.",
        env_prefix="SYNCD_",
    )
    run.option(
        "--kubeconfig", default=None,
        help="kubeconfig file (default: in-cluster service account, else ~/.kube/config)",
    )
    run.option(
        "--namespace", default="vault-syncd",
        help="syncd's own namespace: the fingerprint key Secret and the default VaultAuth",
    )
    run.option(
        "--watch-namespace", default=None,
        help="only sync VaultStaticSecrets of this namespace (default: all namespaces)",
    )
    run.option(
        "--max-concurrent-reconciles", type=positive_int, default=4,
        help="reconciles running at once",
    )
    run.option("--vault-threads", type=positive_int, default=4, help="concurrent Vault requests")
    run.option(
        "--default-refresh-after", type=_duration, default="60s",
        help="refresh interval of a VaultStaticSecret without spec.refreshAfter",
    )
    run.option(
        "--rollout-debounce", type=_duration, default="2s",
        help="changes within this window restart each workload once",
    )
    run.option(
        "--backoff-max", type=_duration, default="5m", help="longest wait before a retry"
    )
    run.option(
        "--shutdown-grace", type=_duration, default="10s",
        help="time given to reconciles in flight on SIGTERM",
    )
    add_telemetry_options(run)
    return parser


def _duration(text: str) -> float:
    """A duration option (``30s``, ``1.5m``, ``1h``) in seconds."""
    try:
        return positive_float(str(parse_duration(text)))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _settings(args: argparse.Namespace) -> Settings:
    return Settings(
        kubeconfig=args.kubeconfig,
        namespace=args.namespace,
        watch_namespace=args.watch_namespace,
        concurrency=args.max_concurrent_reconciles,
        vault_threads=args.vault_threads,
        default_refresh_seconds=args.default_refresh_after,
        debounce_seconds=args.rollout_debounce,
        backoff_max_seconds=args.backoff_max,
        grace_seconds=args.shutdown_grace,
    )


async def _run(settings: Settings, stop: asyncio.Event) -> None:
    await run(settings, stop)


def main(argv: Sequence[str] | None = None) -> None:
    args: argparse.Namespace = build_parser().parse_args(argv)
    if args.command == "run":
        serve(
            prog=PROG,
            version=VERSION,
            log_format=args.log_format,
            log_level=args.log_level,
            main=functools.partial(_run, _settings(args)),
        )
