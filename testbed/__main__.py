"""``python -m testbed up --dir DIR``: serve both emulations until SIGTERM.

Each emulation contributes its own command-line options and its own async context manager
(``testbed.vault.up`` and ``testbed.kube.up``); this module only strings them together, with
``--vault-statefulset`` joins them (the Vault nodes become the pods of a StatefulSet, see
:mod:`testbed.statefulset`, with admin endpoints written to ``DIR/pods.env``), writes
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
from testbed.statefulset import serve_admin, vault_pods
from testbed.vault import up as vault_up

PARTS = (vault_up, kube_up)
PODS_FILE = "pods.env"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m testbed")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="serve the emulations until SIGTERM")
    up.add_argument(
        "--dir", type=Path, required=True, help="where to write vault.env, kubeconfig and ready"
    )
    for part in PARTS:
        part.add_arguments(up)
    joined = up.add_argument_group("Vault as a StatefulSet")
    joined.add_argument(
        "--vault-statefulset", action="store_true",
        help="run the Vault nodes as the pods vault-0..N-1 of StatefulSet vault (serviceName "
        "--vault-service, namespace --vault-namespace) on the nodes' addresses; admin "
        f"endpoints (restart, reschedule, power cut) in DIR/{PODS_FILE}",
    )
    joined.add_argument(
        "--pods-admin-port", type=int, default=0, help="port of those endpoints (0: any free)"
    )
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
        vault = await stack.enter_async_context(vault_up.serve(args, directory))
        kube = await stack.enter_async_context(kube_up.serve(args, directory))
        if args.vault_statefulset:
            pods = await stack.enter_async_context(vault_pods(
                kube, vault, namespace=args.vault_namespace, service=args.vault_service))
            url = await stack.enter_async_context(serve_admin(pods, port=args.pods_admin_port))
            pods_file = directory / PODS_FILE
            pods_file.write_text(f"TESTBED_PODS_ADMIN={url}\n"
                                 f"VAULT_NAMESPACE={args.vault_namespace}\n"
                                 f"VAULT_STATEFULSET={pods.name}\n"
                                 f"VAULT_SERVICE={args.vault_service}\n")
            stack.callback(pods_file.unlink, missing_ok=True)
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
