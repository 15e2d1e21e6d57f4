"""Workload controllers: Deployment -> ReplicaSets -> Pods, StatefulSet -> ordinal Pods, DaemonSet.

They do what ``kubectl rollout status`` and our restart logic observe: a pod-template change
makes a new ReplicaSet (Deployment) or replaces pods highest ordinal first, one at a time once
the others are Ready (StatefulSet, ``RollingUpdate`` with partition; ``OnDelete`` waits for a
delete), and status carries observedGeneration, replica counts, conditions and, for
StatefulSets, currentRevision/updateRevision. Simplifications (documented in the README): a
Deployment surges its whole new ReplicaSet at once and scales old ones to zero when it is
available; no ControllerRevision objects are written.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Hashable, Iterable
from typing import Any

from testbed.kube.controllers.base import Controller, controller_ref, owned_by, owner_keys
from testbed.kube.meta import Obj, clone, rfc3339
from testbed.kube.selectors import selector_from_dict
from testbed.kube.store import Change

_SAFE = "bcdfghjklmnpqrstvwxz2456789"
DEPLOYMENTS, REPLICASETS, STATEFULSETS, DAEMONSETS, PODS = (
    "apps/deployments",
    "apps/replicasets",
    "apps/statefulsets",
    "apps/daemonsets",
    "/pods",
)
REVISION = "deployment.kubernetes.io/revision"


def template_hash(template: Any, collisions: int = 0) -> str:
    """A stable short hash in the alphabet the real controllers use for their names."""
    raw = (
        json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
        + str(collisions).encode()
    )
    value = int.from_bytes(hashlib.sha256(raw).digest()[:8], "big")
    out = ""
    for _ in range(10):
        out += _SAFE[value % len(_SAFE)]
        value //= len(_SAFE)
    return out


def pod_ready(pod: Obj) -> bool:
    if pod["metadata"].get("deletionTimestamp"):
        return False
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def set_condition(
    conditions: list[Obj], ctype: str, status: str, reason: str, message: str
) -> list[Obj]:
    """Replace/add a condition, keeping its timestamps when nothing about it changed."""
    now = rfc3339()
    out = []
    found = False
    for cond in conditions:
        if cond.get("type") != ctype:
            out.append(cond)
            continue
        found = True
        if (
            cond.get("status") == status
            and cond.get("reason") == reason
            and cond.get("message") == message
        ):
            out.append(cond)
        else:
            transition = cond.get("lastTransitionTime") if cond.get("status") == status else now
            out.append(
                {
                    **cond,
                    "status": status,
                    "reason": reason,
                    "message": message,
                    "lastUpdateTime": now,
                    "lastTransitionTime": transition or now,
                }
            )
    if not found:
        out.append(
            {
                "type": ctype,
                "status": status,
                "lastUpdateTime": now,
                "lastTransitionTime": now,
                "reason": reason,
                "message": message,
            }
        )
    return out


def new_pod(
    template: Obj,
    owner_ref: Obj,
    namespace: str,
    *,
    name: str = "",
    generate_name: str = "",
    labels: dict[str, str] | None = None,
    spec_extra: Obj | None = None,
) -> Obj:
    tmeta = template.get("metadata") or {}
    md: Obj = {
        "namespace": namespace,
        "labels": {**(tmeta.get("labels") or {}), **(labels or {})},
        "ownerReferences": [owner_ref],
    }
    if tmeta.get("annotations"):
        md["annotations"] = dict(tmeta["annotations"])
    if name:
        md["name"] = name
    else:
        md["generateName"] = generate_name
    spec = clone(template.get("spec") or {})
    spec.update(spec_extra or {})
    return {"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": spec}


class _Workload(Controller):
    kind = ""
    storage = ""

    def pods_of(self, owner: Obj) -> list[Obj]:
        uid = owner["metadata"]["uid"]
        return [
            p for p in self.store.items(PODS, owner["metadata"]["namespace"]) if owned_by(p, uid)
        ]

    def resync(self) -> Iterable[Hashable]:
        return [
            (o["metadata"]["namespace"], o["metadata"]["name"])
            for o in self.store.items(self.storage)
        ]

    def keys(self, storage: str, change: Change) -> Iterable[Hashable]:
        if storage == self.storage:
            md = change.obj["metadata"]
            return [(md["namespace"], md["name"])]
        return owner_keys(change, self.kind)


class ReplicaSetController(_Workload):
    name = "replicaset"
    kind = "ReplicaSet"
    storage = REPLICASETS
    storages = (REPLICASETS, PODS)
    manager_name = "kube-controller-manager"

    async def reconcile(self, key: Any) -> None:
        namespace, name = key
        rs = self.store.get(REPLICASETS, namespace, name)
        if rs is None or rs["metadata"].get("deletionTimestamp"):
            return
        pods_rt = self.rt("", "v1", "pods")
        spec = rs.get("spec") or {}
        want = int(spec.get("replicas", 1))
        pods = self.pods_of(rs)
        active = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        if len(active) < want:
            ref = controller_ref(rs, "ReplicaSet", "apps/v1")
            for _ in range(want - len(active)):
                pod = new_pod(spec.get("template") or {}, ref, namespace, generate_name=f"{name}-")
                self.registry.create(pods_rt, namespace, pod, opts=self.opts)
        elif len(active) > want:
            # Delete not-ready pods first, then the newest.
            victims = sorted(
                active,
                key=lambda p: (pod_ready(p), p["metadata"]["creationTimestamp"]),
                reverse=False,
            )[: len(active) - want]
            for pod in victims:
                self.registry.delete(
                    pods_rt, namespace, pod["metadata"]["name"], options={}, opts=self.opts
                )
        rs = self.store.get(REPLICASETS, namespace, name)
        if rs is None:
            return
        pods = [p for p in self.pods_of(rs) if not p["metadata"].get("deletionTimestamp")]
        ready = sum(1 for p in pods if pod_ready(p))
        labels = selector_from_dict(spec.get("selector"))
        status: Obj = {
            "replicas": len(pods),
            "fullyLabeledReplicas": sum(
                1 for p in pods if labels.matches(p["metadata"].get("labels"))
            ),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "observedGeneration": rs["metadata"].get("generation", 1),
        }
        status = {k: v for k, v in status.items() if v or k in ("replicas", "observedGeneration")}
        self.write_status(self.rt("apps", "v1", "replicasets"), rs, status)


class DeploymentController(_Workload):
    name = "deployment"
    kind = "Deployment"
    storage = DEPLOYMENTS
    storages = (DEPLOYMENTS, REPLICASETS)

    async def reconcile(self, key: Any) -> None:
        namespace, name = key
        d = self.store.get(DEPLOYMENTS, namespace, name)
        if d is None or d["metadata"].get("deletionTimestamp"):
            return
        rs_rt = self.rt("apps", "v1", "replicasets")
        spec = d.get("spec") or {}
        replicas = int(spec.get("replicas", 1))
        template = spec.get("template") or {}
        uid = d["metadata"]["uid"]
        owned = [rs for rs in self.store.items(REPLICASETS, namespace) if owned_by(rs, uid)]
        digest = template_hash(template)
        new_rs = next(
            (
                rs
                for rs in owned
                if (rs["metadata"].get("labels") or {}).get("pod-template-hash") == digest
            ),
            None,
        )
        revisions = [
            int((rs["metadata"].get("annotations") or {}).get(REVISION, "0")) for rs in owned
        ]
        top = max(revisions, default=0)
        if new_rs is None and not spec.get("paused"):
            tmeta = template.get("metadata") or {}
            labels = {**(tmeta.get("labels") or {}), "pod-template-hash": digest}
            selector = clone(spec.get("selector") or {})
            selector.setdefault("matchLabels", {})["pod-template-hash"] = digest
            rs_template = clone(template)
            rs_template.setdefault("metadata", {})["labels"] = labels
            body = {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {
                    "name": f"{name}-{digest}",
                    "namespace": namespace,
                    "labels": labels,
                    "annotations": {
                        REVISION: str(top + 1),
                        "deployment.kubernetes.io/desired-replicas": str(replicas),
                        "deployment.kubernetes.io/max-replicas": str(replicas + 1),
                    },
                    "ownerReferences": [controller_ref(d, "Deployment", "apps/v1")],
                },
                "spec": {"replicas": replicas, "selector": selector, "template": rs_template},
            }
            new_rs = self.registry.create(rs_rt, namespace, body, opts=self.opts).body
            owned.append(new_rs)
            top += 1
        elif new_rs is not None:
            annotations = new_rs["metadata"].get("annotations") or {}
            revision = int(annotations.get(REVISION, "0"))
            changes: Obj = {}
            if (new_rs.get("spec") or {}).get("replicas") != replicas:
                changes["spec"] = {"replicas": replicas}
            if revision < top:
                changes["metadata"] = {"annotations": {REVISION: str(top + 1)}}
                top += 1
            if changes:
                self.registry.patch(
                    rs_rt,
                    namespace,
                    new_rs["metadata"]["name"],
                    json.dumps(changes).encode(),
                    content_type="application/merge-patch+json",
                    opts=self.opts,
                )
        new_name = new_rs["metadata"]["name"] if new_rs else ""
        new_state = self.store.get(REPLICASETS, namespace, new_name) if new_rs else None
        new_available = ((new_state or {}).get("status") or {}).get("availableReplicas", 0)
        olds = [rs for rs in owned if rs["metadata"]["name"] != new_name]
        if new_state is not None and new_available >= replicas:
            for rs in olds:
                if (rs.get("spec") or {}).get("replicas", 0) != 0:
                    self.registry.patch(
                        rs_rt,
                        namespace,
                        rs["metadata"]["name"],
                        b'{"spec":{"replicas":0}}',
                        content_type="application/merge-patch+json",
                        opts=self.opts,
                    )
        limit = int(spec.get("revisionHistoryLimit", 10))
        idle = sorted(
            (
                rs
                for rs in olds
                if (rs.get("spec") or {}).get("replicas", 0) == 0
                and not (rs.get("status") or {}).get("replicas")
            ),
            key=lambda rs: int((rs["metadata"].get("annotations") or {}).get(REVISION, "0")),
        )
        for rs in idle[: max(0, len(idle) - limit)]:
            self.registry.delete(
                rs_rt, namespace, rs["metadata"]["name"], options={}, opts=self.opts
            )
        self._status(namespace, name, new_name, top)

    def _status(self, namespace: str, name: str, new_name: str, revision: int) -> None:
        d = self.store.get(DEPLOYMENTS, namespace, name)
        if d is None:
            return
        spec = d.get("spec") or {}
        replicas = int(spec.get("replicas", 1))
        uid = d["metadata"]["uid"]
        owned = [rs for rs in self.store.items(REPLICASETS, namespace) if owned_by(rs, uid)]
        total = sum((rs.get("status") or {}).get("replicas", 0) for rs in owned)
        ready = sum((rs.get("status") or {}).get("readyReplicas", 0) for rs in owned)
        available = sum((rs.get("status") or {}).get("availableReplicas", 0) for rs in owned)
        new_state = next((rs for rs in owned if rs["metadata"]["name"] == new_name), None)
        updated = ((new_state or {}).get("status") or {}).get("replicas", 0)
        old_status = d.get("status") or {}
        conditions = list(old_status.get("conditions") or [])
        if available >= replicas:
            conditions = set_condition(
                conditions,
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
            )
        else:
            conditions = set_condition(
                conditions,
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
            )
        complete = updated >= replicas and total <= updated and available >= updated
        if complete:
            conditions = set_condition(
                conditions,
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                f'ReplicaSet "{new_name}" has successfully progressed.',
            )
        else:
            conditions = set_condition(
                conditions,
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                f'ReplicaSet "{new_name}" is progressing.',
            )
        conditions.sort(key=lambda c: c.get("type") != "Available")
        status: Obj = {
            "observedGeneration": d["metadata"].get("generation", 1),
            "replicas": total,
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": available,
            "unavailableReplicas": max(0, replicas - available),
            "conditions": conditions,
        }
        status = {k: v for k, v in status.items() if v or k == "observedGeneration"}
        annotations = d["metadata"].get("annotations") or {}
        if revision and annotations.get(REVISION) != str(revision):
            body = clone(d)
            body["metadata"].setdefault("annotations", {})[REVISION] = str(revision)
            body["status"] = status
            self.registry.update(
                self.rt("apps", "v1", "deployments"),
                namespace,
                name,
                body,
                opts=self.opts,
                subresource="status",
            )
            return
        self.write_status(self.rt("apps", "v1", "deployments"), d, status)


def _ordinal(name: str, base: str) -> int | None:
    prefix = f"{base}-"
    if not name.startswith(prefix) or not name[len(prefix) :].isdigit():
        return None
    return int(name[len(prefix) :])


class StatefulSetController(_Workload):
    name = "statefulset"
    kind = "StatefulSet"
    storage = STATEFULSETS
    storages = (STATEFULSETS, PODS)

    async def reconcile(self, key: Any) -> None:
        namespace, name = key
        sts = self.store.get(STATEFULSETS, namespace, name)
        if sts is None or sts["metadata"].get("deletionTimestamp"):
            return
        pods_rt = self.rt("", "v1", "pods")
        spec = sts.get("spec") or {}
        replicas = int(spec.get("replicas", 1))
        template = spec.get("template") or {}
        revision = f"{name}-{template_hash(template)}"
        parallel = spec.get("podManagementPolicy") == "Parallel"
        strategy = spec.get("updateStrategy") or {}
        partition = int(((strategy.get("rollingUpdate") or {}).get("partition")) or 0)
        start = int((spec.get("ordinals") or {}).get("start", 0))
        pods = {
            o: p
            for p in self.pods_of(sts)
            if (o := _ordinal(p["metadata"]["name"], name)) is not None
        }
        ref = controller_ref(sts, "StatefulSet", "apps/v1")
        blocked = False
        for ordinal in range(start, start + replicas):
            pod = pods.get(ordinal)
            if pod is None:
                if blocked:
                    break
                pod_name = f"{name}-{ordinal}"
                body = new_pod(
                    template,
                    ref,
                    namespace,
                    name=pod_name,
                    labels={
                        "controller-revision-hash": revision,
                        "statefulset.kubernetes.io/pod-name": pod_name,
                        "apps.kubernetes.io/pod-index": str(ordinal),
                    },
                    spec_extra={
                        "hostname": pod_name,
                        **({"subdomain": spec["serviceName"]} if spec.get("serviceName") else {}),
                    },
                )
                self.registry.create(pods_rt, namespace, body, opts=self.opts)
                if not parallel:
                    blocked = True
            elif not pod_ready(pod) and not parallel:
                blocked = True
        # Scale down: highest ordinal first, one at a time unless Parallel.
        extra = sorted((o for o in pods if o >= start + replicas), reverse=True)
        for ordinal in extra:
            pod = pods[ordinal]
            if not pod["metadata"].get("deletionTimestamp"):
                self.registry.delete(
                    pods_rt, namespace, pod["metadata"]["name"], options={}, opts=self.opts
                )
            if not parallel:
                break
        # Rolling update: replace the highest outdated ordinal once every pod is Ready.
        in_range = [pods.get(o) for o in range(start, start + replicas)]
        if (
            strategy.get("type", "RollingUpdate") == "RollingUpdate"
            and all(p is not None and pod_ready(p) for p in in_range)
            and not extra
        ):
            for ordinal in range(start + replicas - 1, start + partition - 1, -1):
                pod = pods[ordinal]
                if (pod["metadata"].get("labels") or {}).get(
                    "controller-revision-hash"
                ) != revision:
                    self.registry.delete(
                        pods_rt, namespace, pod["metadata"]["name"], options={}, opts=self.opts
                    )
                    break
        self._status(namespace, name, revision)

    def _status(self, namespace: str, name: str, revision: str) -> None:
        sts = self.store.get(STATEFULSETS, namespace, name)
        if sts is None:
            return
        spec = sts.get("spec") or {}
        replicas = int(spec.get("replicas", 1))
        pods = [p for p in self.pods_of(sts) if _ordinal(p["metadata"]["name"], name) is not None]
        live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        old = sts.get("status") or {}
        current_revision = old.get("currentRevision") or revision
        updated = sum(
            1
            for p in live
            if (p["metadata"].get("labels") or {}).get("controller-revision-hash") == revision
        )
        ready = sum(1 for p in live if pod_ready(p))
        if updated >= replicas and ready >= replicas and len(live) == replicas:
            current_revision = revision
        current = sum(
            1
            for p in live
            if (p["metadata"].get("labels") or {}).get("controller-revision-hash")
            == current_revision
        )
        status: Obj = {
            "observedGeneration": sts["metadata"].get("generation", 1),
            "replicas": len(live),
            "readyReplicas": ready,
            "currentReplicas": current,
            "updatedReplicas": updated,
            "currentRevision": current_revision,
            "updateRevision": revision,
            "collisionCount": 0,
            "availableReplicas": ready,
        }
        status = {
            k: v
            for k, v in status.items()
            if v or k in ("observedGeneration", "replicas", "collisionCount", "availableReplicas")
        }
        self.write_status(self.rt("apps", "v1", "statefulsets"), sts, status)


class DaemonSetController(_Workload):
    name = "daemonset"
    kind = "DaemonSet"
    storage = DAEMONSETS
    storages = (DAEMONSETS, PODS)

    async def reconcile(self, key: Any) -> None:
        namespace, name = key
        ds = self.store.get(DAEMONSETS, namespace, name)
        if ds is None or ds["metadata"].get("deletionTimestamp"):
            return
        pods_rt = self.rt("", "v1", "pods")
        spec = ds.get("spec") or {}
        template = spec.get("template") or {}
        digest = template_hash(template)
        nodes = list(self.cluster.settings.nodes)
        pods = [p for p in self.pods_of(ds) if not p["metadata"].get("deletionTimestamp")]
        by_node = {(p.get("spec") or {}).get("nodeName"): p for p in pods}
        ref = controller_ref(ds, "DaemonSet", "apps/v1")
        for node in nodes:
            if node not in by_node:
                body = new_pod(
                    template,
                    ref,
                    namespace,
                    generate_name=f"{name}-",
                    labels={
                        "controller-revision-hash": digest,
                        "pod-template-generation": str(ds["metadata"].get("generation", 1)),
                    },
                    spec_extra={"nodeName": node},
                )
                self.registry.create(pods_rt, namespace, body, opts=self.opts)
        if (spec.get("updateStrategy") or {}).get(
            "type", "RollingUpdate"
        ) == "RollingUpdate" and all(pod_ready(p) for p in pods):
            for pod in pods:
                if (pod["metadata"].get("labels") or {}).get("controller-revision-hash") != digest:
                    self.registry.delete(
                        pods_rt, namespace, pod["metadata"]["name"], options={}, opts=self.opts
                    )
                    break
        ds = self.store.get(DAEMONSETS, namespace, name)
        if ds is None:
            return
        pods = [p for p in self.pods_of(ds) if not p["metadata"].get("deletionTimestamp")]
        ready = sum(1 for p in pods if pod_ready(p))
        updated = sum(
            1
            for p in pods
            if (p["metadata"].get("labels") or {}).get("controller-revision-hash") == digest
        )
        status = {
            "currentNumberScheduled": len(pods),
            "desiredNumberScheduled": len(nodes),
            "numberMisscheduled": 0,
            "numberReady": ready,
            "numberAvailable": ready,
            "numberUnavailable": max(0, len(nodes) - ready),
            "updatedNumberScheduled": updated,
            "observedGeneration": ds["metadata"].get("generation", 1),
        }
        status = {
            k: v
            for k, v in status.items()
            if v
            or k
            in (
                "currentNumberScheduled",
                "desiredNumberScheduled",
                "numberMisscheduled",
                "numberReady",
                "observedGeneration",
            )
        }
        self.write_status(self.rt("apps", "v1", "daemonsets"), ds, status)
