"""Start and stop an emulated Vault (one node or a raft-like cluster) inside the running loop.

``async with running_vault() as vault:`` is the entry point for tests and benchmarks: it gives
the node addresses (``vault.address`` is vault-0), the CA file when TLS is on, and the
:class:`~testbed.vault.admin.VaultAdmin` handle. The Vault starts uninitialised and sealed,
like a fresh ``vault server``; ``vault.admin.bootstrap()`` gets a ready one in one call.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from testbed.vault.admin import WRONG_KEY_STATUSES, VaultAdmin
from testbed.vault.clock import Clock
from testbed.vault.core import Core
from testbed.vault.node import Node
from testbed.vault.storage import Storage
from testbed.vault.tls import NAMESPACE, SERVICE, VaultTls


@dataclass
class RunningVault:
    core: Core
    admin: VaultAdmin
    ca_file: Path | None
    #: The CA and per-node certificates when TLS is on (tests issue more from it).
    tls: VaultTls | None = None

    @property
    def nodes(self) -> list[Node]:
        return list(self.core.nodes)

    @property
    def address(self) -> str:
        """vault-0's address, e.g. ``http://127.0.0.1:41234``."""
        return self.core.nodes[0].address

    @property
    def addresses(self) -> list[str]:
        return [node.address for node in self.core.nodes]

    @property
    def verify(self) -> str | bool:
        """What to pass as ``verify=`` to hvac/requests for this Vault."""
        return str(self.ca_file) if self.ca_file is not None else True


@contextlib.asynccontextmanager
async def running_vault(
    *,
    nodes: int = 1,
    hosts: list[str] | None = None,
    port: int = 0,
    tls: bool = False,
    tls_dir: Path | None = None,
    state_dir: Path | None = None,
    wrong_key_status: int = 400,
    clock: Clock | None = None,
    fault_seed: int | None = None,
    tls_namespace: str = NAMESPACE,
    tls_service: str = SERVICE,
) -> AsyncIterator[RunningVault]:
    """Serve ``nodes`` instances sharing one storage; ``hosts[i]`` is node i's bind address.

    ``port=0`` picks a free port per node; a fixed port with distinct loopback hosts gives the
    ``127.0.0.2:8200``, ``127.0.0.3:8200`` layout of pods. ``state_dir`` keeps storage on disk
    so a new process on the same directory comes back sealed with the data intact. TLS needs
    ``tls_dir`` (where ``vault-ca.pem`` is written); node i then presents a certificate for pod
    ``vault-i`` of a StatefulSet governed by ``tls_service`` in ``tls_namespace``.
    """
    if nodes < 1:
        raise ValueError("at least one node")
    if wrong_key_status not in WRONG_KEY_STATUSES:
        raise ValueError("wrong_key_status must be 400 or 500")
    bind = list(hosts) if hosts else ["127.0.0.1"] * nodes
    if len(bind) != nodes:
        raise ValueError("give one host per node")
    certificates = None
    if tls:
        if tls_dir is None:
            raise ValueError("tls needs tls_dir for vault-ca.pem")
        certificates = VaultTls.create(directory=tls_dir, state_dir=state_dir,
                                       namespace=tls_namespace, service=tls_service)
    core = Core(storage=Storage(directory=state_dir), clock=clock or Clock())
    created = [
        Node(
            core=core,
            index=index,
            host=host,
            port=port,
            ssl_context=(certificates.node(index, host).server_context()
                         if certificates is not None else None),
            wrong_key_status=wrong_key_status,
            fault_seed=fault_seed,
        )
        for index, host in enumerate(bind)
    ]
    try:
        for node in created:
            await node.start()
        yield RunningVault(
            core=core, admin=VaultAdmin(core=core),
            ca_file=certificates.ca_file if certificates is not None else None,
            tls=certificates,
        )
    finally:
        for node in created:
            await node.stop()
        core.storage.flush()
