"""The ``database`` secrets engine, with no database behind it.

What a consumer of dynamic secrets sees is Vault's side only: ``creds/:role`` returns a fresh
username and password under a renewable lease (``database/creds/<role>/<id>``) whose TTL comes
from the role (``default_ttl``, capped by ``max_ttl``); renewing extends it, revoking or
expiring it drops the user. Static roles map one existing user whose password Vault rotates
every ``rotation_period`` (on the emulation's clock) or at ``rotate-role/:name``;
``static-creds/:name`` returns it with the time left until the next rotation.

In place of a database the engine keeps the set of users it created and their passwords, so
tests can ask whether a pair of credentials would log in right now
(:meth:`DatabaseBackend.credentials_valid`), and can make a role's renewals fail, as a
database refusing ``ALTER USER … VALID UNTIL`` does (:meth:`DatabaseBackend.refuse_renewals`).
SQL statements are accepted and stored, never run.
"""

from __future__ import annotations

import fnmatch
import secrets
import string
from typing import TYPE_CHECKING, Any

from testbed.vault.clock import rfc3339
from testbed.vault.errors import VaultError, unsupported_operation
from testbed.vault.logical import Backend, Request, Response, Services, entry_or_404
from testbed.vault.params import get_bool, get_duration, get_list, get_str

if TYPE_CHECKING:
    from testbed.vault.leases import Lease

_ALPHANUMERIC = string.ascii_letters + string.digits
#: What a database's refusal looks like once the expiration manager has wrapped it.
REFUSAL = "could not renew the user: the database refused (testbed)"


def _random(length: int) -> str:
    return "".join(secrets.choice(_ALPHANUMERIC) for _ in range(length))


def _password() -> str:
    # Vault's default password policy: 20 characters, at least one of each class and a dash.
    return "A1a-" + _random(16)


def _statements(data: dict[str, Any], field: str) -> list[str]:
    return get_list(data, field) or []


