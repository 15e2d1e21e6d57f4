"""The ``unsealer`` command line: ``unsealer run`` and ``unsealer --version``.

Every option is also an environment variable (``UNSEALER_*``); see :mod:`plumbing.options`.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence

import structlog

from plumbing.lifecycle import serve
from plumbing.options import OptionParser, add_telemetry_options
from plumbing.version import VERSION

PROG = "unsealer"


def build_parser() -> OptionParser:
    parser = OptionParser(
        prog=PROG,
        env_prefix="UNSEALER_",
        description="Watch the Vault pods and unseal each one that comes back sealed, "
        "gathering the threshold of unseal shares from split custody.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {VERSION}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser(
        "run",
        help="watch and unseal until SIGTERM",
        description="Watch the Vault pods and unseal them until SIGTERM or SIGINT.",
        env_prefix="UNSEALER_",
    )
    add_telemetry_options(run)
    return parser


async def _run(stop: asyncio.Event) -> None:
    log = structlog.get_logger(PROG)
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
