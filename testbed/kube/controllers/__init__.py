"""The emulated controller manager: which controllers run, switchable per test at run time.

``kube.controllers.disable("gc")`` stops one (its work queue is dropped, as if the
controller-manager were down); ``enable`` restarts it and it resyncs from the store, catching up
on what happened meanwhile, like a restarted controller would.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from testbed.kube.cluster import CONTROLLERS, Cluster
from testbed.kube.controllers.base import Controller
from testbed.kube.controllers.gc import GarbageCollector
from testbed.kube.controllers.rbac import ClusterRoleAggregationController
from testbed.kube.controllers.system import (
    CRDController,
    NamespaceController,
    ServiceAccountController,
)
from testbed.kube.controllers.workloads import (
    DaemonSetController,
    DeploymentController,
    ReplicaSetController,
    StatefulSetController,
)

if TYPE_CHECKING:
    from testbed.kube.kubelet import Kubelet

__all__ = ["CONTROLLERS", "ControllerManager"]


class ControllerManager:
    def __init__(self, cluster: Cluster, kubelet: Kubelet) -> None:
        self.cluster = cluster
        self.controllers: dict[str, Controller] = {
            "namespace": NamespaceController(cluster),
            "serviceaccount": ServiceAccountController(cluster),
            "crd": CRDController(cluster),
            "clusterrole-aggregation": ClusterRoleAggregationController(cluster),
            "gc": GarbageCollector(cluster),
            "deployment": DeploymentController(cluster),
            "replicaset": ReplicaSetController(cluster),
            "statefulset": StatefulSetController(cluster),
            "daemonset": DaemonSetController(cluster),
            "kubelet": kubelet,
        }

    def start(self) -> None:
        for name in CONTROLLERS:
            if name in self.cluster.settings.controllers:
                self.controllers[name].start()

    async def stop(self) -> None:
        for controller in self.controllers.values():
            await controller.stop()

    def enable(self, *names: str) -> None:
        for name in names:
            self._get(name).start()

    async def disable(self, *names: str) -> None:
        for name in names:
            await self._get(name).stop()

    def running(self, name: str) -> bool:
        return self._get(name).running

    def _get(self, name: str) -> Controller:
        if name not in self.controllers:
            raise KeyError(f"unknown controller {name!r}; known: {', '.join(CONTROLLERS)}")
        return self.controllers[name]
