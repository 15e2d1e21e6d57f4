"""Leases: the expiration manager behind dynamic secrets and ``sys/leases/*``.

A secret engine that hands out something revocable (database credentials) registers a lease
here; the client renews it with ``sys/leases/renew`` and revokes it with ``sys/leases/revoke``.
Vault computes a renewal's TTL the same way for every engine (``framework.CalculateTTL``): the
requested ``increment`` or else the engine's default TTL, capped at what is left of the max TTL
counted from the lease's *issue* time, with the warning ``TTL of "…" exceeded the effective
max_ttl of "…"; TTL value is capped accordingly`` when capped. So renewing again and again ends
at the max TTL, where the lease expires and the engine revokes the credentials.

A lease belongs to the token that created it: revoking (or expiring) the token revokes its
leases. Expiry is evaluated lazily against the injectable clock, before every request and on
every admin check, so a test advances the clock instead of sleeping; the next request sees the
credentials revoked. Leases persist in storage like everything else.
"""

from __future__ import annotations

import math
import secrets
import string
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from testbed.vault.clock import Clock, rfc3339
from testbed.vault.durations import go_duration
from testbed.vault.errors import VaultError
from testbed.vault.storage import Storage
from testbed.vault.tokens import SYSTEM_MAX_TTL, TokenStore

if TYPE_CHECKING:
    from testbed.vault.logical import Backend

_ALPHABET = string.ascii_letters + string.digits


@dataclass
class Lease:
    id: str  # "<mount path><engine path>/<random>", e.g. database/creds/app/Xy…
    token: str  # the token that created it ("" when none)
    issue_time: float
    expire_time: float
    renewable: bool
    #: The engine's own data (role, username): what revocation needs.
    internal: dict[str, Any] = field(default_factory=dict)
    last_renewal: float | None = None

    def ttl(self, now: float) -> int:
        return max(0, math.ceil(self.expire_time - now))

    def lookup_data(self, now: float) -> dict[str, Any]:
        """The ``data`` of ``sys/leases/lookup``."""
        return {
            "id": self.id,
            "issue_time": rfc3339(self.issue_time),
            "expire_time": rfc3339(self.expire_time),
            "last_renewal": rfc3339(self.last_renewal) if self.last_renewal is not None else None,
            "renewable": self.renewable,
            "ttl": self.ttl(now),
        }


def calculate_ttl(
    *, increment: int, backend_ttl: int, backend_max_ttl: int, issue_time: float, now: float
) -> tuple[int, list[str]]:
    """Vault's ``framework.CalculateTTL`` for a lease (no period): the TTL and any warnings."""
    max_ttl = SYSTEM_MAX_TTL
    if 0 < backend_max_ttl < max_ttl:
        max_ttl = backend_max_ttl
    ttl = increment or backend_ttl or SYSTEM_MAX_TTL
    remaining = math.floor(issue_time + max_ttl - now)
    if remaining < 0:
        raise VaultError(400, "past the max TTL, cannot renew")
    warnings: list[str] = []
    if ttl > remaining:
        warnings.append(
            f'TTL of "{go_duration(ttl)}" exceeded the effective max_ttl of '
            f'"{go_duration(remaining)}"; TTL value is capped accordingly'
        )
        ttl = remaining
    return ttl, warnings


