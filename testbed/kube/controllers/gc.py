"""The garbage collector: ownerReferences, with background, foreground and orphan propagation.

It indexes every object by uid and every dependent by its owners' uids (a global store
subscription), then:

* Background: when an owner is gone, dependents whose owners are all gone are deleted (those
  with a surviving owner just lose the dangling reference).
* Foreground: an owner carrying the ``foregroundDeletion`` finalizer has its dependents deleted
  (in foreground too); once none is left the finalizer is dropped and the owner goes.
* Orphan: an owner carrying the ``orphan`` finalizer has its reference removed from every
  dependent, then the finalizer is dropped.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Iterable
from typing import Any

from testbed.kube.controllers.base import Controller
from testbed.kube.errors import ApiError
from testbed.kube.kinds import ResourceType
from testbed.kube.meta import Obj
from testbed.kube.store import DELETED, Change

Key = tuple[str, str, str]  # storage, namespace, name


class GarbageCollector(Controller):
    name = "gc"
    manager_name = "generic-garbage-collector"

    def __init__(self, cluster: object) -> None:
        super().__init__(cluster)  # type: ignore[arg-type]
        self.alive: dict[str, Key] = {}
        self.dependents: dict[str, set[Key]] = {}

    def start(self) -> None:
        if self.running:
            return
        self._rebuild()
        super().start()
        self._unsubscribe.append(self.store.subscribe(None, self._on_any))

    def _rebuild(self) -> None:
        self.alive.clear()
        self.dependents.clear()
        storages = {rt.storage for rt in self.cluster.catalog}
        for storage in storages:
            for obj in self.store.items(storage):
                self._index(storage, obj, None)

    def _key(self, storage: str, obj: Obj) -> Key:
        md = obj["metadata"]
        return (storage, md.get("namespace", ""), md["name"])

    def _index(self, storage: str, obj: Obj, old: Obj | None) -> None:
        key = self._key(storage, obj)
        if old is not None:
            for ref in old["metadata"].get("ownerReferences") or []:
                self.dependents.get(ref.get("uid", ""), set()).discard(key)
        self.alive[obj["metadata"]["uid"]] = key
        for ref in obj["metadata"].get("ownerReferences") or []:
            self.dependents.setdefault(ref.get("uid", ""), set()).add(key)

    def _on_any(self, storage: str, change: Change) -> None:
        obj = change.obj
        uid = obj["metadata"].get("uid", "")
        if change.type == DELETED:
            key = self._key(storage, obj)
            self.alive.pop(uid, None)
            for ref in obj["metadata"].get("ownerReferences") or []:
                self.dependents.get(ref.get("uid", ""), set()).discard(key)
            if self.dependents.get(uid):
                self.enqueue(("gone", uid))
            return
        self._index(storage, obj, change.old)
        refs = obj["metadata"].get("ownerReferences") or []
        if any(ref.get("uid") not in self.alive for ref in refs):
            self.enqueue(("dependent", *self._key(storage, obj)))
        finalizers = obj["metadata"].get("finalizers") or []
        if obj["metadata"].get("deletionTimestamp") and (
            "foregroundDeletion" in finalizers or "orphan" in finalizers
        ):
            self.enqueue(("owner", *self._key(storage, obj)))

    def keys(self, storage: str, change: Change) -> Iterable[Hashable]:
        return ()

    def resync(self) -> Iterable[Hashable]:
        out: list[Hashable] = []
        for storage in {rt.storage for rt in self.cluster.catalog}:
            for obj in self.store.items(storage):
                md = obj["metadata"]
                if any(ref.get("uid") not in self.alive for ref in md.get("ownerReferences") or []):
                    out.append(("dependent", *self._key(storage, obj)))
                if md.get("deletionTimestamp") and {"foregroundDeletion", "orphan"} & set(
                    md.get("finalizers") or []
                ):
                    out.append(("owner", *self._key(storage, obj)))
        return out

    def _rt(self, storage: str) -> ResourceType | None:
        return self.cluster.catalog.preferred(storage)

    def _get(self, key: Key) -> Obj | None:
        return self.store.get(*key)

    def _patch(self, key: Key, body: Obj) -> None:
        rt = self._rt(key[0])
        if rt is None:
            return
        try:
            self.registry.patch(
                rt,
                key[1],
                key[2],
                json.dumps(body).encode(),
                content_type="application/merge-patch+json",
                opts=self.opts,
            )
        except ApiError as exc:
            if exc.code != 404:
                raise

    def _delete(self, key: Key, policy: str, uid: str) -> None:
        rt = self._rt(key[0])
        if rt is None:
            return
        try:
            self.registry.delete(
                rt,
                key[1],
                key[2],
                options={"propagationPolicy": policy, "preconditions": {"uid": uid}},
                opts=self.opts,
            )
        except ApiError as exc:
            if exc.code not in (404, 409):
                raise

    async def reconcile(self, key: Any) -> None:
        kind, *rest = key
        if kind == "gone":
            uid = rest[0]
            for dep in list(self.dependents.get(uid, set())):
                self._collect(dep)
            self.dependents.pop(uid, None)
        elif kind == "dependent":
            self._collect((rest[0], rest[1], rest[2]))
        elif kind == "owner":
            self._owner((rest[0], rest[1], rest[2]))

    def _collect(self, dep: Key) -> None:
        """Delete a dependent whose owners are all gone, or drop its dangling references."""
        obj = self._get(dep)
        if obj is None:
            return
        refs = obj["metadata"].get("ownerReferences") or []
        alive = [r for r in refs if r.get("uid") in self.alive]
        if len(alive) == len(refs):
            return
        if alive:
            self._patch(
                dep,
                {
                    "metadata": {
                        "ownerReferences": alive,
                        "resourceVersion": obj["metadata"]["resourceVersion"],
                    }
                },
            )
            return
        if not obj["metadata"].get("deletionTimestamp"):
            self._delete(dep, "Background", obj["metadata"]["uid"])

    def _owner(self, key: Key) -> None:
        obj = self._get(key)
        if obj is None or not obj["metadata"].get("deletionTimestamp"):
            return
        uid = obj["metadata"]["uid"]
        finalizers = list(obj["metadata"].get("finalizers") or [])
        deps = [d for d in self.dependents.get(uid, set()) if self._get(d) is not None]
        if "orphan" in finalizers:
            for dep in deps:
                dep_obj = self._get(dep)
                if dep_obj is None:
                    continue
                refs = [
                    r
                    for r in dep_obj["metadata"].get("ownerReferences") or []
                    if r.get("uid") != uid
                ]
                self._patch(
                    dep,
                    {
                        "metadata": {
                            "ownerReferences": refs or None,
                            "resourceVersion": dep_obj["metadata"]["resourceVersion"],
                        }
                    },
                )
            self._drop_finalizer(key, "orphan")
            return
        if "foregroundDeletion" in finalizers:
            waiting = False
            for dep in deps:
                dep_obj = self._get(dep)
                if dep_obj is None:
                    continue
                waiting = True
                if not dep_obj["metadata"].get("deletionTimestamp"):
                    self._delete(dep, "Foreground", dep_obj["metadata"]["uid"])
            if waiting:
                self.enqueue_after(("owner", *key), 0.02)
                return
            self._drop_finalizer(key, "foregroundDeletion")

    def _drop_finalizer(self, key: Key, finalizer: str) -> None:
        obj = self._get(key)
        if obj is None:
            return
        remaining = [f for f in obj["metadata"].get("finalizers") or [] if f != finalizer]
        self._patch(
            key,
            {
                "metadata": {
                    "finalizers": remaining or None,
                    "resourceVersion": obj["metadata"]["resourceVersion"],
                }
            },
        )
