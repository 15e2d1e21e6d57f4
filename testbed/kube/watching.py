"""Watch streams: newline-delimited JSON events over a chunked HTTP 200.

Semantics follow the watch cache:

* ``resourceVersion`` unset or ``"0"``: synthetic ADDED events for the current state, then live
  events; ``"N"``: every change after N replayed from the per-resource history, then live ones.
* An N older than the history window is answered with HTTP **200** and a single ERROR event
  carrying a 410 Expired Status, then the stream ends. That is what the real server does (the
  decision is made after the response has started streaming), and it is what clients key their
  relist on; a plain HTTP 410 would surface as a different exception in kubernetes-asyncio.
* With selectors, an object that starts matching arrives as ADDED and one that stops matching
  as DELETED.
* ``allowWatchBookmarks``: a BOOKMARK carrying the current RV whenever the stream has been idle
  for the bookmark interval (never lower than an RV already sent); with ``sendInitialEvents`` a
  bookmark annotated ``k8s.io/initial-events-end`` follows the initial events.
* ``timeoutSeconds`` ends the stream cleanly.
* Table and PartialObjectMetadata events for kubectl (``get -w``): one-row Tables, only the
  first one with column definitions.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from testbed.kube import tables
from testbed.kube.convert import to_external
from testbed.kube.errors import ApiError, expired
from testbed.kube.kinds import ResourceType
from testbed.kube.meta import Obj, dump_bytes
from testbed.kube.selectors import FieldSelector, LabelSelector
from testbed.kube.store import ADDED, DELETED, MODIFIED, Change

if TYPE_CHECKING:
    from testbed.kube.faults import Fault
    from testbed.kube.registry import Registry


@dataclass
class WatchRequest:
    rt: ResourceType
    namespace: str | None
    labels: LabelSelector
    fields: FieldSelector
    resource_version: str
    allow_bookmarks: bool
    send_initial_events: bool | None
    timeout: float
    bookmark_interval: float
    output: str  # "json", "table", "partial"
    include_object: str = "Metadata"


def _matches(req: WatchRequest, obj: Obj | None) -> bool:
    if obj is None:
        return False
    md = obj["metadata"]
    if req.namespace is not None and md.get("namespace", "") != req.namespace:
        return False
    if not req.labels.empty and not req.labels.matches(md.get("labels")):
        return False
    return req.fields.empty or req.fields.matches(obj)


def translate(req: WatchRequest, change: Change) -> tuple[str, Obj] | None:
    """The event this watcher sees for ``change``, if any (selector transitions included)."""
    if change.type == DELETED:
        return (DELETED, change.obj) if _matches(req, change.obj) else None
    now_matches = _matches(req, change.obj)
    if change.type == ADDED:
        return (ADDED, change.obj) if now_matches else None
    was = _matches(req, change.old)
    if was and now_matches:
        return (MODIFIED, change.obj)
    if now_matches:
        return (ADDED, change.obj)
    if was and change.old is not None:
        # Like the watch cache: the object's previous content, at the event's resourceVersion.
        gone = dict(change.old)
        gone["metadata"] = {**change.old["metadata"], "resourceVersion": str(change.rv)}
        return (DELETED, gone)
    return None


class Encoder:
    """Encodes events once per (rv, version, output) so many watchers share the work."""

    def __init__(self) -> None:
        self._cache: dict[tuple[int, str, str, str], bytes] = {}

    def event(self, req: WatchRequest, kind: str, obj: Obj, rv: int, first: bool) -> bytes:
        if req.output == "json":
            key = (rv, kind, req.rt.api_version, req.rt.storage)
            cached = self._cache.get(key)
            if cached is None:
                if len(self._cache) > 4096:
                    self._cache.clear()
                cached = dump_bytes({"type": kind, "object": to_external(req.rt, obj)}) + b"\n"
                self._cache[key] = cached
            return cached
        external = to_external(req.rt, obj)
        if req.output == "partial":
            body: Obj = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": external.get("metadata", {}),
            }
        else:
            body = tables.table(
                req.rt,
                [external],
                include=req.include_object,
                headers=first,
                list_meta={"resourceVersion": external["metadata"].get("resourceVersion", "")},
            )
        return dump_bytes({"type": kind, "object": body}) + b"\n"


def bookmark(req: WatchRequest, rv: int, initial_end: bool = False) -> bytes:
    md: Obj = {"resourceVersion": str(rv), "creationTimestamp": None}
    if initial_end:
        md["annotations"] = {"k8s.io/initial-events-end": "true"}
    return (
        dump_bytes(
            {
                "type": "BOOKMARK",
                "object": {"kind": req.rt.kind, "apiVersion": req.rt.api_version, "metadata": md},
            }
        )
        + b"\n"
    )


def error_event(err: ApiError) -> bytes:
    return dump_bytes({"type": "ERROR", "object": err.status()}) + b"\n"


async def serve_watch(
    request: web.Request,
    *,
    registry: Registry,
    req: WatchRequest,
    encoder: Encoder,
    faults: list[Fault],
    on_open: Callable[[], None],
    on_close: Callable[[], None],
) -> web.StreamResponse:
    store = registry.store
    queue: asyncio.Queue[Change] = asyncio.Queue()
    # Subscribe before reading the current state: the loop is single-threaded, so nothing can be
    # committed between the subscription and the initial read, and nothing is missed or doubled.
    unsubscribe = store.subscribe(req.rt.storage, lambda _s, change: queue.put_nowait(change))
    initial: list[tuple[str, Obj, int]] = []
    failure: ApiError | None = None
    start_rv = store.rv
    expire = next((f for f in faults if f.kind == "expire_watch"), None)
    drop = next((f for f in faults if f.kind in ("drop_watch", "close_watch")), None)
    injected = [event for f in faults if f.kind == "watch_events" for event in f.events]
    try:
        if expire is not None:
            rv_text = req.resource_version or str(store.rv)
            failure = expired(f"too old resource version: {rv_text} ({store.rv + 1})")
        elif req.resource_version in ("", "0") or req.send_initial_events:
            if req.resource_version not in ("", "0") and req.send_initial_events:
                store.changes_since(req.rt.storage, int(req.resource_version))  # 410 check
            for obj in store.items(req.rt.storage, req.namespace if req.rt.namespaced else None):
                if _matches(req, obj):
                    initial.append((ADDED, obj, int(obj["metadata"]["resourceVersion"])))
        else:
            since = int(req.resource_version)
            for change in store.changes_since(req.rt.storage, since):
                event = translate(req, change)
                if event is not None:
                    initial.append((event[0], event[1], change.rv))
    except ApiError as exc:
        failure = exc
    except ValueError:
        failure = ApiError(400, "BadRequest", f"invalid resource version: {req.resource_version}")

    response = web.StreamResponse(
        status=200,
        headers={"Content-Type": "application/json", "Cache-Control": "no-cache, private"},
    )
    response.enable_chunked_encoding()
    on_open()
    try:
        await response.prepare(request)
        if failure is not None:
            # The 410 goes out as an ERROR event on an HTTP 200: clients relist on it.
            await response.write(error_event(failure))
            return response
        sent_rv = 0
        written = 0
        first = True
        chunks = []
        for kind, obj, rv in initial:
            chunks.append(encoder.event(req, kind, obj, rv, first))
            first = False
            sent_rv = max(sent_rv, rv)
        if req.send_initial_events and req.allow_bookmarks:
            chunks.append(bookmark(req, start_rv, initial_end=True))
            sent_rv = max(sent_rv, start_rv)
        chunks.extend(dump_bytes(event) + b"\n" for event in injected)
        if chunks:
            await response.write(b"".join(chunks))
            written += len(initial)
        if drop is not None and drop.after_events <= written and drop.seconds <= 0:
            return await _cut(request, response, drop)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + req.timeout
        drop_at = loop.time() + drop.seconds if drop is not None and drop.seconds > 0 else None
        last_activity = loop.time()
        while True:
            now = loop.time()
            if now >= deadline:
                break
            if drop is not None and drop_at is not None and now >= drop_at:
                return await _cut(request, response, drop)
            wait = deadline - now
            if req.allow_bookmarks:
                wait = min(wait, max(0.0, last_activity + req.bookmark_interval - now))
            if drop_at is not None:
                wait = min(wait, max(0.0, drop_at - now))
            try:
                change = (
                    await asyncio.wait_for(queue.get(), timeout=wait)
                    if wait > 0
                    else queue.get_nowait()
                )
            except (TimeoutError, asyncio.QueueEmpty):
                if req.allow_bookmarks and loop.time() >= last_activity + req.bookmark_interval:
                    rv = max(store.rv, sent_rv)
                    await response.write(bookmark(req, rv))
                    sent_rv = rv
                    last_activity = loop.time()
                continue
            batch = [change]
            while not queue.empty():
                batch.append(queue.get_nowait())
            chunks = []
            for change in batch:
                event = translate(req, change)
                if event is None:
                    continue
                chunks.append(encoder.event(req, event[0], event[1], change.rv, first))
                first = False
                sent_rv = max(sent_rv, change.rv)
                written += 1
                if drop is not None and drop_at is None and written >= drop.after_events:
                    break
            if chunks:
                await response.write(b"".join(chunks))
                last_activity = loop.time()
            if drop is not None and drop_at is None and written >= drop.after_events:
                return await _cut(request, response, drop)
        await response.write_eof()
        return response
    except (ConnectionResetError, ConnectionError, asyncio.CancelledError):
        raise
    finally:
        unsubscribe()
        on_close()


async def _cut(
    request: web.Request, response: web.StreamResponse, fault: Fault
) -> web.StreamResponse:
    """End the watch as ``fault`` says: cut the connection, or close the stream properly."""
    if fault.kind == "close_watch":
        await response.write_eof()
    else:
        _abort(request)
    return response


def _abort(request: web.Request) -> None:
    """Cut the TCP connection mid-stream (fault injection)."""
    transport = request.transport
    if transport is not None:
        transport.abort()


def monotonic() -> float:
    return time.monotonic()


def params_timeout(value: Any, default: float) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return default
    return seconds if seconds > 0 else default
