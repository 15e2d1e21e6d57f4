"""The unversioned KV engine (kv v1): plain read/write/delete/list, no versions, no CAS.

A ``ttl`` (or ``lease``) key inside the stored data is advisory: it only sets the
``lease_duration`` of reads, which some consumers use as their refresh interval (reference §1.8).
"""

from __future__ import annotations

from typing import Any

from testbed.vault.durations import parse_duration
from testbed.vault.errors import VaultError, unsupported_operation
from testbed.vault.kv_paths import list_children
from testbed.vault.logical import Backend, Request, Response, Services
from testbed.vault.tokens import SYSTEM_MAX_TTL


class KvV1Backend(Backend):
    mount_type = "kv"

    def __init__(self, *, services: Services, state: dict[str, Any] | None) -> None:
        super().__init__(services=services, state=state)
        self.entries: dict[str, dict[str, Any]] = dict((state or {}).get("entries", {}))

    def dump(self) -> dict[str, Any]:
        return {"entries": self.entries}

    def exists(self, path: str) -> bool | None:
        return path in self.entries

    async def handle(self, request: Request) -> Response | None:
        path = request.path
        op = request.operation
        if op == "list":
            keys = list_children(self.entries, path)
            if not keys:
                raise VaultError(404)
            return Response(data={"keys": keys})
        if not path:
            raise unsupported_operation()
        if op == "read":
            entry = self.entries.get(path)
            if entry is None:
                raise VaultError(404)
            return Response(data=entry, lease_duration=self._lease(entry))
        if op in ("create", "update"):
            if not request.data:
                raise VaultError(400, "missing data fields")
            self._lease(request.data)  # reject an unparsable ttl at write time, as Vault does
            self.entries[path] = dict(request.data)
            self.changed()
            return None
        if op == "delete":
            if self.entries.pop(path, None) is not None:
                self.changed()
            return None
        raise unsupported_operation()

    @staticmethod
    def _lease(entry: dict[str, Any]) -> int:
        for field in ("ttl", "lease"):
            if field in entry:
                return parse_duration(entry[field], field=field)
        return SYSTEM_MAX_TTL
