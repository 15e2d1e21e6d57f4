"""Informer-style caches: list once, then watch, and keep a local copy of every object.

Controllers read from these caches instead of asking the API server, so a reconcile that
changes nothing makes no Kubernetes request at all. The cache follows the API server by
watching from the resourceVersion of the list, then of the last event seen; a dropped
connection resumes from there, so nothing is missed and nothing is listed again.

The one exception is ``410 Gone`` (reason ``Expired``): the server no longer keeps history back
to our resourceVersion, so the events in between are lost to us. The only correct answer is a
fresh list, diffed against the cache, so that every change in the gap — deletions included — is
still delivered to the handler.

Nothing the server (or a proxy in front of it) sends can end an informer: an event without
``metadata.name``, of an unknown type or of the wrong shape is skipped with a warning (naming
what was wrong, never the object: it may be a Secret), and a watch that ends soon after it was
opened, cleanly or not, is reopened after a growing delay instead of at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
import structlog

from plumbing.kube import JSON, Kube, KubeError, Resource
from plumbing.queueing import jittered_backoff

ChangeType = Literal["ADDED", "MODIFIED", "DELETED"]
Key = tuple[str, str]  # (namespace, name); namespace is "" for cluster-scoped objects
EVENT_TYPES = frozenset({"ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"})


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
    metadata = obj.get("metadata")
    return str(metadata.get("resourceVersion") or "") if isinstance(metadata, dict) else ""


def _int(value: object, default: int) -> int:
    return value if isinstance(value, int) else default


class _Scope:
    """What one list+watch follows: a namespace (None: all of them) and how far it got."""

    def __init__(self, namespace: str | None) -> None:
        self.namespace = namespace
        self.resource_version = ""

    def holds(self, key: Key) -> bool:
        return self.namespace is None or key[0] == self.namespace


class Informer:
    """A list+watch cache of one resource, narrowed by namespaces and selectors.

    ``namespaces`` (or one ``namespace``) limits the cache to those namespaces, with one list
    and one watch per namespace: what a controller holding only Roles there may do. None or
    empty: the whole cluster, with one list and one watch.

    ``on_change`` is called synchronously, in order, for every change; it should only record or
    enqueue work. :attr:`synced` is set once every namespace has been listed.

    ``transform``, if given, is applied to every object before it is cached or handed to a
    handler, as controller-runtime's cache transforms are: it drops what the controller never
    reads (``managedFields``...), which is most of a cache's memory. It must keep
    ``metadata.name``, ``namespace`` and ``resourceVersion``.
    """

    def __init__(
        self,
        *,
        kube: Kube,
        resource: Resource,
        namespace: str | None = None,
        namespaces: Sequence[str] = (),
        label_selector: str | None = None,
        field_selector: str | None = None,
        on_change: Handler | None = None,
        watch_seconds: int = 300,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        healthy_after: float = 10.0,
        transform: Callable[[JSON], JSON] | None = None,
    ) -> None:
        if namespace is not None and namespaces:
            raise ValueError("give namespace or namespaces, not both")
        self._kube = kube
        self.resource = resource
        wanted = list(dict.fromkeys(namespaces)) if namespaces else [namespace]
        self._scopes = [_Scope(n) for n in wanted]
        self._label_selector = label_selector
        self._field_selector = field_selector
        self._handlers: list[Handler] = [on_change] if on_change else []
        self._watch_seconds = watch_seconds
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._healthy_after = healthy_after
        self._transform = transform
        self._store: dict[Key, JSON] = {}
        self._listed: set[str | None] = set()
        self.synced = asyncio.Event()
        self._log = structlog.get_logger("watching").bind(resource=resource.plural)

    @property
    def namespaces(self) -> tuple[str, ...]:
        """The namespaces followed; empty for the whole cluster."""
        return tuple(s.namespace for s in self._scopes if s.namespace is not None)

    def add_handler(self, handler: Handler) -> None:
        self._handlers.append(handler)

    def get(self, namespace: str, name: str) -> JSON | None:
        return self._store.get((namespace, name))

    def __iter__(self) -> Iterator[JSON]:
        return iter(list(self._store.values()))

    def __len__(self) -> int:
        return len(self._store)

    async def run(self) -> None:
        """List and watch every namespace until cancelled; see :meth:`_follow`."""
        if len(self._scopes) == 1:
            await self._follow(self._scopes[0])
            return
        async with asyncio.TaskGroup() as group:
            for scope in self._scopes:
                group.create_task(self._follow(scope),
                                  name=f"{self.resource.plural}/{scope.namespace}")

    async def _follow(self, scope: _Scope) -> None:
        """List and watch one namespace until cancelled; nothing the server sends ends it.

        Errors are retried after a jittered, exponential, capped delay. So is a watch that the
        server closed cleanly, or answered 410, soon after it was opened: a proxy that ends
        every watch at once must not get a request per round trip. A watch that stayed open for
        ``healthy_after`` seconds resets the delay; the normal end of such a watch (its
        ``timeoutSeconds``) is followed by the next one at once.
        """
        loop = asyncio.get_running_loop()
        log = self._log.bind(namespace=scope.namespace) if scope.namespace else self._log
        must_list = True
        early_ends = failures = 0
        while True:
            opened = loop.time()
            problem: str | None = None
            hint: str | None = None
            try:
                if must_list:
                    await self._list(scope)
                    must_list = False
                    opened = loop.time()
                await self._watch(scope)
            except Expired:
                log.info("watch expired, listing again", since=scope.resource_version)
                must_list = True
            except (KubeError, aiohttp.ClientError, TimeoutError, ValueError) as exc:
                problem = str(exc)
                if isinstance(exc, KubeError) and exc.not_found:
                    hint = "the API server does not serve this resource: is its CRD installed?"
            except Exception as exc:  # a bug of ours on odd input: say so, keep following
                problem = f"unexpected {type(exc).__name__}"
                log.error("informer error", exc_info=exc)
            healthy = loop.time() - opened >= self._healthy_after
            if healthy:
                early_ends = failures = 0
            if problem is not None:
                failures += 1
                delay = self._backoff(failures)
                log.warning("watch failed, retrying", error=problem, hint=hint,
                            retry_in=round(delay, 2))
                await asyncio.sleep(delay)
            elif not healthy:
                # Closed cleanly, or expired, soon after opening. The first time is retried at
                # once (a 410 after a reconnection is normal); the next times back off.
                early_ends += 1
                if early_ends > 1:
                    delay = self._backoff(early_ends - 1)
                    log.warning("watch ended early, reopening after a delay",
                                retry_in=round(delay, 2))
                    await asyncio.sleep(delay)

    def _backoff(self, failures: int) -> float:
        return jittered_backoff(failures, base=self._backoff_base, cap=self._backoff_cap)

    def _query(self) -> list[tuple[str, str]]:
        query = []
        if self._label_selector:
            query.append(("labelSelector", self._label_selector))
        if self._field_selector:
            query.append(("fieldSelector", self._field_selector))
        return query

    async def _list(self, scope: _Scope) -> None:
        items: dict[Key, JSON] = {}
        token = ""
        path = self.resource.path(namespace=scope.namespace)
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
                key = self._key_or_warn("list item", item)
                if key is None:
                    continue
                # Items of built-in lists come without kind/apiVersion; handlers want them.
                item.setdefault("kind", kind)
                item.setdefault("apiVersion", self.resource.api_version)
                items[key] = self._transform(item) if self._transform else item
            metadata = page.get("metadata") or {}
            token = metadata.get("continue") or ""
            if not token:
                scope.resource_version = str(metadata.get("resourceVersion") or "")
                break
        self._replace(scope, items)
        self._listed.add(scope.namespace)
        if len(self._listed) == len(self._scopes):
            self.synced.set()

    def _replace(self, scope: _Scope, items: dict[Key, JSON]) -> None:
        """Make the scope's part of the cache ``items``, emitting what changed."""
        old_part = {key: obj for key, obj in self._store.items() if scope.holds(key)}
        for key in old_part:
            del self._store[key]
        self._store.update(items)
        for key, obj in items.items():
            old = old_part.get(key)
            if old is None:
                self._emit(Change("ADDED", obj, None))
            elif _rv(old) != _rv(obj):
                self._emit(Change("MODIFIED", obj, old))
        for key, old in old_part.items():
            if key not in items:
                self._emit(Change("DELETED", old, old))

    async def _watch(self, scope: _Scope) -> None:
        query = [
            *self._query(),
            ("watch", "true"),
            ("allowWatchBookmarks", "true"),
            ("resourceVersion", scope.resource_version),
            ("timeoutSeconds", str(self._watch_seconds)),
        ]
        path = self.resource.path(namespace=scope.namespace)
        # The request timeout is a backstop for a connection that died silently.
        stream = self._kube.stream(path, query=query, request_timeout=self._watch_seconds + 30)
        async for event in stream:
            self._apply(scope, event)

    def _apply(self, scope: _Scope, event: object) -> None:
        kind = event.get("type") if isinstance(event, dict) else None
        obj = event.get("object") if isinstance(event, dict) else None
        if kind not in EVENT_TYPES or not isinstance(obj, dict):
            # Never the event itself in the log: it may be a Secret.
            self._log.warning("malformed watch event skipped",
                              why="unknown event type" if isinstance(obj, dict)
                              else "no object in the event")
            return
        if kind == "ERROR":
            # A watch error arrives as a Status on an HTTP 200 stream, not as an HTTP error.
            if obj.get("code") == 410:
                raise Expired(str(obj.get("message", "")))
            raise KubeError(
                status=_int(obj.get("code"), 500), reason=str(obj.get("reason") or "Unknown"),
                message=str(obj.get("message") or ""), method="WATCH",
                path=self.resource.path(namespace=scope.namespace),
            )
        if kind == "BOOKMARK":
            scope.resource_version = _rv(obj) or scope.resource_version
            return
        key = self._key_or_warn(f"{kind} event", obj)
        if key is None:
            return
        scope.resource_version = _rv(obj) or scope.resource_version
        if self._transform is not None:
            obj = self._transform(obj)
        old = self._store.get(key)
        if kind == "DELETED":
            self._store.pop(key, None)
            self._emit(Change("DELETED", obj, old))
        else:
            self._store[key] = obj
            self._emit(Change("MODIFIED" if old is not None else "ADDED", obj, old))

    def _key_or_warn(self, what: str, obj: object) -> Key | None:
        """The object's (namespace, name); None, with a warning, if it has no usable one."""
        metadata = obj.get("metadata") if isinstance(obj, dict) else None
        name = metadata.get("name") if isinstance(metadata, dict) else None
        namespace = (metadata.get("namespace") or "") if isinstance(metadata, dict) else ""
        if isinstance(name, str) and name and isinstance(namespace, str):
            return (namespace, name)
        self._log.warning("malformed object skipped", what=what,
                          why="no metadata" if not isinstance(metadata, dict)
                          else "no metadata.name" if not name else "metadata not strings")
        return None

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
