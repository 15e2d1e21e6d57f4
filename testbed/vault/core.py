"""What the instances of one emulated cluster share: storage and everything kept in it.

In a raft cluster vault-0/1/2 replicate one storage, so mounts, KV data, policies, auth
configuration, tokens and the seal configuration are the same on every node, while each node's
seal state is its own (see :mod:`testbed.vault.node`). :class:`Core` is that shared part.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from testbed.vault import sealing
from testbed.vault.clock import Clock
from testbed.vault.errors import VaultError
from testbed.vault.leases import LeaseStore
from testbed.vault.logical import Backend, Services
from testbed.vault.mounts import MountTable
from testbed.vault.policies import PolicyStore
from testbed.vault.sealing import SealConfig
from testbed.vault.storage import Storage
from testbed.vault.system_backend import SystemBackend
from testbed.vault.tokens import TokenStore

if TYPE_CHECKING:
    from testbed.vault.node import Node

VAULT_VERSION = "1.17.6"
BUILD_DATE = "2024-09-24T19:48:40Z"


@dataclass(frozen=True)
class InitResult:
    """What ``sys/init`` returns: the unseal shares and the initial root token."""

    keys: list[bytes]
    root_token: str

    @property
    def keys_hex(self) -> list[str]:
        return [key.hex() for key in self.keys]

    @property
    def keys_base64(self) -> list[str]:
        return [base64.b64encode(key).decode() for key in self.keys]


class Core:
    def __init__(self, *, storage: Storage, clock: Clock, version: str = VAULT_VERSION) -> None:
        self.storage = storage
        self.clock = clock
        self.version = version
        self.nodes: list[Node] = []
        seal = storage.attach("seal", self._dump_seal)
        self.seal_config: SealConfig | None = SealConfig(**seal) if seal else None
        cluster = storage.attach("cluster", lambda: self.cluster) or {}
        self.cluster: dict[str, str] = cluster
        self.policies = PolicyStore(storage=storage)
        self.tokens = TokenStore(storage=storage, clock=clock)
        self.leases = LeaseStore(
            storage=storage, clock=clock, tokens=self.tokens, backend_for=self._lease_backend
        )
        self.services = Services(
            storage=storage,
            clock=clock,
            tokens=self.tokens,
            policies=self.policies,
            leases=self.leases,
        )
        self.mounts = MountTable(
            services=self.services, system=lambda: SystemBackend(core=self, services=self.services)
        )

    def _lease_backend(self, lease_id: str) -> Backend | None:
        routed = self.mounts.route(lease_id)
        return routed[0].backend if routed is not None else None

    def _dump_seal(self) -> dict[str, Any] | None:
        return self.seal_config.to_state() if self.seal_config is not None else None

    @property
    def initialized(self) -> bool:
        return self.seal_config is not None

    def active_node(self) -> Node | None:
        """The node that answers as active: the first unsealed one (HA leader election stand-in)."""
        return next((node for node in self.nodes if not node.sealed), None)

    def initialize(self, *, shares: int, threshold: int) -> InitResult:
        """``sys/init`` for a Shamir seal: validate, create the keyring, mint the root token."""
        prefix = "invalid seal configuration: "
        if shares < 1:
            raise VaultError(400, prefix + "shares must be at least one")
        if threshold < 1:
            raise VaultError(400, prefix + "threshold must be at least one")
        if shares > 1 and threshold == 1:
            raise VaultError(400, prefix + "threshold must be greater than one for multiple shares")
        if shares > 255:
            raise VaultError(400, prefix + "shares must be less than 256")
        if threshold > 255:
            raise VaultError(400, prefix + "threshold must be less than 256")
        if threshold > shares:
            raise VaultError(400, prefix + "threshold cannot be larger than shares")
        if self.initialized:
            raise VaultError(400, "Vault is already initialized")
        config, keys = sealing.create(shares=shares, threshold=threshold)
        self.seal_config = config
        self.cluster = {
            "name": "vault-cluster-" + secrets.token_hex(4),
            "id": str(uuid.uuid4()),
        }
        root = self.tokens.create_root()
        self.storage.changed()
        self.storage.flush()
        return InitResult(keys=keys, root_token=root.id)
