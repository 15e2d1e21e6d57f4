"""The status of a VaultStaticSecret: conditions a person can act on, written only on change.

Conditions follow the metav1.Condition shape. ``lastTransitionTime`` moves only when a
condition's status flips, so a resource failing the same way for a week says since when. The
status is patched only when it differs from what the cache holds: a reconcile that changes
nothing must make no Kubernetes request, and that includes the status.

A merge patch replaces the whole ``conditions`` list, and several writers share it (the
reconcile, and each debounced restart reporting back), so writes to one object are serialized
and each is computed from the freshest status: the one this process last wrote, until the cache
has caught up with it. Otherwise two writes in flight at once, or one computed from a cache a
write behind, would silently undo each other.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any, Literal

from plumbing.kube import JSON, MERGE_PATCH, Kube, Resource
from syncd.specs import VAULT_STATIC_SECRET

ConditionStatus = Literal["True", "False", "Unknown"]
Key = tuple[str, str]

READY = "Ready"
SYNCED = "Synced"
ROLLOUT_RESTART = "RolloutRestart"


#: metav1.Condition's ``message`` bound (``MaxLength=32768``, in our CRDs' schemas too): a
#: longer message would make the API server refuse the whole status patch. Messages are cut to
#: it, never shorter: VSO cuts none, and the Warning Event carries the whole message anyway.
MAX_MESSAGE = 32768


def fit_message(message: str) -> str:
    """``message`` cut to :data:`MAX_MESSAGE` characters (what the schema counts), saying so."""
    if len(message) <= MAX_MESSAGE:
        return message
    tail = f"... ({len(message):,} characters; the Event has the whole message)"
    return message[:MAX_MESSAGE - len(tail)] + tail


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(
    conditions: list[JSON],
    *,
    type: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    generation: int,
) -> list[JSON]:
    """A copy of ``conditions`` with ``type`` set; the transition time kept unless it flips."""
    previous = next((c for c in conditions if c.get("type") == type), None)
    changed = previous is None or previous.get("status") != status
    entry = {
        "type": type,
        "status": status,
        "reason": reason,
        "message": fit_message(message),
        "observedGeneration": generation,
        "lastTransitionTime": now() if changed or previous is None
        else previous.get("lastTransitionTime") or now(),
    }
    return [*(c for c in conditions if c.get("type") != type), entry]


def _comparable(status: Mapping[str, Any]) -> JSON:
    """The status without fields that change on every write (compared to skip no-op patches)."""
    return {k: v for k, v in status.items() if k != "lastSyncTime"}


class StatusWriter:
    """Patch ``/status`` of VaultStaticSecrets (or ``resource``), skipping patches that change
    nothing."""

    def __init__(self, *, kube: Kube, resource: Resource = VAULT_STATIC_SECRET) -> None:
        self._kube = kube
        self._resource = resource
        self._locks: dict[Key, asyncio.Lock] = {}
        #: (namespace, name) -> (uid, resourceVersion, status) of this process's last write,
        #: until the cache has caught up with it.
        self._written: dict[Key, tuple[str, str, JSON]] = {}

    def current(self, obj: JSON) -> JSON:
        """The freshest status of ``obj`` known here (the cache may be a write behind)."""
        cached: JSON = obj.get("status") or {}
        key, uid = _key(obj)
        entry = self._written.get(key)
        if entry is None:
            return cached
        written_uid, written_rv, written = entry
        if written_uid != uid or _not_older(str(obj["metadata"].get("resourceVersion")),
                                            written_rv) or \
                _comparable(written) == _comparable(cached):
            del self._written[key]  # the cache has caught up (or the object is another one)
            return cached
        return written

    async def write(self, obj: JSON, status: JSON) -> bool:
        """Replace the status fields given in ``status``; returns whether a request was made."""
        return await self.update(obj, lambda _: status)

    async def update(self, obj: JSON, change: Callable[[JSON], JSON]) -> bool:
        """Replace the fields ``change(current status)`` returns, computed under the object's
        lock from the freshest status; returns whether a request was made."""
        metadata = obj["metadata"]
        key, uid = _key(obj)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            current = self.current(obj)
            fields = change(current)
            merged = {**current, **fields}
            if _comparable(merged) == _comparable(current):
                return False
            path = self._resource.path(
                namespace=metadata["namespace"], name=metadata["name"], subresource="status"
            )
            reply = await self._kube.request(
                "PATCH", path, body={"status": fields}, content_type=MERGE_PATCH,
                query=[("fieldManager", "vault-syncd")],
            )
            rv = str((reply.get("metadata") or {}).get("resourceVersion") or "")
            self._written[key] = (uid, rv, reply.get("status") or merged)
            return True

    def forget(self, key: Key) -> None:
        """The object ``(namespace, name)`` is gone."""
        self._written.pop(key, None)
        lock = self._locks.get(key)
        if lock is not None and not lock.locked():
            del self._locks[key]


def _not_older(cached: str, written: str) -> bool:
    """Whether resourceVersion ``cached`` is ``written`` or later. resourceVersions are opaque
    to clients, but every API server stores etcd revisions, which are increasing integers;
    anything else is treated as unknown (the status comparison then decides)."""
    if cached == written:
        return True
    if cached.isdigit() and written.isdigit():
        return int(cached) > int(written)
    return False


def _key(obj: Mapping[str, Any]) -> tuple[Key, str]:
    metadata = obj.get("metadata") or {}
    key = (str(metadata.get("namespace") or ""), str(metadata.get("name") or ""))
    return key, str(metadata.get("uid") or "")


def conditions_of(obj: Mapping[str, Any]) -> list[JSON]:
    return list((obj.get("status") or {}).get("conditions") or [])
