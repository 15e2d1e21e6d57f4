"""The AppRole auth method: machines log in with a role ID and a secret ID.

Kept to what services and the demo use: roles with ``token_*`` fields, reading or setting the
role ID, generating (or supplying) secret IDs with a use count and TTL, and login with Vault's
error messages. Secret IDs are stored by value, since nothing outside the emulation reads storage.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from testbed.vault.clock import rfc3339
from testbed.vault.errors import VaultError, unsupported_operation
from testbed.vault.logical import Backend, Request, Response, Services
from testbed.vault.params import get_bool, get_duration, get_int, get_str, get_str_map
from testbed.vault.token_fields import TokenFields

_INVALID_CREDENTIALS = "invalid role or secret ID"


@dataclass
class SecretId:
    accessor: str
    creation_time: float
    expiration_time: float | None
    num_uses: int
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class AppRole:
    role_id: str
    bind_secret_id: bool = True
    secret_id_num_uses: int = 0
    secret_id_ttl: int = 0
    token: TokenFields = field(default_factory=TokenFields)
    secret_ids: dict[str, SecretId] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {
            "bind_secret_id": self.bind_secret_id,
            "secret_id_num_uses": self.secret_id_num_uses,
            "secret_id_ttl": self.secret_id_ttl,
            "local_secret_ids": False,
            "secret_id_bound_cidrs": [],
        }
        described.update(self.token.describe())
        return described

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> AppRole:
        token = TokenFields(**state.pop("token", {}))
        ids = {sid: SecretId(**entry) for sid, entry in state.pop("secret_ids", {}).items()}
        return cls(**state, token=token, secret_ids=ids)


class AppRoleBackend(Backend):
    mount_type = "approle"
    unauthenticated = frozenset({"login"})

    def __init__(self, *, services: Services, state: dict[str, Any] | None) -> None:
        super().__init__(services=services, state=state)
        self.roles = {
            name: AppRole.from_state(dict(role))
            for name, role in (state or {}).get("roles", {}).items()
        }

    def dump(self) -> dict[str, Any]:
        return {"roles": {name: asdict(role) for name, role in self.roles.items()}}

    async def handle(self, request: Request) -> Response | None:
        op = request.operation
        writes = op in ("create", "update")
        parts = request.path.split("/")
        if parts == ["login"] and writes:
            return self._login(request)
        if parts[0] == "role" and (len(parts) == 1 or parts[1] == "") and op == "list":
            if not self.roles:
                raise VaultError(404)
            return Response(data={"keys": sorted(self.roles)})
        if parts[0] != "role" or len(parts) < 2 or not parts[1]:
            raise unsupported_operation()
        name, rest = parts[1], "/".join(parts[2:])
        if rest == "":
            return self._role(name, request)
        role = self.roles.get(name)
        if role is None:
            raise VaultError(400, f'role "{name}" does not exist')
        if rest == "role-id":
            if op == "read":
                return Response(data={"role_id": role.role_id})
            if writes:
                role.role_id = get_str(request.data, "role_id") or role.role_id
                self.changed()
                return None
        if rest in ("secret-id", "custom-secret-id") and writes:
            custom = get_str(request.data, "secret_id") if rest == "custom-secret-id" else ""
            return self._generate(role, request.data, custom)
        if rest == "secret-id" and op == "list":
            if not role.secret_ids:
                raise VaultError(404)
            return Response(data={"keys": sorted(s.accessor for s in role.secret_ids.values())})
        if rest == "secret-id/lookup" and writes:
            entry = role.secret_ids.get(get_str(request.data, "secret_id"))
            if entry is None:
                return None
            return Response(data=self._describe_secret_id(entry))
        if rest == "secret-id/destroy" and writes:
            if role.secret_ids.pop(get_str(request.data, "secret_id"), None) is not None:
                self.changed()
            return None
        raise unsupported_operation()

    def _role(self, name: str, request: Request) -> Response | None:
        op = request.operation
        role = self.roles.get(name)
        if op == "read":
            if role is None:
                raise VaultError(404)
            return Response(data=role.describe())
        if op == "delete":
            if self.roles.pop(name, None) is not None:
                self.changed()
            return None
        if op not in ("create", "update"):
            raise unsupported_operation()
        data = request.data
        if role is None:
            role = AppRole(role_id=get_str(data, "role_id") or str(uuid.uuid4()))
        role.bind_secret_id = get_bool(data, "bind_secret_id", role.bind_secret_id)
        if not role.bind_secret_id:
            raise VaultError(400, "at least one constraint should be enabled on the role")
        role.secret_id_num_uses = get_int(data, "secret_id_num_uses", role.secret_id_num_uses)
        role.secret_id_ttl = get_duration(data, "secret_id_ttl", role.secret_id_ttl)
        role.token.update(data)
        self.roles[name] = role
        self.changed()
        return None

    def _generate(self, role: AppRole, data: dict[str, Any], custom: str) -> Response:
        now = self.services.clock.now()
        secret_id = custom or str(uuid.uuid4())
        ttl = get_duration(data, "ttl", role.secret_id_ttl)
        entry = SecretId(
            accessor=str(uuid.uuid4()),
            creation_time=now,
            expiration_time=now + ttl if ttl else None,
            num_uses=get_int(data, "num_uses", role.secret_id_num_uses),
            metadata=get_str_map(data, "metadata") or {},
        )
        role.secret_ids[secret_id] = entry
        self.changed()
        return Response(
            data={
                "secret_id": secret_id,
                "secret_id_accessor": entry.accessor,
                "secret_id_ttl": ttl,
                "secret_id_num_uses": entry.num_uses,
            }
        )

    @staticmethod
    def _describe_secret_id(entry: SecretId) -> dict[str, Any]:
        return {
            "secret_id_accessor": entry.accessor,
            "creation_time": rfc3339(entry.creation_time),
            "expiration_time": (
                rfc3339(entry.expiration_time) if entry.expiration_time else "0001-01-01T00:00:00Z"
            ),
            "secret_id_num_uses": entry.num_uses,
            "metadata": entry.metadata,
        }

    def _login(self, request: Request) -> Response:
        role_id = get_str(request.data, "role_id")
        if not role_id:
            raise VaultError(400, "missing role_id")
        found = next(
            ((n, r) for n, r in self.roles.items() if secrets.compare_digest(r.role_id, role_id)),
            None,
        )
        if found is None:
            raise VaultError(400, _INVALID_CREDENTIALS)
        name, role = found
        secret_id = get_str(request.data, "secret_id")
        if role.bind_secret_id:
            if not secret_id:
                raise VaultError(400, "missing secret_id")
            entry = role.secret_ids.get(secret_id)
            now = self.services.clock.now()
            if entry is None or (entry.expiration_time and entry.expiration_time <= now):
                role.secret_ids.pop(secret_id, None)
                raise VaultError(400, _INVALID_CREDENTIALS)
            if entry.num_uses > 0:
                entry.num_uses -= 1
                if entry.num_uses == 0:
                    del role.secret_ids[secret_id]
            self.changed()
        token = self.services.tokens.create(
            role.token.token_request(
                path=f"{request.mount_path}login",
                display_name="approle",
                meta={"role_name": name},
                role=name,
            )
        )
        return Response(auth=token.auth_block(self.services.clock.now()))
