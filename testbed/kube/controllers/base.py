"""A tiny controller runtime: store subscriptions feed a de-duplicating work queue per controller.

Controllers never block the commit that triggered them: the store subscription only enqueues a
key; a worker task reconciles keys one at a time (optionally after ``controller_delay``), through
the same registry as API requests, and requeues on conflicts or on request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from testbed.kube.cluster import Cluster
from testbed.kube.errors import ApiError
from testbed.kube.kinds import ResourceType
from testbed.kube.meta import Obj
from testbed.kube.registry import WriteOptions
from testbed.kube.store import Change

log = logging.getLogger("testbed.kube.controllers")


class Controller:
    """Subclasses set ``name``/``storages`` and implement ``keys`` and ``reconcile``."""

    name = ""
    storages: tuple[str, ...] = ()
    manager_name = "kube-controller-manager"

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.registry = cluster.registry
        self.store = cluster.store
        self.opts = WriteOptions(field_manager=self.manager_name)
        self._queue: asyncio.Queue[Hashable] = asyncio.Queue()
        self._pending: set[Hashable] = set()
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: list[Callable[[], None]] = []
        self._timers: set[asyncio.TimerHandle] = set()

    # -- to implement --------------------------------------------------------------------------
    def keys(self, storage: str, change: Change) -> Iterable[Hashable]:
        return ()

    def resync(self) -> Iterable[Hashable]:
        return ()

    async def reconcile(self, key: Any) -> None:
        raise NotImplementedError

    # -- runtime -------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._task is not None

    def start(self) -> None:
        if self._task is not None:
            return
        for storage in self.storages:
            self._unsubscribe.append(self.store.subscribe(storage, self._on_change))
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"controller-{self.name}"
        )
        for key in self.resync():
            self.enqueue(key)

    async def stop(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._pending.clear()
        self._queue = asyncio.Queue()

    def _on_change(self, storage: str, change: Change) -> None:
        for key in self.keys(storage, change):
            self.enqueue(key)

    def enqueue(self, key: Hashable) -> None:
        if key in self._pending:
            return
        self._pending.add(key)
        self._queue.put_nowait(key)

    def enqueue_after(self, key: Hashable, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        timer: asyncio.TimerHandle

        def fire() -> None:
            self._timers.discard(timer)
            if self._task is not None:
                self.enqueue(key)

        timer = loop.call_later(seconds, fire)
        self._timers.add(timer)

    async def _run(self) -> None:
        delay = self.cluster.settings.controller_delay
        while True:
            key = await self._queue.get()
            if delay:
                await asyncio.sleep(delay)
            self._pending.discard(key)
            try:
                await self.reconcile(key)
            except ApiError as exc:
                if exc.code in (404, 409):
                    self.enqueue_after(key, 0.01)
                else:
                    log.warning("%s: reconcile %r failed: %s", self.name, key, exc)
                    self.enqueue_after(key, 0.1)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: reconcile %r crashed", self.name, key)
                self.enqueue_after(key, 0.5)

    # -- helpers for subclasses ----------------------------------------------------------------
    def rt(self, group: str, version: str, plural: str) -> ResourceType:
        rt = self.cluster.catalog.lookup(group, version, plural)
        assert rt is not None, plural
        return rt

    def write_status(self, rt: ResourceType, obj: Obj, status: Obj) -> None:
        """Write ``status`` through the status subresource if it differs from the stored one."""
        if obj.get("status") == status:
            return
        body = dict(obj)
        body["status"] = status
        self.registry.update(
            rt,
            obj["metadata"].get("namespace", ""),
            obj["metadata"]["name"],
            body,
            opts=self.opts,
            subresource="status",
        )


def owner_keys(change: Change, kind: str) -> list[tuple[str, str]]:
    """(namespace, name) of the ``kind`` controller owners of an object (old or new state)."""
    out = []
    for obj in (change.obj, change.old):
        if obj is None:
            continue
        md = obj["metadata"]
        for ref in md.get("ownerReferences") or []:
            if ref.get("kind") == kind and ref.get("controller"):
                key = (md.get("namespace", ""), ref.get("name", ""))
                if key not in out:
                    out.append(key)
    return out


def owned_by(obj: Obj, uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])


def controller_ref(owner: Obj, kind: str, api_version: str) -> Obj:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
