"""Cluster housekeeping controllers: namespace teardown, default ServiceAccounts, CRD establishment.

* namespace: a deleted Namespace is Terminating until every namespaced object in it is gone
  (objects with finalizers or gracefully terminating pods keep it waiting, as in a real
  cluster), then its ``kubernetes`` finalizer is removed through ``/finalize`` and it disappears.
* serviceaccount: every active namespace gets a ``default`` ServiceAccount and the
  ``kube-root-ca.crt`` ConfigMap (recreated if deleted).
* crd: a CustomResourceDefinition gets ``NamesAccepted``/``Established`` conditions,
  ``acceptedNames`` and ``storedVersions``; a deleted one first has its custom resources removed
  (finalizer ``customresourcecleanup.apiextensions.k8s.io``).
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Iterable
from typing import Any

from testbed.kube.catalog import CRD_STORAGE
from testbed.kube.controllers.base import Controller
from testbed.kube.controllers.workloads import set_condition
from testbed.kube.defaults import ROOT_CA_CONFIGMAP
from testbed.kube.kinds import ResourceType
from testbed.kube.meta import Obj, clone
from testbed.kube.store import DELETED, Change

NAMESPACES = "/namespaces"
CRD_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
ROOT_CA_DESCRIPTION = (
    "Contains a CA bundle that can be used to verify the kube-apiserver when using internal "
    "endpoints such as the internal service IP or kubernetes.default.svc. No other usage is "
    "guaranteed across distributions of Kubernetes clusters."
)


class NamespaceController(Controller):
    name = "namespace"
    storages = (NAMESPACES,)
    manager_name = "namespace-controller"

    def keys(self, storage: str, change: Change) -> Iterable[Hashable]:
        if change.type != DELETED and change.obj["metadata"].get("deletionTimestamp"):
            return [change.obj["metadata"]["name"]]
        return []

    def resync(self) -> Iterable[Hashable]:
        return [
            n["metadata"]["name"]
            for n in self.store.items(NAMESPACES)
            if n["metadata"].get("deletionTimestamp")
        ]

    def _namespaced_storages(self) -> dict[str, ResourceType]:
        out = {}
        for rt in self.cluster.catalog:
            if rt.namespaced and rt.storage not in out and not rt.plural.endswith("reviews"):
                out[rt.storage] = rt
        return out

    async def reconcile(self, key: Any) -> None:
        name = str(key)
        ns = self.store.get(NAMESPACES, "", name)
        if ns is None or not ns["metadata"].get("deletionTimestamp"):
            return
        remaining = 0
        for storage, rt in self._namespaced_storages().items():
            for obj in list(self.store.items(storage, name)):
                remaining += 1
                if not obj["metadata"].get("deletionTimestamp"):
                    self.registry.delete(
                        rt,
                        name,
                        obj["metadata"]["name"],
                        options={"propagationPolicy": "Background"},
                        opts=self.opts,
                    )
        if any(self.store.count(s, name) for s in self._namespaced_storages()):
            self.enqueue_after(name, 0.02)
            return
        del remaining
        ns_rt = self.rt("", "v1", "namespaces")
        body = clone(ns)
        body["spec"] = {**(body.get("spec") or {}), "finalizers": []}
        self.registry.update(ns_rt, "", name, body, opts=self.opts, subresource="finalize")


class ServiceAccountController(Controller):
    name = "serviceaccount"
    storages = (NAMESPACES, "/serviceaccounts", "/configmaps")
    manager_name = "kube-controller-manager"

    def keys(self, storage: str, change: Change) -> Iterable[Hashable]:
        if storage == NAMESPACES:
            return [] if change.type == DELETED else [change.obj["metadata"]["name"]]
        md = change.obj["metadata"]
        if change.type == DELETED and md["name"] in ("default", ROOT_CA_CONFIGMAP):
            return [md["namespace"]]
        return []

    def resync(self) -> Iterable[Hashable]:
        return [n["metadata"]["name"] for n in self.store.items(NAMESPACES)]

    async def reconcile(self, key: Any) -> None:
        name = str(key)
        ns = self.store.get(NAMESPACES, "", name)
        if ns is None or ns["metadata"].get("deletionTimestamp"):
            return
        if self.store.get("/serviceaccounts", name, "default") is None:
            self.registry.create(
                self.rt("", "v1", "serviceaccounts"),
                name,
                {"metadata": {"name": "default"}},
                opts=self.opts,
            )
        if self.store.get("/configmaps", name, ROOT_CA_CONFIGMAP) is None:
            self.registry.create(
                self.rt("", "v1", "configmaps"),
                name,
                {
                    "metadata": {
                        "name": ROOT_CA_CONFIGMAP,
                        "annotations": {"kubernetes.io/description": ROOT_CA_DESCRIPTION},
                    },
                    "data": {"ca.crt": self.cluster.ca_pem},
                },
                opts=self.opts,
            )


class CRDController(Controller):
    name = "crd"
    storages = (CRD_STORAGE,)
    manager_name = "kube-apiserver"

    def keys(self, storage: str, change: Change) -> Iterable[Hashable]:
        return [] if change.type == DELETED else [change.obj["metadata"]["name"]]

    def resync(self) -> Iterable[Hashable]:
        return [c["metadata"]["name"] for c in self.store.items(CRD_STORAGE)]

    async def reconcile(self, key: Any) -> None:
        name = str(key)
        crd = self.store.get(CRD_STORAGE, "", name)
        if crd is None:
            return
        crd_rt = self.rt("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        spec = crd.get("spec") or {}
        if crd["metadata"].get("deletionTimestamp"):
            await self._cleanup(crd, crd_rt)
            return
        status = clone(crd.get("status") or {})
        conditions = list(status.get("conditions") or [])
        conditions = set_condition(
            conditions, "NamesAccepted", "True", "NoConflicts", "no conflicts found"
        )
        conditions = set_condition(
            conditions,
            "Established",
            "True",
            "InitialNamesAccepted",
            "the initial names have been accepted",
        )
        for cond in conditions:
            cond.pop("lastUpdateTime", None)
        status["conditions"] = conditions
        status["acceptedNames"] = {k: v for k, v in (spec.get("names") or {}).items()}
        stored = list(status.get("storedVersions") or [])
        for version in spec.get("versions") or []:
            if version.get("storage") and version["name"] not in stored:
                stored.append(version["name"])
        status["storedVersions"] = stored
        self.write_status(crd_rt, crd, status)

    async def _cleanup(self, crd: Obj, crd_rt: ResourceType) -> None:
        spec = crd.get("spec") or {}
        group = spec.get("group", "")
        plural = (spec.get("names") or {}).get("plural", "")
        types = self.cluster.catalog.by_storage(f"{group}/{plural}")
        if types:
            rt = types[0]
            for obj in list(self.store.items(rt.storage)):
                if not obj["metadata"].get("deletionTimestamp"):
                    self.registry.delete(
                        rt,
                        obj["metadata"].get("namespace", ""),
                        obj["metadata"]["name"],
                        options={},
                        opts=self.opts,
                    )
            if self.store.count(rt.storage):
                self.enqueue_after(crd["metadata"]["name"], 0.02)
                return
        finalizers = [f for f in crd["metadata"].get("finalizers") or [] if f != CRD_FINALIZER]
        patch = {
            "metadata": {
                "finalizers": finalizers or None,
                "resourceVersion": crd["metadata"]["resourceVersion"],
            }
        }
        self.registry.patch(
            crd_rt,
            "",
            crd["metadata"]["name"],
            json.dumps(patch).encode(),
            content_type="application/merge-patch+json",
            opts=self.opts,
        )
