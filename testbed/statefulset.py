"""Vault nodes as the pods of a StatefulSet: the two emulations joined as a cluster joins them.

``VaultPods`` makes the Kubernetes objects the Helm chart makes (namespace ``vault``, the
headless Service ``vault-internal``, StatefulSet ``vault`` with the chart's labels), pins pod
``vault-i`` to node i's loopback address, and from then on keeps each Vault node in step with
its pod, whoever changes the pod (a test, ``kubectl delete pod``, the admin endpoints):

- a container restart (``restartCount`` up, also what a power cut does to every pod) restarts
  the node: sealed, unseal pool gone, data kept;
- a pod recreated (new uid) restarts the node too, as a new Vault process would be;
- a pod given another IP moves the node to that address (with a certificate for it).

The admin endpoints (:func:`serve_admin`) let a person or an out-of-process test drive the
recovery story with curl: ``GET /pods``, ``POST /pods/<pod>/restart``,
``POST /pods/<pod>/reschedule`` (``{"ip": "127.0.0.9"}``), ``POST /power-cut``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from testbed.kube import Kube
from testbed.kube.store import Change
from testbed.vault import RunningVault
from testbed.vault.node import Node

LABELS = {"app.kubernetes.io/name": "vault", "component": "server"}


@dataclass
class _Seen:
    uid: str
    restarts: int


@dataclass
class VaultPods:
    """Vault's nodes as StatefulSet ``name``'s pods in ``namespace`` (see the module doc)."""

    kube: Kube
    vault: RunningVault
    namespace: str = "vault"
    name: str = "vault"
    service: str = "vault-internal"
    image: str = "hashicorp/vault:1.18.3"
    _seen: dict[str, _Seen] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _unsubscribe: Any = None

    @property
    def pods(self) -> list[str]:
        return [f"{self.name}-{i}" for i in range(len(self.vault.nodes))]

    def statefulset(self) -> dict[str, Any]:
        return {
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": self.name, "namespace": self.namespace, "labels": LABELS},
            "spec": {
                "replicas": len(self.vault.nodes), "serviceName": self.service,
                "selector": {"matchLabels": LABELS},
                "template": {"metadata": {"labels": LABELS}, "spec": {"containers": [{
                    "name": "vault", "image": self.image,
                    "ports": [{"containerPort": self.vault.nodes[0].port, "name": "https"}],
                }]}},
            },
        }

    async def start(self, *, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Create the objects, wait until every pod has its node's address, then follow them."""
        admin = self.kube.admin
        if admin.get("v1", "Namespace", self.namespace) is None:
            admin.create_namespace(self.namespace)
        for pod, node in zip(self.pods, self.vault.nodes, strict=True):
            self.kube.kubelet.assign_ip(self.namespace, pod, node.host)
        admin.apply({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": self.service, "namespace": self.namespace, "labels": LABELS},
            "spec": {"clusterIP": "None", "publishNotReadyAddresses": True, "selector": LABELS,
                     "ports": [{"name": "https", "port": self.vault.nodes[0].port}]},
        })
        admin.apply(self.statefulset())
        await self.kube.wait_for(
            lambda: all(self.kube.kubelet.pod_ip(self.namespace, p) for p in self.pods),
            timeout=timeout, message=f"pods of StatefulSet {self.name} with IPs",
        )
        for pod in self.pods:
            obj = admin.get("v1", "Pod", pod, self.namespace) or {}
            self._seen[pod] = _Seen(obj["metadata"]["uid"], _restarts(obj))
        self._unsubscribe = self.kube.cluster.store.subscribe("/pods", self._on_pod)

    async def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def node(self, pod: str) -> Node:
        return self.vault.nodes[self.pods.index(pod)]

    # -- what happens to pods happens to their Vault ------------------------------------------

    def _on_pod(self, storage: str, change: Change) -> None:
        metadata = change.obj.get("metadata") or {}
        pod = metadata.get("name")
        if metadata.get("namespace") != self.namespace or pod not in self.pods:
            return
        if change.type == "DELETED":
            return  # the replacement, a new uid, restarts the node
        seen = self._seen.get(pod)
        uid, restarts = metadata.get("uid") or "", _restarts(change.obj)
        node = self.node(pod)
        if seen is None or seen.uid != uid or restarts > seen.restarts:
            if seen is not None:
                node.reseal()  # sealed now; the listener cycles below or on the move
            self._seen[pod] = _Seen(uid, restarts)
            if seen is not None and not self._move(pod, change.obj):
                self._spawn(node.restart())
            return
        self._move(pod, change.obj)

    def _move(self, pod: str, obj: dict[str, Any]) -> bool:
        ip = (obj.get("status") or {}).get("podIP")
        node = self.node(pod)
        if not ip or ip == node.host:
            return False
        self._spawn(self._rebind(node, ip))
        return True

    async def _rebind(self, node: Node, ip: str) -> None:
        node.reseal()
        await node.stop()
        node.host = ip
        if self.vault.tls is not None:
            node.ssl_context = self.vault.tls.node(node.index, ip).server_context()
        await node.start()

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the admin operations ------------------------------------------------------------------

    def restart(self, pod: str) -> None:
        """The pod's container restarts: restartCount+1, and its Vault comes back sealed."""
        self.kube.kubelet.restart(self.namespace, pod)

    def reschedule(self, pod: str, ip: str) -> None:
        """The pod is deleted and recreated with another IP, where its Vault then answers."""
        self.kube.kubelet.delete_pod(self.namespace, pod, new_ip=ip)

    def power_cut(self) -> int:
        """Every pod of the namespace restarts at once; every Vault node comes back sealed."""
        return self.kube.kubelet.power_loss(self.namespace)

    def describe(self) -> list[dict[str, Any]]:
        return [
            {"pod": pod, "ip": self.kube.kubelet.pod_ip(self.namespace, pod),
             "address": self.node(pod).address, "sealed": bool(self.node(pod).sealed)}
            for pod in self.pods
        ]


