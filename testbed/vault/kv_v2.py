"""The versioned KV engine (kv-v2): the engine syncd reads, so the one emulated most completely.

Every write creates a version; versions can be soft-deleted (and undeleted), destroyed, or
scheduled for deletion by ``delete_version_after``; ``max_versions`` prunes the oldest;
check-and-set guards writes. A read of a deleted or destroyed version is a 404 that still carries
the envelope with ``data: null`` and the version metadata, and a path outside data/, metadata/,
… gets a 404 with Vault's "Invalid path for a versioned K/V secrets engine" warning, because
clients tell those cases apart (reference §1.7).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from testbed.vault.clock import rfc3339
from testbed.vault.durations import go_duration
from testbed.vault.errors import VaultError, unsupported_operation
from testbed.vault.kv_paths import list_children
from testbed.vault.logical import Backend, Request, Response, Services
from testbed.vault.params import get_bool, get_duration, get_int

DEFAULT_MAX_VERSIONS = 10
INVALID_PATH_WARNING = (
    "Invalid path for a versioned K/V secrets engine. See the API docs for the appropriate API "
    "endpoints to use. If using the Vault CLI, use 'vault kv get' for this operation."
)


def _not_found() -> VaultError:
    """404 with an empty errors list: what Vault answers for a missing key or version."""
    return VaultError(404)


@dataclass
class Version:
    created_time: float
    data: dict[str, Any] | None
    deletion_time: float | None = None
    destroyed: bool = False

    def deleted(self, now: float) -> bool:
        return self.deletion_time is not None and self.deletion_time <= now

    def metadata(self) -> dict[str, Any]:
        return {
            "created_time": rfc3339(self.created_time),
            "deletion_time": rfc3339(self.deletion_time) if self.deletion_time is not None else "",
            "destroyed": self.destroyed,
        }


@dataclass
class Key:
    created_time: float
    updated_time: float
    current_version: int = 0
    oldest_version: int = 0
    max_versions: int = 0
    cas_required: bool = False
    delete_version_after: int = 0
    custom_metadata: dict[str, str] | None = None
    versions: dict[int, Version] = field(default_factory=dict)

    def to_state(self) -> dict[str, Any]:
        state = asdict(self)
        state["versions"] = {str(n): asdict(v) for n, v in self.versions.items()}
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Key:
        versions = {int(n): Version(**v) for n, v in state.get("versions", {}).items()}
        return cls(**{**state, "versions": versions})


@dataclass
class MountConfig:
    max_versions: int = 0
    cas_required: bool = False
    delete_version_after: int = 0


def _validate_custom_metadata(custom: dict[str, str]) -> None:
    prefix = "custom_metadata validation failed"
    problems: list[str] = []
    if len(custom) > 64:
        problems.append(f"{prefix}: payload must contain at most 64 keys, provided {len(custom)}")
    else:
        for key, value in custom.items():
            if not 0 < len(key) <= 128:
                problems.append(
                    f'{prefix}: length of key "{key}" is {len(key)} but must be 0 < len(key) <= 128'
                )
            if not 0 < len(value) <= 512:
                problems.append(
                    f'{prefix}: length of value for key "{key}" is {len(value)} '
                    "but must be 0 < len(value) <= 512"
                )
            if not (key.isprintable() and value.isprintable()):
                problems.append(f'{prefix}: key "{key}" contains unprintable characters')
    if problems:
        # Vault reports these through a multierror, formatted as below.
        count = "1 error occurred" if len(problems) == 1 else f"{len(problems)} errors occurred"
        listed = "".join(f"\n\t* {problem}" for problem in problems)
        raise VaultError(400, f"{count}:{listed}\n\n")


def _custom_metadata(raw: object) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise VaultError(400, "custom_metadata must be a map of strings")
    return {str(k): "" if v is None else str(v) for k, v in raw.items()}


def _merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386 JSON merge patch: ``null`` removes, objects merge recursively."""
    result = dict(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _merge_patch(result[key], value)
        else:
            result[key] = value
    return result


def _versions_param(data: dict[str, Any]) -> list[int]:
    raw = data.get("versions")
    if isinstance(raw, str):
        raw = [part for part in raw.split(",") if part.strip()]
    if not raw or not isinstance(raw, list):
        raise VaultError(400, "no version number provided")
    try:
        return [int(item) for item in raw]
    except (TypeError, ValueError):
        raise VaultError(400, "error parsing versions") from None


class KvV2Backend(Backend):
    mount_type = "kv"

    def __init__(self, *, services: Services, state: dict[str, Any] | None) -> None:
        super().__init__(services=services, state=state)
        state = state or {}
        self.config = MountConfig(**state.get("config", {}))
        self.keys: dict[str, Key] = {
            path: Key.from_state(key) for path, key in state.get("keys", {}).items()
        }

    def dump(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config),
            "keys": {path: key.to_state() for path, key in self.keys.items()},
        }

    def exists(self, path: str) -> bool | None:
        area, _, key = path.partition("/")
        if area in ("data", "metadata"):
            return key in self.keys
        return None

    async def handle(self, request: Request) -> Response | None:
        area, _, key = request.path.partition("/")
        op = request.operation
        if area == "config" and not key:
            if op == "read":
                return self._read_config()
            if op in ("create", "update"):
                self._write_config(request.data)
                return None
        elif area == "data":
            if op == "read":
                return self._read(key, request.data)
            if op in ("create", "update"):
                return self._write(key, request.data)
            if op == "patch":
                return self._patch(key, request)
            if op == "delete":
                self._delete_latest(key)
                return None
        elif area == "metadata":
            if op == "read":
                return self._read_metadata(key)
            if op == "list":
                return self._list(key)
            if op in ("create", "update"):
                self._write_metadata(key, request.data, patch=False)
                return None
            if op == "patch":
                self._write_metadata(key, request.data, patch=True)
                return None
            if op == "delete":
                self._delete_metadata(key)
                return None
        elif area in ("delete", "undelete", "destroy") and key:
            if op in ("create", "update"):
                self._version_operation(area, key, request.data)
                return None
        elif area == "subkeys" and key and op == "read":
            return self._subkeys(key, request.data)
        else:
            return Response(status=404, warnings=[INVALID_PATH_WARNING])
        raise unsupported_operation()

    # -- configuration ---------------------------------------------------------------------

    def _read_config(self) -> Response:
        return Response(
            data={
                "cas_required": self.config.cas_required,
                "delete_version_after": go_duration(self.config.delete_version_after),
                "max_versions": self.config.max_versions,
            }
        )

    def _write_config(self, data: dict[str, Any]) -> None:
        self.config.max_versions = get_int(data, "max_versions", self.config.max_versions)
        self.config.cas_required = get_bool(data, "cas_required", self.config.cas_required)
        self.config.delete_version_after = get_duration(
            data, "delete_version_after", self.config.delete_version_after
        )
        self.changed()

    # -- data ------------------------------------------------------------------------------

    def _now(self) -> float:
        return self.services.clock.now()

    def _version_payload(self, number: int, version: Version, key: Key) -> dict[str, Any]:
        return {**version.metadata(), "custom_metadata": key.custom_metadata, "version": number}

    def _read(self, path: str, data: dict[str, Any]) -> Response:
        key = self.keys.get(path)
        if key is None or key.current_version == 0:
            raise _not_found()
        number = get_int(data, "version", 0) or key.current_version
        version = key.versions.get(number)
        if version is None:
            raise _not_found()
        metadata = self._version_payload(number, version, key)
        if version.destroyed or version.deleted(self._now()):
            return Response(status=404, data={"data": None, "metadata": metadata})
        return Response(data={"data": version.data, "metadata": metadata})

    def _check_cas(self, key: Key | None, options: object) -> None:
        cas_required = self.config.cas_required or (key is not None and key.cas_required)
        cas: object = options.get("cas") if isinstance(options, dict) else None
        if cas is None:
            if cas_required:
                raise VaultError(400, "check-and-set parameter required for this call")
            return
        try:
            expected = int(str(cas)) if not isinstance(cas, bool) else None
        except ValueError:
            expected = None
        if expected is None:
            raise VaultError(400, "error parsing check-and-set parameter")
        current = key.current_version if key is not None else 0
        if expected != current:
            raise VaultError(400, "check-and-set parameter did not match the current version")

    def _write(self, path: str, data: dict[str, Any]) -> Response:
        if not path:
            raise VaultError(400, "missing path")
        payload = data.get("data")
        if payload is None:
            raise VaultError(400, "no data provided")
        if not isinstance(payload, dict):
            raise VaultError(400, "data must be a map")
        key = self.keys.get(path)
        self._check_cas(key, data.get("options"))
        return self._store(path, key, payload)

    def _store(self, path: str, key: Key | None, payload: dict[str, Any]) -> Response:
        now = self._now()
        if key is None:
            key = Key(created_time=now, updated_time=now)
            self.keys[path] = key
        number = key.current_version + 1
        version = Version(created_time=now, data=payload)
        after = self._delete_version_after(key)
        if after > 0:
            version.deletion_time = now + after
        key.versions[number] = version
        key.current_version = number
        key.updated_time = now
        if key.oldest_version == 0:
            key.oldest_version = number
        self._prune(key)
        self.changed()
        return Response(data=self._version_payload(number, version, key))

    def _delete_version_after(self, key: Key) -> int:
        candidates = [d for d in (key.delete_version_after, self.config.delete_version_after) if d]
        return min(candidates) if candidates else 0

    def _prune(self, key: Key) -> None:
        limit = key.max_versions or self.config.max_versions or DEFAULT_MAX_VERSIONS
        while key.current_version - key.oldest_version + 1 > limit:
            key.versions.pop(key.oldest_version, None)
            key.oldest_version += 1

    def _patch(self, path: str, request: Request) -> Response:
        if request.content_type.split(";")[0].strip() != "application/merge-patch+json":
            raise VaultError(415, "PATCH requires Content-Type application/merge-patch+json")
        payload = request.data.get("data")
        if payload is None:
            raise VaultError(400, "no data provided")
        if not isinstance(payload, dict):
            raise VaultError(400, "data must be a map")
        key = self.keys.get(path)
        if key is None or key.current_version == 0:
            raise _not_found()
        current = key.versions.get(key.current_version)
        if current is None or current.destroyed or current.deleted(self._now()):
            raise _not_found()
        self._check_cas(key, request.data.get("options"))
        return self._store(path, key, _merge_patch(current.data or {}, payload))

    def _delete_latest(self, path: str) -> None:
        key = self.keys.get(path)
        if key is None:
            return
        version = key.versions.get(key.current_version)
        if version is not None and not version.destroyed and not version.deleted(self._now()):
            version.deletion_time = self._now()
            self.changed()

    def _version_operation(self, operation: str, path: str, data: dict[str, Any]) -> None:
        numbers = _versions_param(data)
        key = self.keys.get(path)
        if key is None:
            return
        now = self._now()
        for number in numbers:
            version = key.versions.get(number)
            if version is None:
                continue
            if operation == "delete" and not version.destroyed and not version.deleted(now):
                version.deletion_time = now
            elif operation == "undelete" and not version.destroyed:
                version.deletion_time = None
            elif operation == "destroy":
                version.destroyed = True
                version.data = None
        key.updated_time = now
        self.changed()

    def _subkeys(self, path: str, data: dict[str, Any]) -> Response:
        response = self._read(path, data)
        if response.status != 200 or response.data is None:
            return Response(status=404, data=None)

        def strip(value: object) -> object:
            if isinstance(value, dict):
                return {k: strip(v) for k, v in value.items()}
            return None

        return Response(
            data={"subkeys": strip(response.data["data"]), "metadata": response.data["metadata"]}
        )

    # -- metadata --------------------------------------------------------------------------

    def _read_metadata(self, path: str) -> Response:
        key = self.keys.get(path)
        if key is None:
            raise _not_found()
        return Response(
            data={
                "cas_required": key.cas_required,
                "created_time": rfc3339(key.created_time),
                "current_version": key.current_version,
                "custom_metadata": key.custom_metadata,
                "delete_version_after": go_duration(key.delete_version_after),
                "max_versions": key.max_versions,
                "oldest_version": key.oldest_version,
                "updated_time": rfc3339(key.updated_time),
                "versions": {str(n): v.metadata() for n, v in sorted(key.versions.items())},
            }
        )

    def _list(self, prefix: str) -> Response:
        keys = list_children(self.keys, prefix)
        if not keys:
            raise _not_found()
        return Response(data={"keys": keys})

    def _write_metadata(self, path: str, data: dict[str, Any], *, patch: bool) -> None:
        if not path:
            raise VaultError(400, "missing path")
        key = self.keys.get(path)
        if key is None and patch:
            raise _not_found()
        raw_custom = data.get("custom_metadata")
        custom: dict[str, str] | None = None
        if raw_custom is not None:
            if patch and key is not None and isinstance(raw_custom, dict):
                raw_custom = _merge_patch(key.custom_metadata or {}, raw_custom)
            custom = _custom_metadata(raw_custom)
            _validate_custom_metadata(custom)
        now = self._now()
        if key is None:
            key = Key(created_time=now, updated_time=now)
            self.keys[path] = key
        key.max_versions = get_int(data, "max_versions", key.max_versions)
        key.cas_required = get_bool(data, "cas_required", key.cas_required)
        key.delete_version_after = get_duration(
            data, "delete_version_after", key.delete_version_after
        )
        if custom is not None:
            key.custom_metadata = custom
        key.updated_time = now
        self.changed()

    def _delete_metadata(self, path: str) -> None:
        if self.keys.pop(path, None) is not None:
            self.changed()
