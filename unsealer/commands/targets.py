"""Which Vault servers a command talks to: the pods, found as ``run`` finds them, or one address.

Each pod is addressed directly (``--address-template``, default ``https://{ip}:8200``) and not
through the Service: a sealed pod is not Ready, so the Service would never route to the pods
these commands most need to see. As for ``run``, a pod is Vault only if ``--statefulset``
controls it, and over https its server must prove the pod's name (``--server-name``); any other
pod with Vault's labels is listed with the reason and no address, so nothing talks to it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

import aiohttp

from plumbing.kube import PODS, STATEFULSETS, KubeError
from unsealer.commands.runner import Clients, CommandError
from unsealer.discovery import StatefulSet, VaultPod


@dataclass(frozen=True)
class Target:
    """One Vault server: a pod's name (or the address itself) and where it answers."""

    name: str
    #: ``""`` for a pod that has no IP yet, or that is not Vault's (see ``problem``).
    address: str
    #: The DNS name its certificate must carry (https to a pod of the StatefulSet).
    server_name: str | None = None
    #: Why this pod, with Vault's labels, is not spoken to.
    problem: str | None = None


async def find_targets(args: argparse.Namespace, clients: Clients) -> list[Target]:
    """``--address``, else every pod matching ``--selector`` in ``--namespace``, by name.

    No matching pod is a failure (exit 1): it is a wrong selector or namespace far more often
    than a Vault with no servers.
    """
    if args.address:
        return [Target(name=args.address, address=args.address)]
    objects = await list_pods(args, clients)
    if not objects:
        raise CommandError(
            f"no pods match selector {args.selector!r} in namespace {args.namespace!r} "
            "(see --namespace and --selector)"
        )
    statefulset = await _statefulset(args, clients)
    targets = []
    for obj in objects:
        pod = VaultPod.from_object(obj)
        problem = (f"StatefulSet {args.statefulset!r} not found in {args.namespace!r}"
                   if statefulset is None else statefulset.why_not_member(obj))
        if problem is not None or statefulset is None:
            targets.append(Target(
                name=pod.name, address="",
                problem=f"not a pod of StatefulSet {args.statefulset!r}: {problem}"))
            continue
        targets.append(Target(
            name=pod.name, address=pod.address(args.address_template) if pod.ip else "",
            server_name=pod.server_name(args.server_name, service=statefulset.service),
        ))
    return sorted(targets, key=lambda target: target.name)


async def _statefulset(args: argparse.Namespace, clients: Clients) -> StatefulSet | None:
    """The StatefulSet, listed by name: the unsealer's Role grants list/watch on that name."""
    kube = await clients.kube()
    try:
        body = await kube.request(
            "GET", STATEFULSETS.path(namespace=args.namespace),
            query=[("fieldSelector", f"metadata.name={args.statefulset}")],
        )
    except KubeError as exc:
        hint = " (RBAC: list statefulsets in that namespace)" if exc.status == 403 else ""
        raise CommandError(
            f"cannot read StatefulSet {args.statefulset!r} in {args.namespace!r}: {exc.status}"
            f" {exc.reason}: {exc.message}{hint}"
        ) from None
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise CommandError(f"cannot reach the Kubernetes API: {_describe(exc)}") from None
    items: list[dict[str, Any]] = body.get("items") or []
    return StatefulSet.from_object(items[0]) if items else None


async def list_pods(args: argparse.Namespace, clients: Clients) -> list[dict[str, Any]]:
    """The pod objects matching ``--selector`` in ``--namespace``."""
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
    return items


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
