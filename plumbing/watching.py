"""Informer-style caches: list once, then watch, and keep a local copy of every object.

Controllers read from these caches instead of asking the API server, so a reconcile that
changes nothing makes no Kubernetes request at all. The cache follows the API server by
watching from the resourceVersion of the list, then of the last event seen; a dropped
connection resumes from there, so nothing is missed and nothing is listed again.

The one exception is ``410 Gone`` (reason ``Expired``): the server no longer keeps history back
to our resourceVersion, so the events in between are lost to us. The only correct answer is a
fresh list, diffed against the cache, so that every change in the gap — deletions included — is
still delivered to the handler.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
import structlog

from plumbing.kube import JSON, Kube, KubeError, Resource

ChangeType = Literal["ADDED", "MODIFIED", "DELETED"]
Key = tuple[str, str]  # (namespace, name); namespace is "" for cluster-scoped objects


@dataclass(frozen=True)
class Change:
    """One change to the cache: the object as it is now (or was, for DELETED) and before."""

    type: ChangeType
    object: JSON
    old: JSON | None


Handler = Callable[[Change], None]


class Expired(Exception):
    """The watch's resourceVersion is older than the server's history (410)."""


def key_of(obj: JSON) -> Key:
    metadata = obj.get("metadata") or {}
    return (metadata.get("namespace") or "", metadata["name"])


def _rv(obj: JSON) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


class Informer:
    """A list+watch cache of one resource, optionally narrowed by namespace and selectors.

    ``on_change`` is called synchronously, in order, for every change; it should only record or
    enqueue work. :attr:`synced` is set once the first list has been loaded.
    """

    def __init__(
        self,
        *,
        kube: Kube,
        resource: Resource,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        on_change: Handler | None = None,
        watch_seconds: int = 300,
        backoff_cap: float = 30.0,
    ) -> None:
        self._kube = kube
        self.resource = resource
        self._namespace = namespace
        self._label_selector = label_selector
        self._field_selector = field_selector
        self._handlers: list[Handler] = [on_change] if on_change else []
        self._watch_seconds = watch_seconds
        self._backoff_cap = backoff_cap
        self._store: dict[Key, JSON] = {}
        self.resource_version = ""
        self.synced = asyncio.Event()
        self._log = structlog.get_logger("watching").bind(resource=resource.plural)

    def add_handler(self, handler: Handler) -> None:
        self._handlers.append(handler)

    def get(self, namespace: str, name: str) -> JSON | None:
        return self._store.get((namespace, name))

    def __iter__(self) -> Iterator[JSON]:
        return iter(list(self._store.values()))

    def __len__(self) -> int:
        return len(self._store)

    async def run(self) -> None:
        """List and watch until cancelled; errors are retried with capped, jittered backoff."""
        must_list = True
        failures = 0
        while True:
            try:
                if must_list:
                    await self._list()
                    must_list = False
                await self._watch()
                failures = 0
            except Expired:
                self._log.info("watch expired, listing again", since=self.resource_version)
                must_list = True
            except (KubeError, aiohttp.ClientError, TimeoutError, ValueError) as exc:
                failures += 1
                delay = random.uniform(0, min(self._backoff_cap, 0.5 * 2**failures))
                hint = (
                    "the API server does not serve this resource: is its CRD installed?"
                    if isinstance(exc, KubeError) and exc.not_found else None
                )
                self._log.warning(
                    "watch failed, retrying", error=str(exc), hint=hint, retry_in=round(delay, 2)
                )
                await asyncio.sleep(delay)

    def _query(self) -> list[tuple[str, str]]:
        query = []
        if self._label_selector:
            query.append(("labelSelector", self._label_selector))
        if self._field_selector:
            query.append(("fieldSelector", self._field_selector))
        return query

    async def _list(self) -> None:
        items: dict[Key, JSON] = {}
        token = ""
        path = self.resource.path(namespace=self._namespace)
        while True:
            query = [*self._query(), ("limit", "500")]
            if token:
                query.append(("continue", token))
            try:
                page = await self._kube.request("GET", path, query=query)
            except KubeError as exc:
                if exc.status == 410 and token:  # the continue token expired: start over
                    items, token = {}, ""
                    continue
                raise
            kind = page.get("kind", "").removesuffix("List")
            for item in page.get("items") or []:
                # Items of built-in lists come without kind/apiVersion; handlers want them.
                item.setdefault("kind", kind)
                item.setdefault("apiVersion", self.resource.api_version)
                items[key_of(item)] = item
            metadata = page.get("metadata") or {}
            token = metadata.get("continue") or ""
            if not token:
                self.resource_version = str(metadata.get("resourceVersion") or "")
                break
        self._replace(items)
        self.synced.set()

    def _replace(self, items: dict[Key, JSON]) -> None:
        old_store, self._store = self._store, items
        for key, obj in items.items():
            old = old_store.get(key)
            if old is None:
                self._emit(Change("ADDED", obj, None))
            elif _rv(old) != _rv(obj):
                self._emit(Change("MODIFIED", obj, old))
        for key, old in old_store.items():
            if key not in items:
                self._emit(Change("DELETED", old, old))

    async def _watch(self) -> None:
        query = [
            *self._query(),
            ("watch", "true"),
            ("allowWatchBookmarks", "true"),
            ("resourceVersion", self.resource_version),
            ("timeoutSeconds", str(self._watch_seconds)),
        ]
        path = self.resource.path(namespace=self._namespace)
        # The request timeout is a backstop for a connection that died silently.
        stream = self._kube.stream(path, query=query, request_timeout=self._watch_seconds + 30)
        async for event in stream:
            self._apply(event)

    def _apply(self, event: JSON) -> None:
        kind = event.get("type")
        obj: JSON = event.get("object") or {}
        if kind == "ERROR":
            # A watch error arrives as a Status on an HTTP 200 stream, not as an HTTP error.
            if obj.get("code") == 410:
                raise Expired(obj.get("message", ""))
            raise KubeError(
                status=int(obj.get("code") or 500), reason=str(obj.get("reason") or "Unknown"),
                message=str(obj.get("message") or ""), method="WATCH",
                path=self.resource.path(namespace=self._namespace),
            )
        self.resource_version = _rv(obj) or self.resource_version
        if kind == "BOOKMARK":
            return
        key = key_of(obj)
        old = self._store.get(key)
        if kind == "DELETED":
            self._store.pop(key, None)
            self._emit(Change("DELETED", obj, old))
        elif kind in ("ADDED", "MODIFIED"):
            self._store[key] = obj
            self._emit(Change("MODIFIED" if old is not None else "ADDED", obj, old))

    def _emit(self, change: Change) -> None:
        for handler in self._handlers:
            try:
                handler(change)
            except Exception:
                # A handler bug must not stop the cache from following the server.
                self._log.exception("change handler failed", object=key_of(change.object))


def condition(obj: JSON, kind: str) -> dict[str, Any] | None:
    """The status condition of type ``kind``, if the object has one."""
    for entry in (obj.get("status") or {}).get("conditions") or []:
        if entry.get("type") == kind:
            return dict(entry)
    return None
