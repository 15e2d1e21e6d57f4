"""``unsealer status``: the seal state of every Vault pod, for people or for scripts.

Each pod's ``sys/seal-status`` (no token needed; it answers while sealed) is read at the pod's
own address, all pods at once, and over https only from a server proving the pod's DNS name.
The IDENTITY column says how each answer was obtained: ``verified <name>``, or ``plain http``
(nothing proves who answered: ``run`` needs ``--allow-plain-http`` for that). A pod with Vault's
labels that the StatefulSet does not control is listed as ``not Vault's`` and never asked.
``--output table`` (default) is for a terminal; ``--output json``
is one document for scripts. The exit code is the summary a health check or a runbook step
needs: 0 when every pod answered and is initialised and unsealed, 1 otherwise (a pod sealed,
uninitialised, unreachable or without an IP, or no pod found), 2 for bad options.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import asdict, dataclass

from plumbing.options import OptionParser
from unsealer.commands import options
from unsealer.commands.runner import FAILED, OK, Clients, execute
from unsealer.commands.targets import Target, find_targets
from unsealer.vault_sys import VaultSysError

EPILOG = """\
exit status:
  0  every pod answered, initialised and unsealed
  1  a pod is sealed, uninitialised, unreachable or has no IP, a pod with Vault's labels
     is not the StatefulSet's, or no pod matched
  2  bad options or credentials
"""


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser: OptionParser = commands.add_parser(
        "status",
        help="show the seal state of every Vault pod",
        description="Read sys/seal-status of every Vault pod (at the pod's own address) and "
        "show initialised, sealed, unseal progress and version.",
        epilog=EPILOG,
        env_prefix="UNSEALER_",
    )
    options.add_kubernetes(parser)
    options.add_vault_target(parser)
    parser.option(
        "--output", default="table", choices=("table", "json"),
        help="table for people, json for scripts",
    )
    options.add_command_logging(parser)
    parser.set_defaults(entry=main)


def main(args: argparse.Namespace) -> int:
    return execute(args, name="status", handler=status)


@dataclass(frozen=True)
class PodStatus:
    pod: str
    address: str
    reachable: bool
    initialized: bool | None = None
    sealed: bool | None = None
    progress: int | None = None
    threshold: int | None = None
    shares: int | None = None
    version: str | None = None
    error: str | None = None
    #: How the answer was had: "verified <server name>", "plain http", or "" (not asked).
    identity: str = ""
    #: The name the server proved over https (None: plain http, or not asked).
    server_name: str | None = None

    @property
    def healthy(self) -> bool:
        return self.reachable and bool(self.initialized) and self.sealed is False

    @property
    def state(self) -> str:
        if self.identity == "not Vault's":
            return "not Vault's"
        if not self.address:
            return "no IP"
        if not self.reachable:
            return "unreachable"
        if not self.initialized:
            return "uninitialised"
        return "sealed" if self.sealed else "unsealed"


async def probe(target: Target, clients: Clients) -> PodStatus:
    """One pod's seal status; a pod that cannot be asked is a row too, not an exception."""
    if target.problem:
        return PodStatus(pod=target.name, address="", reachable=False, error=target.problem,
                         identity="not Vault's")
    if not target.address:
        return PodStatus(
            pod=target.name, address="", reachable=False, error="the pod has no IP yet"
        )
    node = clients.vault(target.address, server_name=target.server_name)
    try:
        seal = await node.seal_status()
    except VaultSysError as exc:
        return PodStatus(pod=target.name, address=target.address, reachable=False, error=str(exc))
    if not target.address.startswith("https://"):
        identity = "plain http"
    else:
        identity = f"verified {target.server_name}" if node.verified else "https, name unchecked"
    return PodStatus(
        pod=target.name,
        address=target.address,
        identity=identity,
        server_name=target.server_name if node.verified else None,
        reachable=True,
        initialized=seal.initialized,
        sealed=seal.sealed,
        progress=seal.progress,
        threshold=seal.threshold,
        shares=seal.shares,
        version=seal.version,
    )


async def status(args: argparse.Namespace, clients: Clients) -> int:
    targets = await find_targets(args, clients)
    rows = await asyncio.gather(*(probe(target, clients) for target in targets))
    healthy = all(row.healthy for row in rows)
    if args.output == "json":
        document = {
            "healthy": healthy,
            "pods": [{**asdict(row), "state": row.state} for row in rows],
        }
        print(json.dumps(document, indent=2))
    else:
        print(render_table(rows))
    return OK if healthy else FAILED


def render_table(rows: list[PodStatus]) -> str:
    header = ("POD", "ADDRESS", "STATE", "INITIALIZED", "SEALED", "PROGRESS", "KEYS", "VERSION",
              "IDENTITY")
    lines = [header]
    for row in rows:
        known = row.reachable
        lines.append((
            row.pod,
            row.address or "-",
            row.state,
            _yes_no(row.initialized) if known else "-",
            _yes_no(row.sealed) if known else "-",
            f"{row.progress}/{row.threshold}" if known and row.initialized else "-",
            f"{row.threshold} of {row.shares}" if known and row.initialized else "-",
            (row.version or "-") if known else "-",
            row.identity or "-",
        ))
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    table = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    ]
    notes = [f"{row.pod}: {row.error}" for row in rows if row.error]
    if notes:
        table += ["", *notes]
    return "\n".join(table)


def _yes_no(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "no")
