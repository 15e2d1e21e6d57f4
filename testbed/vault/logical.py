"""The contract between the HTTP layer and the engines mounted behind it.

Vault routes every ``/v1/<path>`` to the mount with the longest matching prefix and hands the
engine a logical request: an operation (read, list, create, update, delete, patch), the path
relative to the mount and the decoded parameters. The engine answers with a logical response
that the HTTP layer wraps in the standard envelope. Engines never see HTTP; the server never
knows what an engine does.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from testbed.vault.clock import Clock
from testbed.vault.errors import VaultError
from testbed.vault.policies import PolicyStore
from testbed.vault.storage import Storage
from testbed.vault.tokens import TokenEntry, TokenStore

if TYPE_CHECKING:
    from testbed.vault.leases import Lease, LeaseStore
    from testbed.vault.node import Node

Operation = Literal["read", "list", "create", "update", "delete", "patch"]


@dataclass
class Request:
    operation: Operation
    path: str  # relative to the mount, no leading slash
    mount_path: str  # e.g. "secret/" or "auth/kubernetes/"
    data: dict[str, Any]
    token: TokenEntry | None
    node: Node
    content_type: str = ""
    remote_addr: str = ""


@dataclass
class Response:
    """A logical response; ``None`` from a handler means 204 No Content."""

    data: dict[str, Any] | None = None
    auth: dict[str, Any] | None = None
    warnings: list[str] | None = None
    lease_duration: int = 0
    renewable: bool = False
    lease_id: str = ""
    status: int = 200
    #: A bare body instead of the JSON envelope (``pki/ca/pem``, ``pki/crl``).
    raw: bytes | None = None
    content_type: str = ""
    # sys/mounts and sys/auth also repeat their data at the top level of the body.
    top_level: dict[str, Any] = field(default_factory=dict)


@dataclass
class Services:
    """What engines may use from the core: storage, time, tokens, policies and leases."""

    storage: Storage
    clock: Clock
    tokens: TokenStore
    policies: PolicyStore
    leases: LeaseStore


def entry_or_404(table: dict[str, Any], name: str) -> Any:
    """The entry ``name`` of an engine's table, or Vault's bare 404 for a missing one."""
    entry = table.get(name)
    if entry is None:
        raise VaultError(404)
    return entry


class Backend(abc.ABC):
    """One mounted engine. State lives in plain data the storage can serialise."""

    #: The ``mount_type`` of the response envelope.
    mount_type: str = ""
    #: Paths (relative to the mount) that need no token, e.g. ``login``.
    unauthenticated: frozenset[str] = frozenset()

    def __init__(self, *, services: Services, state: dict[str, Any] | None) -> None:
        self.services = services

    @abc.abstractmethod
    def dump(self) -> dict[str, Any]:
        """The engine's state as JSON-able data, to be passed back as ``state`` on load."""

    def exists(self, path: str) -> bool | None:
        """Existence check for create/update ACL decisions; ``None`` when there is none."""
        del path
        return None

    @abc.abstractmethod
    async def handle(self, request: Request) -> Response | None:
        """Serve one request; raise :class:`VaultError` for error responses."""

    def renew_secret(self, lease: Lease, *, increment: int) -> tuple[int, int]:
        """Extend what ``lease`` stands for; the engine's (default TTL, max TTL) for it.

        Raise :class:`VaultError` to refuse (the expiration manager wraps its text in a 400)."""
        del lease, increment
        raise VaultError(400, "lease is not renewable")

    def revoke_secret(self, lease: Lease) -> None:
        """Invalidate what ``lease`` stands for (it was revoked or expired)."""
        del lease

    def delete_entry(self, table: dict[str, Any], name: str) -> None:
        """Drop ``name`` from one of the engine's tables; a missing one is a no-op, as in Vault."""
        if table.pop(name, None) is not None:
            self.changed()

    def changed(self) -> None:
        self.services.storage.changed()
