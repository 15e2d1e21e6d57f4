"""The ``syncd`` command line: ``syncd run`` and ``syncd --version``.

Every option is also an environment variable (``SYNCD_*``); see :mod:`plumbing.options`.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence

import structlog

from plumbing.lifecycle import serve
from plumbing.options import OptionParser, add_telemetry_options
from plumbing.version import VERSION

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
    add_telemetry_options(run)
    return parser


async def _run(stop: asyncio.Event) -> None:
    log = structlog.get_logger(PROG)
    # The controller arrives with its issue; until then the process proves its plumbing:
    # telemetry set up, ready, and a clean stop on SIGTERM.
    log.info("ready", version=VERSION)
    await stop.wait()
    log.info("stopped")


def main(argv: Sequence[str] | None = None) -> None:
    args: argparse.Namespace = build_parser().parse_args(argv)
    if args.command == "run":
        serve(
            prog=PROG,
            version=VERSION,
            log_format=args.log_format,
            log_level=args.log_level,
            main=_run,
        )
