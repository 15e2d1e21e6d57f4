"""Rollout restarts: new pods for the workloads that use a Secret whose data really changed.

A restart is a patch of a pod-template annotation, as ``kubectl rollout restart`` does, but the
annotation we own holds the **fingerprint** (keyed HMAC) of each Secret's data, beside a
sub-second timestamp. That gives three properties VSO and Reloader users ask for:

- the same data never restarts a workload twice: a workload whose template already carries the
  fingerprint is left alone (so a syncd restart, a replayed reconcile or a second replica
  changes nothing);
- a rollback of the workload brings back the fingerprints of the data it ran with;
- two restarts within one second are still two different templates (VSO #1228 lost the
  second one to an RFC3339 timestamp with second precision).

Changes are debounced per workload: every request within ``debounce`` seconds of the first is
folded into one patch, so two Secrets rotated together restart a Deployment once (VSO #644).
A paused Deployment is skipped and reported, not retried in a loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
import structlog
from opentelemetry import context as otel_context

from plumbing.kube import (
    ARGO_ROLLOUTS,
    DAEMONSETS,
    DEPLOYMENTS,
    JSON,
    MERGE_PATCH,
    STATEFULSETS,
    STRATEGIC_MERGE_PATCH,
    Kube,
    KubeError,
    Resource,
)
from plumbing.telemetry import tracer

FINGERPRINTS_ANNOTATION = "secrets.vault-syncd.dev/fingerprints"
RESTARTED_AT_ANNOTATION = "secrets.vault-syncd.dev/restartedAt"

KINDS: Mapping[str, Resource] = {
    "Deployment": DEPLOYMENTS,
    "StatefulSet": STATEFULSETS,
    "DaemonSet": DAEMONSETS,
    "argo.Rollout": ARGO_ROLLOUTS,
}
#: The kinds ``auto`` and selector targets look through (Argo only when named).
POD_TEMPLATE_KINDS = ("Deployment", "StatefulSet", "DaemonSet")

Outcome = Literal["Restarted", "Unchanged", "Paused", "NotFound", "Failed"]




@dataclass(frozen=True)
class Workload:
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass(frozen=True)
class Result:
    workload: Workload
    outcome: Outcome
    detail: str = ""


@dataclass
class _Pending:
    fingerprints: dict[str, str] = field(default_factory=dict)
    owners: dict[tuple[str, str], JSON] = field(default_factory=dict)
    contexts: list[otel_context.Context] = field(default_factory=list)


Report = Callable[[JSON, list[Result]], Awaitable[None]]


def uses_secret(template: Mapping[str, Any], secret: str) -> bool:
    """Whether a pod template refers to Secret ``secret`` in any way a pod can consume it."""
    spec = template.get("spec") or {}
    for volume in spec.get("volumes") or []:
        if (volume.get("secret") or {}).get("secretName") == secret:
            return True
        for source in (volume.get("projected") or {}).get("sources") or []:
            if (source.get("secret") or {}).get("name") == secret:
                return True
    containers = [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]
    for container in containers:
        for source in container.get("envFrom") or []:
            if (source.get("secretRef") or {}).get("name") == secret:
                return True
        for variable in container.get("env") or []:
            reference = (variable.get("valueFrom") or {}).get("secretKeyRef") or {}
            if reference.get("name") == secret:
                return True
    return False


class Rollouts:
    """Debounced, fingerprinted restarts; ``report`` hears the results for each owner."""

    def __init__(self, *, kube: Kube, report: Report, debounce: float = 2.0) -> None:
        self._kube = kube
        self._report = report
        self._debounce = debounce
        self._pending: dict[Workload, _Pending] = {}
        self._timers: dict[Workload, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._log = structlog.get_logger("rollout")

    async def find(
        self,
        *,
        namespace: str,
        secret: str,
        named: Iterable[tuple[str, str]] = (),
        selectors: Iterable[tuple[str, str]] = (),
        auto: bool = False,
    ) -> list[Workload]:
        """The workloads to restart: named ``(kind, name)``, ``(kind, labelSelector)`` matches,
        and with ``auto`` every pod-template workload that uses ``secret``."""
        found: dict[Workload, None] = {Workload(k, namespace, n): None for k, n in named}
        for kind, selector in selectors:
            for item in await self._list(kind, namespace, selector):
                found[Workload(kind, namespace, item["metadata"]["name"])] = None
        if auto:
            for kind in POD_TEMPLATE_KINDS:
                for item in await self._list(kind, namespace, None):
                    if uses_secret((item.get("spec") or {}).get("template") or {}, secret):
                        found[Workload(kind, namespace, item["metadata"]["name"])] = None
        return list(found)

    async def _list(self, kind: str, namespace: str, selector: str | None) -> list[JSON]:
        query = [("labelSelector", selector)] if selector else []
        page = await self._kube.request("GET", KINDS[kind].path(namespace=namespace), query=query)
        return list(page.get("items") or [])

    def request(
        self, *, workloads: Iterable[Workload], secret: str, fingerprint: str, owner: JSON
    ) -> None:
        """Restart ``workloads`` for ``secret``'s new data, after the debounce window."""
        loop = asyncio.get_running_loop()
        metadata = owner["metadata"]
        for workload in workloads:
            pending = self._pending.setdefault(workload, _Pending())
            pending.fingerprints[secret] = fingerprint
            pending.owners[(metadata["namespace"], metadata["name"])] = owner
            pending.contexts.append(otel_context.get_current())
            if workload not in self._timers:
                self._timers[workload] = loop.call_later(self._debounce, self._fire, workload)

    def _fire(self, workload: Workload) -> None:
        self._timers.pop(workload, None)
        pending = self._pending.pop(workload, None)
        if pending is not None:
            task = asyncio.create_task(self._restart(workload, pending))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _restart(self, workload: Workload, pending: _Pending) -> None:
        # The span belongs to the trace of the (first) reconcile that asked for the restart.
        parent = pending.contexts[0] if pending.contexts else None
        with tracer("syncd.rollout").start_as_current_span(
            "rollout.restart",
            context=parent,
            attributes={"k8s.workload.kind": workload.kind, "k8s.namespace.name":
                        workload.namespace, "k8s.workload.name": workload.name},
        ) as span:
            result = await self._patch(workload, pending.fingerprints)
            span.set_attribute("syncd.rollout.outcome", result.outcome)
            # Inside the span: the log line and the report carry the restart's ids.
            self._log.info(
                "rollout restart", workload=str(workload), outcome=result.outcome,
                detail=result.detail,
            )
            for owner in pending.owners.values():
                await self._report(owner, [result])

    async def _patch(self, workload: Workload, fingerprints: Mapping[str, str]) -> Result:
        resource = KINDS[workload.kind]
        path = resource.path(namespace=workload.namespace, name=workload.name)
        try:
            current = await self._kube.request("GET", path)
        except KubeError as exc:
            if exc.not_found:
                return Result(workload, "NotFound", f"{workload} not found")
            return Result(workload, "Failed", exc.message)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Result(workload, "Failed", type(exc).__name__)
        spec = current.get("spec") or {}
        argo = workload.kind == "argo.Rollout"
        holder = current.get("metadata") if argo else (spec.get("template") or {}).get("metadata")
        annotations = (holder or {}).get("annotations") or {}
        try:
            known = json.loads(annotations.get(FINGERPRINTS_ANNOTATION) or "{}")
        except ValueError:
            known = {}
        merged = {**known, **fingerprints}
        if merged == known:
            return Result(workload, "Unchanged", "already running this data")
        if spec.get("paused") and workload.kind == "Deployment":
            return Result(workload, "Paused", f"{workload} is paused; resume it to roll out")
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        stamp = {FINGERPRINTS_ANNOTATION: json.dumps(merged, sort_keys=True)}
        if argo:
            restart_at = now[:-8] + "Z"  # Argo's restartAt is a metav1.Time: seconds only
            patch: JSON = {"metadata": {"annotations": stamp}, "spec": {"restartAt": restart_at}}
            content_type = MERGE_PATCH
        else:
            stamp[RESTARTED_AT_ANNOTATION] = now
            patch = {"spec": {"template": {"metadata": {"annotations": stamp}}}}
            content_type = STRATEGIC_MERGE_PATCH
        try:
            await self._kube.request(
                "PATCH", path, body=patch, content_type=content_type,
                query=[("fieldManager", "vault-syncd")],
            )
        except KubeError as exc:
            return Result(workload, "NotFound" if exc.not_found else "Failed", exc.message)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Result(workload, "Failed", type(exc).__name__)
        return Result(workload, "Restarted", f"{workload} restarted")

    async def close(self) -> None:
        """Run every pending restart now (a stop must not lose one), then wait for them."""
        for workload, timer in list(self._timers.items()):
            timer.cancel()
            self._fire(workload)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
