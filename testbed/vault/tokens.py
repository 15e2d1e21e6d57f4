"""The token store: root and child service tokens, their lifetimes, uses and revocation.

Vault tokens carry policies, a TTL bounded by an explicit max TTL and by the system max
(768h), a renewable flag and an optional use count; revoking a token revokes its children
unless they are orphans. Expiry is evaluated lazily against the injectable clock, so a test
advances time instead of sleeping and the next request with the token gets 403.
"""

from __future__ import annotations

import math
import secrets
import string
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from testbed.vault.clock import Clock, rfc3339
from testbed.vault.errors import VaultError
from testbed.vault.storage import Storage

SYSTEM_MAX_TTL = 768 * 3600  # Vault's default and max lease TTL: 32 days
_ALPHABET = string.ascii_letters + string.digits


def _random(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def new_token_id() -> str:
    """An ``hvs.``-prefixed service token ID (the modern Vault format's prefix and length)."""
    return "hvs." + _random(24)


@dataclass
class TokenEntry:
    id: str
    accessor: str
    policies: list[str]
    path: str
    display_name: str
    creation_time: float
    creation_ttl: int  # seconds; 0 = never expires (root tokens)
    expire_time: float | None
    explicit_max_ttl: int = 0
    period: int = 0
    renewable: bool = False
    num_uses: int = 0  # 0 = unlimited
    parent: str = ""
    meta: dict[str, str] | None = None
    orphan: bool = False
    role: str = ""
    children: list[str] = field(default_factory=list)

    @property
    def is_root(self) -> bool:
        return "root" in self.policies

    def ttl_remaining(self, now: float) -> int:
        if self.expire_time is None:
            return 0
        return max(0, math.ceil(self.expire_time - now))

    def lookup_data(self, now: float) -> dict[str, Any]:
        """The ``data`` of ``auth/token/lookup*`` (reference §1.10)."""
        return {
            "accessor": self.accessor,
            "creation_time": int(self.creation_time),
            "creation_ttl": self.creation_ttl,
            "display_name": self.display_name,
            "entity_id": "",
            "expire_time": rfc3339(self.expire_time) if self.expire_time is not None else None,
            "explicit_max_ttl": self.explicit_max_ttl,
            "id": self.id,
            "issue_time": rfc3339(self.creation_time),
            "meta": self.meta,
            "num_uses": self.num_uses,
            "orphan": self.orphan,
            "path": self.path,
            "period": self.period or None,
            "policies": list(self.policies),
            "renewable": self.renewable,
            "ttl": self.ttl_remaining(now),
            "type": "service",
        }

    def auth_block(self, now: float) -> dict[str, Any]:
        """The ``auth`` object of a login, token creation or renewal response."""
        return {
            "client_token": self.id,
            "accessor": self.accessor,
            "policies": list(self.policies),
            "token_policies": list(self.policies),
            "metadata": self.meta,
            "lease_duration": self.ttl_remaining(now),
            "renewable": self.renewable,
            "entity_id": "",
            "token_type": "service",
            "orphan": self.orphan,
            "mfa_requirement": None,
            "num_uses": self.num_uses,
        }


@dataclass(frozen=True)
class TokenRequest:
    """What a caller asks for; auth methods fill it from their role's ``token_*`` fields."""

    policies: list[str]
    path: str
    display_name: str = "token"
    ttl: int = 0
    max_ttl: int = 0
    explicit_max_ttl: int = 0
    period: int = 0
    renewable: bool = True
    num_uses: int = 0
    no_default_policy: bool = False
    meta: dict[str, str] | None = None
    orphan: bool = False
    parent: TokenEntry | None = None
    token_id: str | None = None
    role: str = ""


def _policy_list(policies: list[str], *, no_default_policy: bool) -> list[str]:
    names = {p.strip().lower() for p in policies if p.strip()}
    if "root" in names:
        return ["root"]
    if not no_default_policy:
        names.add("default")
    return sorted(names)


class TokenStore:
    def __init__(self, *, storage: Storage, clock: Clock) -> None:
        self._storage = storage
        self._clock = clock
        stored = storage.attach("tokens", self._dump) or {}
        self._tokens: dict[str, TokenEntry] = {
            token_id: TokenEntry(**entry) for token_id, entry in stored.items()
        }
        self._by_accessor = {entry.accessor: entry.id for entry in self._tokens.values()}
        #: Called with the ID of every revoked (or expired) token: its leases go with it.
        self.on_revoke: list[Callable[[str], None]] = []

    def _dump(self) -> dict[str, Any]:
        return {token_id: asdict(entry) for token_id, entry in self._tokens.items()}

    def create_root(self) -> TokenEntry:
        now = self._clock.now()
        entry = TokenEntry(
            id=new_token_id(),
            accessor=_random(24),
            policies=["root"],
            path="auth/token/root",
            display_name="root",
            creation_time=now,
            creation_ttl=0,
            expire_time=None,
            orphan=True,
        )
        self._add(entry)
        return entry

    def create(self, request: TokenRequest) -> TokenEntry:
        now = self._clock.now()
        policies = _policy_list(request.policies, no_default_policy=request.no_default_policy)
        if request.period:
            ttl = request.period
        else:
            ttl = request.ttl or SYSTEM_MAX_TTL
            if request.max_ttl:
                ttl = min(ttl, request.max_ttl)
            ttl = min(ttl, SYSTEM_MAX_TTL)
        if request.explicit_max_ttl:
            ttl = min(ttl, request.explicit_max_ttl)
        expire_time = now + ttl
        parent = request.parent
        orphan = request.orphan or parent is None
        if parent is not None and not orphan and parent.expire_time is not None:
            # A child never outlives its parent.
            expire_time = min(expire_time, parent.expire_time)
            ttl = max(0, int(expire_time - now))
        token_id = request.token_id or new_token_id()
        if token_id in self._tokens:
            raise VaultError(400, "cannot use a token ID that is already in use")
        entry = TokenEntry(
            id=token_id,
            accessor=_random(24),
            policies=policies,
            path=request.path,
            display_name=request.display_name,
            creation_time=now,
            creation_ttl=ttl,
            expire_time=expire_time,
            explicit_max_ttl=request.explicit_max_ttl,
            period=request.period,
            renewable=request.renewable,
            num_uses=request.num_uses,
            parent="" if orphan or parent is None else parent.id,
            meta=request.meta,
            orphan=orphan,
            role=request.role,
        )
        if parent is not None and not orphan:
            parent.children.append(entry.id)
        self._add(entry)
        return entry

    def _add(self, entry: TokenEntry) -> None:
        self._tokens[entry.id] = entry
        self._by_accessor[entry.accessor] = entry.id
        self._storage.changed()

    def lookup(self, token_id: str) -> TokenEntry | None:
        """The live entry for ``token_id``; an expired one is revoked on the way."""
        entry = self._tokens.get(token_id)
        if entry is None:
            return None
        if entry.expire_time is not None and entry.expire_time <= self._clock.now():
            self.revoke(entry.id)
            return None
        return entry

    def lookup_accessor(self, accessor: str) -> TokenEntry | None:
        token_id = self._by_accessor.get(accessor)
        return self.lookup(token_id) if token_id is not None else None

    def accessors(self) -> list[str]:
        return sorted(self._by_accessor)

    def use(self, entry: TokenEntry) -> None:
        """Count one use of a limited-use token; the last use revokes it."""
        if entry.num_uses <= 0:
            return
        entry.num_uses -= 1
        if entry.num_uses == 0:
            self.revoke(entry.id)
        self._storage.changed()

    def revoke(self, token_id: str, *, orphan_children: bool = False) -> None:
        entry = self._tokens.pop(token_id, None)
        if entry is None:
            return
        self._by_accessor.pop(entry.accessor, None)
        parent = self._tokens.get(entry.parent)
        if parent is not None and token_id in parent.children:
            parent.children.remove(token_id)
        for child_id in entry.children:
            child = self._tokens.get(child_id)
            if child is None:
                continue
            if orphan_children:
                child.parent = ""
                child.orphan = True
            else:
                self.revoke(child_id)
        for hook in self.on_revoke:
            hook(token_id)
        self._storage.changed()

    def renew(self, entry: TokenEntry, *, increment: int) -> TokenEntry:
        if entry.expire_time is None:
            return entry  # root tokens have nothing to renew
        if not entry.renewable:
            raise VaultError(400, "lease is not renewable")
        now = self._clock.now()
        ttl = entry.period or increment or entry.creation_ttl
        expire_time = now + ttl
        limits = [entry.creation_time + SYSTEM_MAX_TTL]
        if entry.explicit_max_ttl:
            limits.append(entry.creation_time + entry.explicit_max_ttl)
        parent = self._tokens.get(entry.parent)
        if parent is not None and parent.expire_time is not None:
            limits.append(parent.expire_time)
        entry.expire_time = min(expire_time, *limits)
        self._storage.changed()
        return entry
