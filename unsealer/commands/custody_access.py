"""Load the custody config and build its custodians, as every custody command does.

The Kubernetes client is created only when a ``kubernetesSecret`` custodian needs it, so that a
file-only custody works without a kubeconfig. Loading is synchronous (a small local file) so a
command can refuse a bad config before it asks a person to paste anything.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from unsealer.commands.runner import Clients, usage_error
from unsealer.custody import (
    Custodian,
    CustodyConfig,
    Distribution,
    build_custodians,
    load_config,
)
from unsealer.custody.config import KubeSecretConfig


def load_custody(args: argparse.Namespace, *, require_files: bool = True) -> CustodyConfig:
    """The validated config of ``--custody-config`` (blocking: a small local file).

    ``require_files=False`` for commands that create the share files (``init``, ``import``).
    """
    if not args.custody_config:
        usage_error("--custody-config (env UNSEALER_CUSTODY_CONFIG) is required")
    return load_config(
        Path(args.custody_config), vault_namespace=args.namespace, require_files=require_files
    )


async def build(config: CustodyConfig, clients: Clients) -> dict[str, Custodian]:
    needs_kube = any(isinstance(spec, KubeSecretConfig) for spec in config.share_custodians)
    return build_custodians(config, kube=await clients.kube() if needs_kube else None)


async def open_custody(
    args: argparse.Namespace, clients: Clients, *, require_files: bool = True
) -> tuple[CustodyConfig, dict[str, Custodian]]:
    """The config and one custodian per entry."""
    config = await asyncio.to_thread(load_custody, args, require_files=require_files)
    return config, await build(config, clients)


def placement_lines(distribution: Distribution, *, count: int, threshold: int) -> list[str]:
    """Where each share number went, by number and by custodian; never a share."""
    holders: dict[int, list[str]] = {number: [] for number in range(1, count + 1)}
    for name, numbers in distribution.placement.items():
        for number in numbers:
            holders[number].append(name)
    lines = [f"Stored {count} unseal key(s), threshold {threshold}:"]
    lines += [
        f"  unseal key {number}: {', '.join(names) or 'NOWHERE'}"
        for number, names in holders.items()
    ]
    lines.append("By custodian:")
    lines += [
        f"  {name}: unseal key(s) {', '.join(str(n) for n in numbers)}"
        for name, numbers in distribution.placement.items()
    ]
    return lines
