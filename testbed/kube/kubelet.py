"""An emulated kubelet: schedules pods onto the fake node(s), runs them, and breaks them on demand.

Pods get a loopback IP (127.0.0.x; pin one per pod name with ``assign_ip`` so a test can bind a
Vault emulation on the address pod ``vault-0`` will have), go Running with containers started
but not Ready, then Ready after ``pod_ready_delay``. Deleted pods on a node terminate after
``pod_termination_delay`` (the grace period is not waited out). The test-facing operations:

* ``restart(ns, pod)``: every container's restartCount+1, not Ready, Ready again after the delay;
* ``crash_loop(ns, pod)`` / ``recover(ns, pod)``: CrashLoopBackOff with growing restartCount;
* ``delete_pod(ns, pod, new_ip=...)``: delete it and let its controller recreate it;
* ``power_loss()``: every pod restarts at once.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Hashable, Iterable
from typing import Any

from testbed.kube.cluster import Cluster
from testbed.kube.controllers.base import Controller
from testbed.kube.meta import Obj, clone, rfc3339
from testbed.kube.store import DELETED, Change

PODS = "/pods"


def _image_id(image: str) -> str:
    digest = hashlib.sha256(image.encode()).hexdigest()
    name = image.split("@", 1)[0].rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
    if "/" not in name:
        name = f"docker.io/library/{name}"
    return f"{name}@sha256:{digest}"


def _condition(ctype: str, status: bool, now: str, reason: str = "") -> Obj:
    cond: Obj = {
        "type": ctype,
        "status": "True" if status else "False",
        "lastProbeTime": None,
        "lastTransitionTime": now,
    }
    if reason and not status:
        cond["reason"] = reason
    return cond


class Kubelet(Controller):
    name = "kubelet"
    storages = (PODS,)
    manager_name = "kubelet"

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(cluster)
        self.pinned: dict[tuple[str, str], str] = {}
        self.in_use: dict[str, tuple[str, str]] = {}
        self._cursor = cluster.settings.pod_ip_first
        self.crashing: set[tuple[str, str]] = set()
        self._node_index = 0
        self._deadlines: dict[Hashable, float] = {}

    # -- wiring --------------------------------------------------------------------------------
    def start(self) -> None:
        self.registry.graceful_pods = True
        super().start()

    async def stop(self) -> None:
        self.registry.graceful_pods = False
        await super().stop()

    def keys(self, storage: str, change: Change) -> Iterable[Hashable]:
        md = change.obj["metadata"]
        key = (md["namespace"], md["name"])
        if change.type == DELETED:
            ip = (change.obj.get("status") or {}).get("podIP")
            if ip and self.in_use.get(ip) == key:
                del self.in_use[ip]
            self.crashing.discard(key)
            return []
        return [key]

    def resync(self) -> Iterable[Hashable]:
        return [(p["metadata"]["namespace"], p["metadata"]["name"]) for p in self.store.items(PODS)]

    @property
    def pods_rt(self):  # type: ignore[no-untyped-def]
        return self.rt("", "v1", "pods")

    # -- IPs -----------------------------------------------------------------------------------
    def assign_ip(self, namespace: str, name: str, ip: str) -> None:
        """Pin the IP pod ``name`` gets the next time it starts (and every time after)."""
        self.pinned[(namespace, name)] = ip

    def _allocate(self, key: tuple[str, str]) -> str:
        pinned = self.pinned.get(key)
        if pinned:
            self.in_use[pinned] = key
            return pinned
        prefix = self.cluster.settings.pod_ip_prefix
        reserved = set(self.pinned.values())
        for _ in range(254):
            candidate = f"{prefix}{self._cursor}"
            self._cursor = (
                self._cursor + 1 if self._cursor < 254 else self.cluster.settings.pod_ip_first
            )
            if candidate not in self.in_use and candidate not in reserved:
                self.in_use[candidate] = key
                return candidate
        raise RuntimeError("pod IP pool exhausted")

    # -- reconcile -----------------------------------------------------------------------------
    def _due(self, mark: Hashable, delay: float) -> float:
        """Seconds until ``mark``'s deadline (set now + ``delay`` on first sight)."""
        loop = asyncio.get_running_loop()
        deadline = self._deadlines.setdefault(mark, loop.time() + delay)
        return max(0.0, deadline - loop.time())

    async def reconcile(self, key: Any) -> None:
        namespace, name = key
        pod = self.store.get(PODS, namespace, name)
        if pod is None:
            return
        md = pod["metadata"]
        if md.get("deletionTimestamp"):
            if (pod.get("spec") or {}).get("nodeName") and not md.get("finalizers"):
                mark = ("terminate", md["uid"])
                wait = self._due(mark, self.cluster.settings.pod_termination_delay)
                if wait > 0:
                    self.enqueue_after(key, wait)
                    return
                self._deadlines.pop(mark, None)
                self.registry.finish_deletion(self.pods_rt, pod)
            return
        spec = pod.get("spec") or {}
        if not spec.get("nodeName"):
            nodes = self.cluster.settings.nodes
            node = nodes[self._node_index % len(nodes)]
            self._node_index += 1
            body = clone(pod)
            body["spec"]["nodeName"] = node
            self.registry.update(self.pods_rt, namespace, name, body, opts=self.opts)
            return
        status = pod.get("status") or {}
        if not status.get("startTime"):
            self._start(pod)
            return
        if (namespace, name) in self.crashing or self._all_ready(pod):
            return
        restarts = sum(int(c.get("restartCount", 0)) for c in status.get("containerStatuses") or [])
        ready_mark = ("ready", md["uid"], restarts)
        wait = self._due(ready_mark, self.cluster.settings.pod_ready_delay)
        if wait > 0:
            self.enqueue_after(key, wait)
            return
        self._deadlines.pop(ready_mark, None)
        self._set_ready(pod)

    def _all_ready(self, pod: Obj) -> bool:
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        return bool(statuses) and all(s.get("ready") for s in statuses)

    def _container_status(
        self,
        container: Obj,
        *,
        ready: bool,
        restarts: int,
        now: str,
        last: Obj | None = None,
        waiting: Obj | None = None,
    ) -> Obj:
        image = container.get("image", "")
        out: Obj = {
            "name": container.get("name", ""),
            "image": image,
            "imageID": _image_id(image),
            "containerID": "containerd://"
            + hashlib.sha256(f"{container.get('name', '')}{now}{restarts}".encode()).hexdigest(),
            "ready": ready,
            "restartCount": restarts,
            "started": waiting is None,
            "state": {"waiting": waiting} if waiting else {"running": {"startedAt": now}},
            "lastState": last or {},
        }
        return out

    def _start(self, pod: Obj) -> None:
        now = rfc3339()
        md = pod["metadata"]
        ip = self._allocate((md["namespace"], md["name"]))
        spec = pod.get("spec") or {}
        body = clone(pod)
        body["status"] = {
            "phase": "Running",
            "conditions": [
                _condition("PodReadyToStartContainers", True, now),
                _condition("Initialized", True, now),
                _condition("Ready", False, now, "ContainersNotReady"),
                _condition("ContainersReady", False, now, "ContainersNotReady"),
                _condition("PodScheduled", True, now),
            ],
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": now,
            "qosClass": (pod.get("status") or {}).get("qosClass", "BestEffort"),
            "containerStatuses": [
                self._container_status(c, ready=False, restarts=0, now=now)
                for c in spec.get("containers") or []
            ],
        }
        if spec.get("initContainers"):
            body["status"]["initContainerStatuses"] = [
                {
                    "name": c.get("name", ""),
                    "image": c.get("image", ""),
                    "imageID": _image_id(c.get("image", "")),
                    "ready": True,
                    "restartCount": 0,
                    "started": False,
                    "state": {
                        "terminated": {
                            "exitCode": 0,
                            "reason": "Completed",
                            "startedAt": now,
                            "finishedAt": now,
                        }
                    },
                    "lastState": {},
                }
                for c in spec["initContainers"]
            ]
        for cond in body["status"]["conditions"]:
            if cond["status"] == "False":
                cond["message"] = (
                    "containers with unready status: ["
                    + " ".join(c.get("name", "") for c in spec.get("containers") or [])
                    + "]"
                )
        self.registry.update(
            self.pods_rt, md["namespace"], md["name"], body, opts=self.opts, subresource="status"
        )

    def _set_ready(self, pod: Obj, ready: bool = True) -> None:
        now = rfc3339()
        body = clone(pod)
        status = body.setdefault("status", {})
        for cs in status.get("containerStatuses") or []:
            cs["ready"] = ready
        conds = []
        for old_cond in status.get("conditions") or []:
            cond = old_cond
            if cond.get("type") in ("Ready", "ContainersReady"):
                cond = _condition(cond["type"], ready, now, "ContainersNotReady")
                if not ready:
                    cond["message"] = (
                        "containers with unready status: ["
                        + " ".join(c.get("name", "") for c in status.get("containerStatuses") or [])
                        + "]"
                    )
            conds.append(cond)
        status["conditions"] = conds
        md = pod["metadata"]
        self.registry.update(
            self.pods_rt, md["namespace"], md["name"], body, opts=self.opts, subresource="status"
        )

    def _restarted(
        self, pod: Obj, *, waiting: Obj | None = None, exit_code: int = 137, reason: str = "Error"
    ) -> Obj:
        now = rfc3339()
        body = clone(pod)
        status = body.setdefault("status", {})
        containers = {c.get("name"): c for c in (pod.get("spec") or {}).get("containers") or []}
        fresh = []
        for cs in status.get("containerStatuses") or []:
            started = ((cs.get("state") or {}).get("running") or {}).get("startedAt") or now
            last = {
                "terminated": {
                    "exitCode": exit_code,
                    "reason": reason,
                    "startedAt": started,
                    "finishedAt": now,
                    "containerID": cs.get("containerID", ""),
                }
            }
            fresh.append(
                self._container_status(
                    containers.get(cs.get("name"), cs),
                    ready=False,
                    restarts=int(cs.get("restartCount", 0)) + 1,
                    now=now,
                    last=last,
                    waiting=waiting,
                )
            )
        status["containerStatuses"] = fresh
        conds = []
        for old_cond in status.get("conditions") or []:
            cond = old_cond
            if cond.get("type") in ("Ready", "ContainersReady"):
                cond = _condition(cond["type"], False, now, "ContainersNotReady")
                cond["message"] = "containers with unready status: [" + " ".join(containers) + "]"
            conds.append(cond)
        status["conditions"] = conds
        return body

    # -- test operations -----------------------------------------------------------------------
    def _pod(self, namespace: str, name: str) -> Obj:
        pod = self.store.get(PODS, namespace, name)
        if pod is None:
            raise KeyError(f"pod {namespace}/{name} not found")
        return pod

    def restart(self, namespace: str, name: str) -> None:
        """Kill and restart every container: restartCount+1, not Ready, Ready after the delay."""
        pod = self._pod(namespace, name)
        self.crashing.discard((namespace, name))
        body = self._restarted(pod)
        self.registry.update(
            self.pods_rt, namespace, name, body, opts=self.opts, subresource="status"
        )

    def crash_loop(self, namespace: str, name: str) -> None:
        """Put the pod's containers into CrashLoopBackOff until ``recover``."""
        key = (namespace, name)
        self.crashing.add(key)
        self._crash(key)

    def _crash(self, key: tuple[str, str]) -> None:
        if key not in self.crashing:
            return
        pod = self.store.get(PODS, *key)
        if pod is None:
            self.crashing.discard(key)
            return
        waiting = {"reason": "CrashLoopBackOff", "message": "back-off restarting failed container"}
        body = self._restarted(pod, waiting=waiting, exit_code=1, reason="Error")
        self.registry.update(
            self.pods_rt, key[0], key[1], body, opts=self.opts, subresource="status"
        )
        loop = asyncio.get_running_loop()
        loop.call_later(self.cluster.settings.crash_loop_interval, self._crash, key)

    def recover(self, namespace: str, name: str) -> None:
        """End a crash loop: the containers run again and become Ready after the delay."""
        key = (namespace, name)
        self.crashing.discard(key)
        pod = self._pod(namespace, name)
        body = self._restarted(pod)
        for cs in body["status"]["containerStatuses"]:
            cs["restartCount"] -= 1  # the restart was already counted by the crash loop
        self.registry.update(
            self.pods_rt, namespace, name, body, opts=self.opts, subresource="status"
        )

    def delete_pod(self, namespace: str, name: str, *, new_ip: str | None = None) -> None:
        """Delete the pod (its controller recreates it); optionally pin the replacement's IP."""
        if new_ip is not None:
            self.pinned[(namespace, name)] = new_ip
        elif (namespace, name) in self.pinned:
            del self.pinned[(namespace, name)]
        self.registry.delete(self.pods_rt, namespace, name, options={}, opts=self.opts)

    def power_loss(self, namespace: str | None = None) -> int:
        """Every pod (in ``namespace``, or everywhere) restarts at once; returns how many."""
        count = 0
        for pod in list(self.store.items(PODS, namespace)):
            if pod["metadata"].get("deletionTimestamp") or not (pod.get("status") or {}).get(
                "startTime"
            ):
                continue
            md = pod["metadata"]
            self.crashing.discard((md["namespace"], md["name"]))
            self.registry.update(
                self.pods_rt,
                md["namespace"],
                md["name"],
                self._restarted(pod),
                opts=self.opts,
                subresource="status",
            )
            count += 1
        return count

    def pod_ip(self, namespace: str, name: str) -> str | None:
        pod = self.store.get(PODS, namespace, name)
        return ((pod or {}).get("status") or {}).get("podIP")
