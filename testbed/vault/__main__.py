"""``python -m testbed.vault --dir DIR [--vault-...]``: serve the Vault emulation alone.

The same options and files as ``python -m testbed up`` without the Kubernetes part: used by the
benchmark (Vault in its own process) and by the tests that restart the process on a kept state.
``DIR/ready`` appears once serving and goes away on exit; SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from testbed.vault import up


async def _serve(args: argparse.Namespace) -> None:
    directory: Path = args.dir
    directory.mkdir(parents=True, exist_ok=True)
    ready = directory / "ready"
    ready.unlink(missing_ok=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with up.serve(args, directory) as vault:
        ready.write_text("ready\n")
        print(f"vault emulation ready at {vault.address}", file=sys.stderr, flush=True)
        await stop.wait()
    ready.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m testbed.vault")
    parser.add_argument("--dir", type=Path, required=True, help="where vault.env and ready go")
    up.add_arguments(parser)
    asyncio.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