class DatabaseBackend(Backend):
    mount_type = "database"

    def __init__(self, *, services: Services, state: dict[str, Any] | None) -> None:
        super().__init__(services=services, state=state)
        state = state or {}
        self.configs: dict[str, dict[str, Any]] = dict(state.get("configs", {}))
        self.roles: dict[str, dict[str, Any]] = dict(state.get("roles", {}))
        self.static_roles: dict[str, dict[str, Any]] = dict(state.get("static_roles", {}))
        #: Users of dynamic roles that exist in the "database": username → password.
        self.users: dict[str, str] = dict(state.get("users", {}))
        self.refused: set[str] = set(state.get("refused", []))

    def dump(self) -> dict[str, Any]:
        return {
            "configs": self.configs,
            "roles": self.roles,
            "static_roles": self.static_roles,
            "users": self.users,
            "refused": sorted(self.refused),
        }

    def _tables(self) -> dict[str, dict[str, dict[str, Any]]]:
        return {"config": self.configs, "roles": self.roles, "static-roles": self.static_roles}

    def exists(self, path: str) -> bool | None:
        kind, _, name = path.partition("/")
        table = self._tables().get(kind)
        return name in table if table is not None else None

    # -- admin (tests) --------------------------------------------------------------------

    def refuse_renewals(self, role: str, *, refused: bool = True) -> None:
        """Make renewals of ``role``'s leases fail (or work again)."""
        if refused:
            self.refused.add(role)
        else:
            self.refused.discard(role)
        self.changed()

    def credentials_valid(self, username: str, password: str) -> bool:
        """Would ``username``/``password`` log in now? Revoked, expired or rotated ones do not."""
        self.services.leases.sweep()
        if username in self.users:
            return secrets.compare_digest(self.users[username], password)
        for name, role in self.static_roles.items():
            if role["username"] == username:
                self._rotate_if_due(name, role)
                return secrets.compare_digest(role["password"], password)
        return False

    # -- requests ---------------------------------------------------------------------------

    async def handle(self, request: Request) -> Response | None:
        kind, _, name = request.path.partition("/")
        op = request.operation
        if op == "list" and not name.strip("/"):
            table = self._tables().get(kind)
            if not table:
                raise VaultError(404)
            return Response(data={"keys": sorted(table)})
        if not name:
            raise unsupported_operation()
        if kind == "config":
            return self._config(name, request)
        if kind == "roles":
            return self._role(name, request)
        if kind == "static-roles":
            return self._static_role(name, request)
        if kind == "creds" and op == "read":
            return self._creds(name, request)
        if kind == "static-creds" and op == "read":
            return self._static_creds(name)
        if kind == "rotate-role" and op in ("create", "update"):
            role = self.static_roles.get(name)
            if role is None:
                raise VaultError(400, "no static role found for role name")
            self._rotate(role, at=self.services.clock.now())
            return None
        raise unsupported_operation()

    def _config(self, name: str, request: Request) -> Response | None:
        op = request.operation
        data = request.data
        if op == "read":
            config = entry_or_404(self.configs, name)
            return Response(data={k: v for k, v in config.items() if k != "password"})
        if op in ("create", "update"):
            plugin = get_str(data, "plugin_name", self.configs.get(name, {}).get("plugin_name", ""))
            if not plugin:
                raise VaultError(400, "plugin_name must be provided")
            self.configs[name] = {
                "plugin_name": plugin,
                "plugin_version": "",
                "allowed_roles": get_list(data, "allowed_roles") or [],
                "connection_details": {
                    "connection_url": get_str(data, "connection_url"),
                    "username": get_str(data, "username"),
                },
                "password_policy": get_str(data, "password_policy"),
                "root_credentials_rotate_statements": _statements(
                    data, "root_rotation_statements"
                ),
                "verify_connection": get_bool(data, "verify_connection", True),
                "password": get_str(data, "password"),
            }
            self.changed()
            return None
        if op == "delete":
            self.delete_entry(self.configs, name)
            return None
        raise unsupported_operation()

    def _role(self, name: str, request: Request) -> Response | None:
        op = request.operation
        data = request.data
        if op == "read":
            return Response(data=dict(entry_or_404(self.roles, name)))
        if op in ("create", "update"):
            old = self.roles.get(name, {})
            db_name = get_str(data, "db_name", old.get("db_name", ""))
            if not db_name:
                raise VaultError(400, "empty database name attribute")
            creation = _statements(data, "creation_statements") or old.get(
                "creation_statements", []
            )
            if not creation:
                raise VaultError(400, "empty creation statements")
            default_ttl = get_duration(data, "default_ttl", old.get("default_ttl", 0))
            max_ttl = get_duration(data, "max_ttl", old.get("max_ttl", 0))
            if max_ttl and default_ttl > max_ttl:
                raise VaultError(400, "ttl cannot be greater than max_ttl")
            self.roles[name] = {
                "db_name": db_name,
                "default_ttl": default_ttl,
                "max_ttl": max_ttl,
                "creation_statements": creation,
                "revocation_statements": _statements(data, "revocation_statements")
                or old.get("revocation_statements", []),
                "rollback_statements": _statements(data, "rollback_statements")
                or old.get("rollback_statements", []),
                "renew_statements": _statements(data, "renew_statements")
                or old.get("renew_statements", []),
                "credential_type": "password",
            }
            self.changed()
            return None
        if op == "delete":
            self.delete_entry(self.roles, name)
            return None
        raise unsupported_operation()

    def _static_role(self, name: str, request: Request) -> Response | None:
        op = request.operation
        data = request.data
        if op == "read":
            role = entry_or_404(self.static_roles, name)
            self._rotate_if_due(name, role)
            body = {k: v for k, v in role.items() if k != "password"}
            body["last_vault_rotation"] = rfc3339(role["last_vault_rotation"])
            return Response(data=body)
        if op in ("create", "update"):
            old = self.static_roles.get(name)
            db_name = get_str(data, "db_name", (old or {}).get("db_name", ""))
            if not db_name:
                raise VaultError(400, "empty database name attribute")
            username = get_str(data, "username", (old or {}).get("username", ""))
            if not username:
                raise VaultError(400, "username is a required field to create a static account")
            if old is not None and old["username"] != username:
                raise VaultError(400, "cannot update static account username")
            period = get_duration(data, "rotation_period", (old or {}).get("rotation_period", 0))
            if period < 5:
                raise VaultError(400, "rotation_period must be 5 seconds or more")
            role = {
                "db_name": db_name,
                "username": username,
                "rotation_period": period,
                "rotation_statements": _statements(data, "rotation_statements")
                or (old or {}).get("rotation_statements", []),
                "credential_type": "password",
            }
            if old is None:
                self._rotate(role, at=self.services.clock.now())  # Vault sets it at creation
            else:
                role["password"] = old["password"]
                role["last_vault_rotation"] = old["last_vault_rotation"]
            self.static_roles[name] = role
            self.changed()
            return None
        if op == "delete":
            self.delete_entry(self.static_roles, name)
            return None
        raise unsupported_operation()

    def _creds(self, name: str, request: Request) -> Response:
        role = self.roles.get(name)
        if role is None:
            raise VaultError(400, f"unknown role: {name}")
        self._check_allowed(name, role["db_name"])
        token = request.token
        display = token.display_name if token is not None else "token"
        # The PostgreSQL plugin's default username template.
        now = int(self.services.clock.now())
        username = f"v-{display[:8]}-{name[:8]}-{_random(20)}-{now}"[:63]
        password = _password()
        self.users[username] = password
        lease, warnings = self.services.leases.create(
            prefix=f"{request.mount_path}creds/{name}",
            token=token.id if token is not None else "",
            ttl=role["default_ttl"],
            max_ttl=role["max_ttl"],
            renewable=True,
            internal={"role": name, "username": username},
        )
        self.changed()
        return Response(
            data={"username": username, "password": password},
            lease_id=lease.id,
            renewable=True,
            lease_duration=lease.ttl(self.services.clock.now()),
            warnings=warnings or None,
        )

    def _check_allowed(self, name: str, db_name: str) -> None:
        """The connection must exist and list the role (plain errors: Vault answers 500)."""
        config = self.configs.get(db_name)
        if config is None:
            raise VaultError(500, f'failed to find entry for connection with name: "{db_name}"')
        allowed = config["allowed_roles"]
        if "*" not in allowed and not any(fnmatch.fnmatchcase(name, a) for a in allowed):
            raise VaultError(500, f'"{name}" is not an allowed role')

    def _static_creds(self, name: str) -> Response:
        role = self.static_roles.get(name)
        if role is None:
            raise VaultError(400, "unknown role: " + name)
        self._check_allowed(name, role["db_name"])
        self._rotate_if_due(name, role)
        now = self.services.clock.now()
        next_rotation = role["last_vault_rotation"] + role["rotation_period"]
        return Response(
            data={
                "username": role["username"],
                "password": role["password"],
                "last_vault_rotation": rfc3339(role["last_vault_rotation"]),
                "rotation_period": role["rotation_period"],
                "ttl": max(0, round(next_rotation - now)),
            }
        )

    def _rotate(self, role: dict[str, Any], *, at: float) -> None:
        role["password"] = _password()
        role["last_vault_rotation"] = at
        self.changed()

    def _rotate_if_due(self, name: str, role: dict[str, Any]) -> None:
        """Vault's rotation queue, evaluated lazily: rotate at the scheduled moment."""
        del name
        period = role["rotation_period"]
        elapsed = self.services.clock.now() - role["last_vault_rotation"]
        if elapsed >= period:
            self._rotate(role, at=role["last_vault_rotation"] + (elapsed // period) * period)

    # -- leases -----------------------------------------------------------------------------

    def renew_secret(self, lease: Lease, *, increment: int) -> tuple[int, int]:
        del increment
        name = lease.internal.get("role", "")
        role = self.roles.get(name)
        if role is None:
            raise VaultError(500, f'error during renew: could not find role with name "{name}"')
        if name in self.refused:
            raise VaultError(500, REFUSAL)
        return role["default_ttl"], role["max_ttl"]

    def revoke_secret(self, lease: Lease) -> None:
        if self.users.pop(lease.internal.get("username", ""), None) is not None:
            self.changed()