def _restarts(pod: dict[str, Any]) -> int:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return sum(int(s.get("restartCount") or 0) for s in statuses)


def admin_app(pods: VaultPods) -> web.Application:
    """The HTTP admin endpoints (see the module docstring)."""

    def known(request: web.Request) -> str:
        pod = request.match_info["pod"]
        if pod not in pods.pods:
            raise web.HTTPNotFound(text=f"no pod {pod!r}; pods: {', '.join(pods.pods)}\n")
        return pod

    async def listing(request: web.Request) -> web.Response:
        return web.json_response({"pods": pods.describe()})

    async def restart(request: web.Request) -> web.Response:
        pods.restart(known(request))
        return web.json_response({"pods": pods.describe()})

    async def reschedule(request: web.Request) -> web.Response:
        pod = known(request)
        body = await request.json() if request.can_read_body else {}
        ip = body.get("ip") if isinstance(body, dict) else None
        if not isinstance(ip, str) or not ip.startswith("127."):
            raise web.HTTPBadRequest(text='expected {"ip": "127.x.y.z"} (a loopback address)\n')
        pods.reschedule(pod, ip)
        return web.json_response({"pods": pods.describe()})

    async def power_cut(request: web.Request) -> web.Response:
        return web.json_response({"restarted": pods.power_cut(), "pods": pods.describe()})

    app = web.Application()
    app.router.add_get("/pods", listing)
    app.router.add_post("/pods/{pod}/restart", restart)
    app.router.add_post("/pods/{pod}/reschedule", reschedule)
    app.router.add_post("/power-cut", power_cut)
    return app


@contextlib.asynccontextmanager
async def serve_admin(pods: VaultPods, *, host: str = "127.0.0.1", port: int = 0
                      ) -> AsyncIterator[str]:
    """Serve :func:`admin_app`; yields its base URL."""
    runner = web.AppRunner(admin_app(pods), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    try:
        yield f"http://{host}:{bound}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def vault_pods(kube: Kube, vault: RunningVault, **options: Any) -> AsyncIterator[VaultPods]:
    """``async with vault_pods(kube, vault) as pods:`` — started, and closed on exit."""
    pods = VaultPods(kube=kube, vault=vault, **options)
    await pods.start()
    try:
        yield pods
    finally:
        await pods.close()