class LeaseStore:
    """Every live lease, by ID; ``backend_for`` finds the engine that issued a lease."""

    def __init__(
        self,
        *,
        storage: Storage,
        clock: Clock,
        tokens: TokenStore,
        backend_for: Callable[[str], Backend | None],
    ) -> None:
        self._storage = storage
        self._clock = clock
        self._tokens = tokens
        self._backend_for = backend_for
        stored = storage.attach("leases", self._dump) or {}
        self._leases: dict[str, Lease] = {key: Lease(**value) for key, value in stored.items()}
        self._next_due = 0.0  # check everything at the first sweep
        tokens.on_revoke.append(self.revoke_token)

    def _dump(self) -> dict[str, Any]:
        return {key: asdict(lease) for key, lease in self._leases.items()}

    # -- what engines call -------------------------------------------------------------------

    def create(
        self,
        *,
        prefix: str,
        token: str,
        ttl: int,
        max_ttl: int,
        renewable: bool,
        internal: dict[str, Any],
    ) -> tuple[Lease, list[str]]:
        """A new lease under ``prefix`` (mount path + engine path); its TTL and warnings."""
        now = self._clock.now()
        duration, warnings = calculate_ttl(
            increment=0, backend_ttl=ttl, backend_max_ttl=max_ttl, issue_time=now, now=now
        )
        lease_id = prefix.rstrip("/") + "/" + "".join(secrets.choice(_ALPHABET) for _ in range(24))
        lease = Lease(
            id=lease_id,
            token=token,
            issue_time=now,
            expire_time=now + duration,
            renewable=renewable,
            internal=internal,
        )
        self._leases[lease_id] = lease
        owner = self._tokens.lookup(token) if token else None
        owner_due = owner.expire_time if owner is not None else None
        self._next_due = min(self._next_due, lease.expire_time, owner_due or math.inf)
        self._storage.changed()
        return lease, warnings

    # -- sys/leases ---------------------------------------------------------------------------

    def get(self, lease_id: str) -> Lease | None:
        self.sweep()
        return self._leases.get(lease_id)

    def renew(self, lease_id: str, *, increment: int) -> tuple[Lease, int, list[str]]:
        """Renew through the issuing engine; the lease, its new TTL and warnings."""
        lease = self.get(lease_id)
        if lease is None:
            raise VaultError(400, "lease not found")
        now = self._clock.now()
        if lease.expire_time <= now:
            raise VaultError(400, "lease expired")
        if not lease.renewable:
            raise VaultError(400, "lease is not renewable")
        backend = self._backend_for(lease.id)
        if backend is None:
            raise VaultError(400, "lease not found")
        try:
            backend_ttl, backend_max_ttl = backend.renew_secret(lease, increment=increment)
        except VaultError as error:
            # The expiration manager wraps what the engine said; sys/leases/renew answers every
            # error of Renew with 400 (handleErrorNoReadOnlyForward → ErrInvalidRequest).
            raise VaultError(
                400,
                "failed to renew entry: resp: (*logical.Response)(nil) err: "
                + "; ".join(error.errors),
            ) from None
        ttl, warnings = calculate_ttl(
            increment=increment,
            backend_ttl=backend_ttl,
            backend_max_ttl=backend_max_ttl,
            issue_time=lease.issue_time,
            now=now,
        )
        lease.expire_time = now + ttl
        lease.last_renewal = now
        self._storage.changed()
        return lease, ttl, warnings

    def revoke(self, lease_id: str) -> None:
        """Revoke one lease and the credentials behind it; an unknown ID is a no-op, as in Vault."""
        lease = self._leases.pop(lease_id, None)
        if lease is None:
            return
        backend = self._backend_for(lease.id)
        if backend is not None:
            backend.revoke_secret(lease)
        self._storage.changed()

    def revoke_prefix(self, prefix: str) -> None:
        for lease_id in [key for key in self._leases if key.startswith(prefix)]:
            self.revoke(lease_id)

    def list_ids(self, prefix: str) -> list[str]:
        """The next path segment of every lease ID under ``prefix`` (``sys/leases/lookup/``)."""
        self.sweep()
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        keys: set[str] = set()
        for lease_id in self._leases:
            if lease_id.startswith(prefix):
                rest = lease_id[len(prefix) :]
                head, slash, _ = rest.partition("/")
                keys.add(head + slash)
        return sorted(keys)

    def revoke_token(self, token_id: str) -> None:
        """The token ``token_id`` was revoked or expired: so are its leases."""
        for lease_id in [key for key, lease in self._leases.items() if lease.token == token_id]:
            self.revoke(lease_id)

    def leases(self) -> list[Lease]:
        self.sweep()
        return list(self._leases.values())

    def sweep(self) -> None:
        """Revoke leases past their expiry or whose token is gone. Cheap when nothing is due."""
        now = self._clock.now()
        if now < self._next_due:
            return
        next_due = math.inf
        for lease in list(self._leases.values()):
            if lease.id not in self._leases:
                continue  # revoked with an earlier lease's token
            if lease.expire_time <= now:
                self.revoke(lease.id)
                continue
            due = lease.expire_time
            if lease.token:
                token = self._tokens.lookup(lease.token)  # an expired token is revoked here
                if token is None:
                    self.revoke(lease.id)
                    continue
                if token.expire_time is not None:
                    due = min(due, token.expire_time)
            next_due = min(next_due, due)
        self._next_due = next_due
