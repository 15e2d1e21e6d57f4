"""The built-in ``auth/token/`` endpoints: create, look up, renew and revoke tokens.

Services authenticate with tokens minted here (or by a login), renew them before they expire and
revoke them on shutdown; the emulation answers with Vault's ``auth`` and lookup fields so the
clients' renewal logic sees exactly what it would in production (reference §1.10).
"""

from __future__ import annotations

from typing import Any

from testbed.vault.errors import VaultError, permission_denied, unsupported_operation
from testbed.vault.logical import Backend, Request, Response
from testbed.vault.params import get_bool, get_duration, get_int, get_list, get_str, get_str_map
from testbed.vault.tokens import TokenEntry, TokenRequest


def _bad_token() -> VaultError:
    return VaultError(403, "bad token")


class TokenBackend(Backend):
    mount_type = "token"

    def dump(self) -> dict[str, Any]:
        return {}  # tokens live in the token store, which persists itself

    async def handle(self, request: Request) -> Response | None:
        op = request.operation
        path = request.path
        token = request.token
        if token is None:
            raise permission_denied()
        writes = op in ("create", "update")
        if path in ("create", "create-orphan") and writes:
            return self._create(request, token, orphan=path == "create-orphan")
        if path == "lookup-self" and (op == "read" or writes):
            return self._lookup(token)
        if path == "lookup" and writes:
            return self._lookup(self._target(request.data, "token"))
        if path == "lookup-accessor" and writes:
            return self._lookup(self._by_accessor(request.data))
        if path == "renew-self" and writes:
            return self._renew(token, request.data)
        if path == "renew" and writes:
            return self._renew(self._target(request.data, "token"), request.data)
        if path == "renew-accessor" and writes:
            return self._renew(self._by_accessor(request.data), request.data)
        if path == "revoke-self" and writes:
            self.services.tokens.revoke(token.id)
            return None
        if path in ("revoke", "revoke-orphan") and writes:
            target = self.services.tokens.lookup(get_str(request.data, "token"))
            if target is not None:
                self.services.tokens.revoke(target.id, orphan_children=path == "revoke-orphan")
            return None
        if path == "revoke-accessor" and writes:
            self.services.tokens.revoke(self._by_accessor(request.data).id)
            return None
        if path == "accessors" and op == "list":
            return Response(data={"keys": self.services.tokens.accessors()})
        raise unsupported_operation()

    def _target(self, data: dict[str, Any], field: str) -> TokenEntry:
        value = get_str(data, field)
        if not value:
            raise VaultError(400, f"missing {field}")
        entry = self.services.tokens.lookup(value)
        if entry is None:
            raise _bad_token()
        return entry

    def _by_accessor(self, data: dict[str, Any]) -> TokenEntry:
        accessor = get_str(data, "accessor")
        if not accessor:
            raise VaultError(400, "missing accessor")
        entry = self.services.tokens.lookup_accessor(accessor)
        if entry is None:
            raise VaultError(400, "invalid accessor")
        return entry

    def _lookup(self, entry: TokenEntry) -> Response:
        return Response(data=entry.lookup_data(self.services.clock.now()))

    def _renew(self, entry: TokenEntry, data: dict[str, Any]) -> Response:
        increment = get_duration(data, "increment")
        renewed = self.services.tokens.renew(entry, increment=increment)
        auth = renewed.auth_block(self.services.clock.now())
        return Response(auth=auth)

    def _create(self, request: Request, parent: TokenEntry, *, orphan: bool) -> Response:
        data = request.data
        policies = get_list(data, "policies")
        if policies is None:
            policies = [p for p in parent.policies if p != "default"] or list(parent.policies)
        if not parent.is_root:
            allowed = set(parent.policies) | {"default"}
            if not set(policies) <= allowed:
                raise VaultError(400, "child policies must be subset of parent")
            if get_str(data, "id"):
                raise VaultError(400, "root or sudo privileges required to specify token id")
            if get_bool(data, "no_parent") and not orphan:
                raise VaultError(400, "root or sudo privileges required to create orphan token")
        num_uses = get_int(data, "num_uses")
        if num_uses < 0:
            raise VaultError(400, "number of uses cannot be negative")
        token_type = get_str(data, "type", "service")
        if token_type not in ("service", "default"):
            raise VaultError(400, f"unsupported token type {token_type!r} in the emulation")
        display = get_str(data, "display_name")
        entry = self.services.tokens.create(
            TokenRequest(
                policies=policies,
                path="auth/token/create-orphan" if orphan else "auth/token/create",
                display_name=f"token-{display}" if display else "token",
                ttl=get_duration(data, "ttl"),
                explicit_max_ttl=get_duration(data, "explicit_max_ttl"),
                period=get_duration(data, "period"),
                renewable=get_bool(data, "renewable", True),
                num_uses=num_uses,
                no_default_policy=get_bool(data, "no_default_policy"),
                meta=get_str_map(data, "meta"),
                orphan=orphan or get_bool(data, "no_parent"),
                parent=parent,
                token_id=get_str(data, "id") or None,
            )
        )
        return Response(auth=entry.auth_block(self.services.clock.now()))
