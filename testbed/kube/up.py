"""``python -m testbed up``: the Kubernetes half (options prefixed ``--kube-``).

Serves the emulation on the given address and writes ``DIR/kubeconfig`` (the server URL, a user
with the admin token, namespace ``default``), removing it again on exit.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from testbed.kube.api import Kube, running_kube
from testbed.kube.cluster import CONTROLLERS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Kubernetes emulation")
    group.add_argument(
        "--kube-host", default="127.0.0.1", help="listen address (default 127.0.0.1)"
    )
    group.add_argument(
        "--kube-port", type=int, default=0, help="listen port (default: any free port)"
    )
    group.add_argument(
        "--kube-token",
        default="testbed-admin-token",
        help="the admin bearer token written to the kubeconfig",
    )
    group.add_argument(
        "--kube-disable",
        action="append",
        default=[],
        choices=CONTROLLERS,
        metavar="CONTROLLER",
        help=f"do not run a controller ({', '.join(CONTROLLERS)})",
    )
    group.add_argument(
        "--kube-watch-window",
        type=int,
        default=1000,
        help="watch history kept per resource (older RVs get 410)",
    )
    group.add_argument(
        "--kube-bookmark-interval",
        type=float,
        default=60.0,
        help="seconds of idle watch before a BOOKMARK",
    )
    group.add_argument(
        "--kube-pod-ready-delay",
        type=float,
        default=0.5,
        help="seconds from container start to Ready",
    )


@contextlib.asynccontextmanager
async def serve(args: argparse.Namespace, directory: Path) -> AsyncIterator[Kube]:
    async with running_kube(
        disable=args.kube_disable,
        host=args.kube_host,
        port=args.kube_port,
        admin_token=args.kube_token,
        watch_window=args.kube_watch_window,
        bookmark_interval=args.kube_bookmark_interval,
        pod_ready_delay=args.kube_pod_ready_delay,
    ) as kube:
        path = kube.write_kubeconfig(directory / "kubeconfig")
        try:
            yield kube
        finally:
            path.unlink(missing_ok=True)
