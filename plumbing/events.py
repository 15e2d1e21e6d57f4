"""Kubernetes Events: the decisions a person reads with ``kubectl describe``.

Both services explain themselves with Events on the object concerned (a VaultStaticSecret, a
Vault pod). A failing object is retried with backoff, so the same Warning would be posted again
and again; identical Events (same object, reason and message) are posted once per
``repeat_after`` seconds and only logged in between, which keeps the API server and etcd calm.
Posting an Event is best effort: a failure is logged and never fails the caller's work.
"""

from __future__ import annotations

import datetime as dt
import secrets
import time
from typing import Literal

import aiohttp
import structlog

from plumbing.kube import EVENTS, JSON, Kube, KubeError

EventType = Literal["Normal", "Warning"]


class EventRecorder:
    """Post core/v1 Events about objects, as ``component`` from ``instance``."""

    def __init__(
        self, *, kube: Kube, component: str, instance: str, repeat_after: float = 600.0
    ) -> None:
        self._kube = kube
        self._component = component
        self._instance = instance
        self._repeat_after = repeat_after
        self._last_posted: dict[tuple[str, str, str], float] = {}
        self._log = structlog.get_logger("events")

    async def post(self, obj: JSON, *, type: EventType, reason: str, message: str) -> None:
        metadata = obj.get("metadata") or {}
        uid = str(metadata.get("uid") or "")
        fingerprint = (uid, reason, message)
        now = time.monotonic()
        last = self._last_posted.get(fingerprint)
        if last is not None and now - last < self._repeat_after:
            return
        self._last_posted[fingerprint] = now
        namespace = metadata.get("namespace") or "default"
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{metadata.get('name')}.{secrets.token_hex(8)}",
                "namespace": namespace,
            },
            "involvedObject": {
                "apiVersion": obj.get("apiVersion"),
                "kind": obj.get("kind"),
                "name": metadata.get("name"),
                "namespace": metadata.get("namespace"),
                "uid": uid,
                "resourceVersion": metadata.get("resourceVersion"),
            },
            "type": type,
            "reason": reason,
            "message": message,
            "source": {"component": self._component},
            "reportingComponent": self._component,
            "reportingInstance": self._instance,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            await self._kube.request("POST", EVENTS.path(namespace=namespace), body=event)
        except (KubeError, aiohttp.ClientError, TimeoutError) as exc:
            self._log.warning("event not posted", reason=reason, error=str(exc))
