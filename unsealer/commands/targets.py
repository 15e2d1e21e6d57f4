"""Which Vault servers a command talks to: the pods, found as ``run`` finds them, or one address.

Each pod is addressed directly (``--address-template``, default ``http://{ip}:8200``) and not
through the Service: a sealed pod is not Ready, so the Service would never route to the pods
these commands most need to see.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

import aiohttp

from plumbing.kube import PODS, KubeError
from unsealer.commands.runner import Clients, CommandError
from unsealer.discovery import VaultPod


@dataclass(frozen=True)
class Target:
    """One Vault server: a pod's name (or the address itself) and where it answers."""

    name: str
    #: ``""`` for a pod that has no IP yet.
    address: str


async def find_targets(args: argparse.Namespace, clients: Clients) -> list[Target]:
    """``--address``, else every pod matching ``--selector`` in ``--namespace``, by name.

    No matching pod is a failure (exit 1): it is a wrong selector or namespace far more often
    than a Vault with no servers.
    """
    if args.address:
        return [Target(name=args.address, address=args.address)]
    pods = await list_pods(args, clients)
    if not pods:
        raise CommandError(
            f"no pods match selector {args.selector!r} in namespace {args.namespace!r} "
            "(see --namespace and --selector)"
        )
    return [
        Target(name=pod.name, address=pod.address(args.address_template) if pod.ip else "")
        for pod in pods
    ]


async def list_pods(args: argparse.Namespace, clients: Clients) -> list[VaultPod]:
    kube = await clients.kube()
    try:
        body = await kube.request(
            "GET",
            PODS.path(namespace=args.namespace),
            query=[("labelSelector", args.selector)],
        )
    except KubeError as exc:
        hint = " (RBAC: list pods in that namespace)" if exc.status == 403 else ""
        raise CommandError(
            f"cannot list the Vault pods in {args.namespace!r}: {exc.status} {exc.reason}: "
            f"{exc.message}{hint}"
        ) from None
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise CommandError(f"cannot reach the Kubernetes API: {_describe(exc)}") from None
    items: list[dict[str, Any]] = body.get("items") or []
    return sorted((VaultPod.from_object(item) for item in items), key=lambda pod: pod.name)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
