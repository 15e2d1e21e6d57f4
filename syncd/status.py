"""The status of a VaultStaticSecret: conditions a person can act on, written only on change.

Conditions follow the metav1.Condition shape. ``lastTransitionTime`` moves only when a
condition's status flips, so a resource failing the same way for a week says since when. The
status is patched only when it differs from what the cache holds: a reconcile that changes
nothing must make no Kubernetes request, and that includes the status.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Literal

from plumbing.kube import JSON, MERGE_PATCH, Kube
from syncd.specs import VAULT_STATIC_SECRET

ConditionStatus = Literal["True", "False", "Unknown"]

READY = "Ready"
SYNCED = "Synced"
ROLLOUT_RESTART = "RolloutRestart"


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
        "message": message[:1024],
        "observedGeneration": generation,
        "lastTransitionTime": now() if changed or previous is None
        else previous.get("lastTransitionTime") or now(),
    }
    return [*(c for c in conditions if c.get("type") != type), entry]


def _comparable(status: Mapping[str, Any]) -> JSON:
    """The status without fields that change on every write (compared to skip no-op patches)."""
    return {k: v for k, v in status.items() if k != "lastSyncTime"}


class StatusWriter:
    """Patch ``/status`` of VaultStaticSecrets, skipping patches that change nothing."""

    def __init__(self, *, kube: Kube) -> None:
        self._kube = kube

    async def write(self, obj: JSON, status: JSON) -> bool:
        """Replace the status fields given in ``status``; returns whether a request was made."""
        current = obj.get("status") or {}
        merged = {**current, **status}
        if _comparable(merged) == _comparable(current):
            return False
        metadata = obj["metadata"]
        path = VAULT_STATIC_SECRET.path(
            namespace=metadata["namespace"], name=metadata["name"], subresource="status"
        )
        await self._kube.request(
            "PATCH", path, body={"status": status}, content_type=MERGE_PATCH,
            query=[("fieldManager", "vault-syncd")],
        )
        return True


def conditions_of(obj: Mapping[str, Any]) -> list[JSON]:
    return list((obj.get("status") or {}).get("conditions") or [])
