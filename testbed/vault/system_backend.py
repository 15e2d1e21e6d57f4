"""The authenticated part of ``sys/``: mounts, auth methods, policies and sealing a node.

The unauthenticated status endpoints (init, seal-status, unseal, health, leader) answer even
while sealed and return bare objects; they live in :mod:`testbed.vault.sys_status`. Everything
here goes through the token and ACL checks and the response envelope like any engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from testbed.vault.errors import VaultError, unsupported_operation
from testbed.vault.logical import Backend, Request, Response, Services
from testbed.vault.params import get_duration, get_str

if TYPE_CHECKING:
    from testbed.vault.core import Core

#: Paths that need ``sudo`` on top of the operation's capability (root tokens always pass).
SUDO_PATHS = (
    "sys/seal",
    "sys/auth/",
    "sys/step-down",
    "auth/token/accessors",
    "sys/leases/lookup/",
    "sys/leases/revoke-prefix/",
    "sys/revoke-prefix/",
)


def needs_sudo(path: str) -> bool:
    return any(path == p or (p.endswith("/") and path.startswith(p)) for p in SUDO_PATHS)


class SystemBackend(Backend):
    mount_type = "system"

    def __init__(self, *, core: Core, services: Services) -> None:
        super().__init__(services=services, state=None)
        self.core = core

    def dump(self) -> dict[str, Any]:
        return {}

    async def handle(self, request: Request) -> Response | None:
        op = request.operation
        path = request.path
        writes = op in ("create", "update")
        if path == "seal" and writes:
            request.node.seal()
            return None
        if path == "mounts" and op == "read":
            return self._listing(self.core.mounts.secrets(), prefix="")
        if path.startswith("mounts/"):
            return self._secrets_mount(path[len("mounts/") :], request)
        if path == "auth" and op == "read":
            return self._listing(self.core.mounts.auths(), prefix="auth/")
        if path.startswith("auth/"):
            return self._auth_mount(path[len("auth/") :], request)
        if path in ("policies/acl", "policies/acl/") and op == "list":
            return Response(data={"keys": self.core.policies.names()})
        if path.startswith("policies/acl/"):
            return self._policy(path[len("policies/acl/") :], request, legacy=False)
        if path in ("policy", "policy/") and op == "read":
            names = self.core.policies.names()
            return Response(
                data={"keys": names, "policies": names},
                top_level={
                    "keys": names,
                    "policies": names,
                },
            )
        if path.startswith("policy/"):
            return self._policy(path[len("policy/") :], request, legacy=True)
        if path.startswith("internal/ui/mounts/") and op == "read":
            return self._ui_mount(path[len("internal/ui/mounts/") :])
        if path == "capabilities-self" and writes:
            return self._capabilities_self(request)
        if path.startswith(("leases/", "renew", "revoke")):
            return self._leases(path.removeprefix("leases/"), request)
        raise unsupported_operation()

    def _leases(self, path: str, request: Request) -> Response | None:
        """``sys/leases/*`` (and the pre-0.8 ``sys/renew``, ``sys/revoke*`` spellings)."""
        store = self.core.leases
        op = request.operation
        if op == "list" and path.startswith("lookup"):
            keys = store.list_ids(path.removeprefix("lookup").strip("/"))
            if not keys:
                raise VaultError(404)
            return Response(data={"keys": keys})
        if op not in ("create", "update"):
            raise unsupported_operation()
        action, _, in_url = path.partition("/")
        if action == "revoke-prefix":
            store.revoke_prefix(in_url)
            return None
        lease_id = get_str(request.data, "lease_id") or in_url
        if action not in ("renew", "revoke", "lookup"):
            raise unsupported_operation()
        if not lease_id:
            raise VaultError(400, "lease_id must be specified")
        if action == "lookup":
            lease = store.get(lease_id)
            if lease is None:
                raise VaultError(400, "invalid lease")
            return Response(data=lease.lookup_data(self.services.clock.now()))
        if action == "revoke":
            store.revoke(lease_id)
            return None
        lease, ttl, warnings = store.renew(
            lease_id, increment=get_duration(request.data, "increment")
        )
        return Response(
            lease_id=lease.id,
            renewable=lease.renewable,
            lease_duration=ttl,
            warnings=warnings or None,
        )

    @staticmethod
    def _listing(mounts: list[Any], *, prefix: str) -> Response:
        described = {m.path[len(prefix) :]: m.describe() for m in mounts}
        return Response(data=described, top_level=described)

    def _secrets_mount(self, path: str, request: Request) -> Response | None:
        table = self.core.mounts
        if path.rstrip("/").endswith("/tune") or path.rstrip("/") == "tune":
            return self._tune(path.rstrip("/")[: -len("tune")], request)
        op = request.operation
        if op == "read":
            mount = table.find(path.rstrip("/") + "/")
            if mount is None or mount.path.startswith("auth/"):
                raise VaultError(400, f"No secret engine mount at {path.rstrip('/')}/")
            return Response(data=mount.describe())
        if op in ("create", "update"):
            options = request.data.get("options")
            table.enable_secrets(
                path=path,
                engine_type=get_str(request.data, "type"),
                options=options if isinstance(options, dict) else None,
                description=get_str(request.data, "description"),
            )
            return None
        if op == "delete":
            table.disable(path)
            return None
        raise unsupported_operation()

    def _tune(self, path: str, request: Request) -> Response | None:
        mount = self.core.mounts.find(path.rstrip("/") + "/")
        if mount is None:
            raise VaultError(400, f"cannot fetch sysview for path {path!r}")
        if request.operation == "read":
            return Response(
                data={
                    "default_lease_ttl": 2764800,
                    "max_lease_ttl": 2764800,
                    "force_no_cache": False,
                    "description": mount.description,
                    "options": mount.options,
                }
            )
        if request.operation in ("create", "update"):
            if "description" in request.data:
                mount.description = get_str(request.data, "description")
                self.services.storage.changed()
            return None
        raise unsupported_operation()

    def _auth_mount(self, path: str, request: Request) -> Response | None:
        table = self.core.mounts
        op = request.operation
        if op == "read":
            mount = table.find("auth/" + path.rstrip("/") + "/")
            if mount is None:
                raise VaultError(400, f"No auth engine at {path.rstrip('/')}/")
            return Response(data=mount.describe())
        if op in ("create", "update"):
            table.enable_auth(
                path=path,
                engine_type=get_str(request.data, "type"),
                description=get_str(request.data, "description"),
            )
            return None
        if op == "delete":
            table.disable("auth/" + path)
            return None
        raise unsupported_operation()

    def _policy(self, name: str, request: Request, *, legacy: bool) -> Response | None:
        store = self.core.policies
        name = name.strip("/").lower()
        op = request.operation
        if op == "read":
            text = store.get(name)
            if text is None:
                raise VaultError(404)
            if legacy:
                body = {"name": name, "rules": text}
                return Response(data=body, top_level=body)
            return Response(data={"name": name, "policy": text})
        if op in ("create", "update"):
            text = get_str(request.data, "policy") or get_str(request.data, "rules")
            if not text:
                raise VaultError(400, "'policy' parameter not supplied or empty")
            store.put(name, text)
            return None
        if op == "delete":
            store.delete(name)
            return None
        raise unsupported_operation()

    def _ui_mount(self, path: str) -> Response:
        routed = self.core.mounts.route(path)
        if routed is None:
            raise VaultError(400, f"No mount found at path {path!r}")
        mount, _ = routed
        return Response(
            data={
                "path": mount.path,
                "type": mount.type,
                "description": mount.description,
                "options": mount.options,
                "accessor": mount.accessor,
                "uuid": mount.uuid,
                "local": mount.local,
                "seal_wrap": mount.seal_wrap,
                "external_entropy_access": False,
                "config": {"default_lease_ttl": 0, "force_no_cache": False, "max_lease_ttl": 0},
            }
        )

    def _capabilities_self(self, request: Request) -> Response:
        token = request.token
        paths = request.data.get("paths") or request.data.get("path") or []
        if isinstance(paths, str):
            paths = [paths]
        result: dict[str, Any] = {}
        for path in paths:
            if token is not None and token.is_root:
                capabilities = ["root"]
            elif token is not None:
                acl = self.core.policies.acl(token.policies)
                capabilities = sorted(acl.capabilities(str(path))) or ["deny"]
            else:
                capabilities = ["deny"]
            result[str(path)] = capabilities
        if len(paths) == 1:
            result["capabilities"] = result[str(paths[0])]
        return Response(data=result)
