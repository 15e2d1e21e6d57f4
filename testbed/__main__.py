"""``python -m testbed up --dir DIR``: serve both emulations until SIGTERM.

Each emulation contributes its own command-line options and its own async context manager
(``testbed.vault.up`` and ``testbed.kube.up``); this module only strings them together, writes
``DIR/ready`` once everything is serving, and waits for a signal.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path

from testbed.kube import up as kube_up
from testbed.vault import up as vault_up

PARTS = (vault_up, kube_up)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m testbed")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="serve the emulations until SIGTERM")
    up.add_argument(
        "--dir", type=Path, required=True, help="where to write vault.env, kubeconfig and ready"
    )
    for part in PARTS:
        part.add_arguments(up)
    return parser


async def _up(args: argparse.Namespace) -> None:
    directory: Path = args.dir
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ready").unlink(missing_ok=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        for part in PARTS:
            await stack.enter_async_context(part.serve(args, directory))
        (directory / "ready").write_text("ready\n")
        print(f"testbed ready in {directory}", file=sys.stderr, flush=True)
        await stop.wait()
    (directory / "ready").unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command == "up":
        asyncio.run(_up(args))


if __name__ == "__main__":
    main()
