"""The mount table: which engine serves which path prefix, for secrets and for auth methods.

``sys/mounts`` and ``sys/auth`` enable and disable engines at any path; the router sends each
request to the mount with the longest matching prefix. ``sys/`` and ``auth/token/`` are built in
and cannot be moved. Mount entries (and each engine's state) persist in storage.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from testbed.vault.approle import AppRoleBackend
from testbed.vault.auth_jwt import JWTAuthBackend
from testbed.vault.auth_kubernetes import KubernetesAuthBackend
from testbed.vault.database import DatabaseBackend
from testbed.vault.errors import VaultError
from testbed.vault.kv_v1 import KvV1Backend
from testbed.vault.kv_v2 import KvV2Backend
from testbed.vault.logical import Backend, Services
from testbed.vault.pki import PkiBackend
from testbed.vault.token_auth import TokenBackend

_RESERVED = ("sys/", "auth/", "cubbyhole/", "identity/")
_AUTH_TYPES: dict[str, type[Backend]] = {
    "kubernetes": KubernetesAuthBackend,
    "approle": AppRoleBackend,
    "jwt": JWTAuthBackend,
}
#: Secrets engines other than kv, by mount type.
_SECRET_TYPES: dict[str, type[Backend]] = {"database": DatabaseBackend, "pki": PkiBackend}
_RUNNING_VERSION = {"kv": "v0.20.0+builtin", "kubernetes": "v0.20.0+builtin", "approle": "",
                    "jwt": "v0.23.0+builtin"}


@dataclass
class Mount:
    path: str  # with trailing slash; auth mounts include the "auth/" prefix
    type: str
    backend: Backend
    description: str = ""
    options: dict[str, str] | None = None
    accessor: str = ""
    uuid: str = field(default_factory=lambda: str(uuid.uuid4()))
    local: bool = False
    seal_wrap: bool = False
    builtin: bool = False

    def describe(self) -> dict[str, Any]:
        """The entry as ``sys/mounts`` / ``sys/auth`` list it."""
        return {
            "accessor": self.accessor,
            "config": {"default_lease_ttl": 0, "force_no_cache": False, "max_lease_ttl": 0},
            "description": self.description,
            "external_entropy_access": False,
            "local": self.local,
            "options": self.options,
            "plugin_version": "",
            "running_plugin_version": _RUNNING_VERSION.get(self.type, "v1.17.0+builtin.vault"),
            "running_sha256": "",
            "seal_wrap": self.seal_wrap,
            "type": self.type,
            "uuid": self.uuid,
        }

    def to_state(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "type": self.type,
            "description": self.description,
            "options": self.options,
            "accessor": self.accessor,
            "uuid": self.uuid,
            "local": self.local,
            "seal_wrap": self.seal_wrap,
            "state": self.backend.dump(),
        }


def normalise(path: str) -> str:
    path = path.strip("/")
    return path + "/" if path else ""


def _kv_version(options: dict[str, Any] | None, engine_type: str) -> str:
    if engine_type == "kv-v2":
        return "2"
    version = str((options or {}).get("version", "") or "1")
    if version not in ("1", "2"):
        raise VaultError(400, f"invalid version {version!r} for kv engine")
    return version


class MountTable:
    def __init__(self, *, services: Services, system: Callable[[], Backend]) -> None:
        self._services = services
        self._mounts: dict[str, Mount] = {}
        self._add(
            Mount(
                path="sys/",
                type="system",
                backend=system(),
                builtin=True,
                description="system endpoints used for control, policy and debugging",
                accessor="system_" + secrets.token_hex(4),
            )
        )
        self._add(
            Mount(
                path="auth/token/",
                type="token",
                builtin=True,
                backend=TokenBackend(services=services, state=None),
                description="token based credentials",
                accessor="auth_token_" + secrets.token_hex(4),
            )
        )
        stored = services.storage.attach("mounts", self._dump) or []
        for entry in stored:
            self._restore(entry)

    def _dump(self) -> list[dict[str, Any]]:
        return [m.to_state() for m in self._mounts.values() if not m.builtin]

    def _restore(self, entry: dict[str, Any]) -> None:
        engine_type = entry["type"]
        if entry["path"].startswith("auth/"):
            backend_class = _AUTH_TYPES[engine_type]
        elif engine_type in _SECRET_TYPES:
            backend_class = _SECRET_TYPES[engine_type]
        else:
            version = _kv_version(entry.get("options"), engine_type)
            backend_class = KvV2Backend if version == "2" else KvV1Backend
        backend = backend_class(services=self._services, state=entry.get("state"))
        state = {k: v for k, v in entry.items() if k != "state"}
        self._add(Mount(backend=backend, **state))

    def _add(self, mount: Mount) -> None:
        self._mounts[mount.path] = mount
        # Longest prefix first, so the first startswith() hit in route() is the right one.
        self._ordered = sorted(self._mounts.values(), key=lambda m: len(m.path), reverse=True)

    def route(self, path: str) -> tuple[Mount, str] | None:
        """The mount serving ``path`` and the path relative to it."""
        for mount in self._ordered:
            if path.startswith(mount.path):
                return mount, path[len(mount.path) :]
            if path == mount.path[:-1]:
                return mount, ""
        return None

    def find(self, path: str) -> Mount | None:
        return self._mounts.get(path)

    def secrets(self) -> list[Mount]:
        return sorted(
            (m for m in self._mounts.values() if not m.path.startswith("auth/")),
            key=lambda m: m.path,
        )

    def auths(self) -> list[Mount]:
        return sorted(
            (m for m in self._mounts.values() if m.path.startswith("auth/")),
            key=lambda m: m.path,
        )

    def _check_free(self, path: str) -> None:
        for existing in self._mounts:
            if path.startswith(existing) or existing.startswith(path):
                raise VaultError(400, f"path is already in use at {existing}")

    def enable_secrets(
        self, *, path: str, engine_type: str, options: dict[str, Any] | None, description: str
    ) -> None:
        path = normalise(path)
        if not path:
            raise VaultError(400, "missing path")
        if path.startswith(_RESERVED):
            raise VaultError(400, f'cannot mount under "{path.split("/")[0]}/"')
        if engine_type in _SECRET_TYPES:
            self._check_free(path)
            self._add(
                Mount(
                    path=path,
                    type=engine_type,
                    backend=_SECRET_TYPES[engine_type](services=self._services, state=None),
                    description=description,
                    accessor=f"{engine_type}_" + secrets.token_hex(4),
                )
            )
            self._services.storage.changed()
            return
        if engine_type not in ("kv", "kv-v2"):
            raise VaultError(400, f"plugin not found in the catalog: {engine_type}")
        self._check_free(path)
        version = _kv_version(options, engine_type)
        backend_class = KvV2Backend if version == "2" else KvV1Backend
        self._add(
            Mount(
                path=path,
                type="kv",
                backend=backend_class(services=self._services, state=None),
                description=description,
                options={"version": version} if engine_type == "kv-v2" or options else None,
                accessor="kv_" + secrets.token_hex(4),
            )
        )
        self._services.storage.changed()

    def enable_auth(self, *, path: str, engine_type: str, description: str) -> None:
        path = normalise(path)
        if not path:
            raise VaultError(400, "missing path")
        if engine_type == "token":
            raise VaultError(400, "token credential backend cannot be instantiated")
        backend_class = _AUTH_TYPES.get(engine_type)
        if backend_class is None:
            raise VaultError(400, f"plugin not found in the catalog: {engine_type}")
        full = "auth/" + path
        self._check_free(full)
        self._add(
            Mount(
                path=full,
                type=engine_type,
                backend=backend_class(services=self._services, state=None),
                description=description,
                accessor=f"auth_{engine_type}_" + secrets.token_hex(4),
            )
        )
        self._services.storage.changed()

    def disable(self, path: str) -> None:
        """Unmount ``path`` (``auth/…`` for auth methods); a missing mount is a no-op."""
        path = normalise(path)
        mount = self._mounts.get(path)
        if mount is None:
            return
        if mount.builtin:
            raise VaultError(400, f"cannot unmount {path!r}")
        self._services.leases.revoke_prefix(path)  # as Vault does before unmounting
        del self._mounts[path]
        self._ordered = [m for m in self._ordered if m.path != path]
        self._services.storage.changed()
