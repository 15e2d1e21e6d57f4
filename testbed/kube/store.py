"""The object store: one global resourceVersion counter, per-resource history, change fan-out.

This plays etcd plus the watch cache. Every committed write takes the next integer RV (encoded
as a string on the wire, as the real server does), is recorded in a bounded per-resource history
(the window a watch can resume from, and from which lists at an exact older RV are rebuilt), and
is pushed synchronously to subscribers: watch streams and the emulated controllers. Because the
event loop is single-threaded, a commit and its fan-out are atomic; no locking is needed.

Stored objects are never mutated after commit, so reads hand them out without copying.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from testbed.kube.errors import expired
from testbed.kube.meta import Obj

ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"


@dataclass(frozen=True, slots=True)
class Change:
    """One committed write: its RV, the watch event type, the new state and the previous one."""

    rv: int
    type: str
    obj: Obj
    old: Obj | None


@dataclass
class History:
    events: deque[Change] = field(default_factory=deque)
    floor: int = 0  # events with rv <= floor are no longer available


Subscriber = Callable[[str, Change], None]


class Store:
    """Objects by storage key, namespace and name."""

    def __init__(self, *, window: int = 1000) -> None:
        self.rv = 0
        self.window = window
        self._data: dict[str, dict[str, dict[str, Obj]]] = {}
        self._history: dict[str, History] = {}
        self._subscribers: dict[str, list[Subscriber]] = {}
        self._global: list[Subscriber] = []

    # -- reads ---------------------------------------------------------------------------------
    def get(self, storage: str, namespace: str, name: str) -> Obj | None:
        return self._data.get(storage, {}).get(namespace, {}).get(name)

    def items(self, storage: str, namespace: str | None = None) -> Iterator[Obj]:
        """Objects in key order (namespace, then name), as etcd lists them."""
        by_ns = self._data.get(storage, {})
        spaces = [namespace] if namespace is not None else sorted(by_ns)
        for ns in spaces:
            objs = by_ns.get(ns, {})
            for name in sorted(objs):
                yield objs[name]

    def count(self, storage: str, namespace: str | None = None) -> int:
        by_ns = self._data.get(storage, {})
        if namespace is not None:
            return len(by_ns.get(namespace, {}))
        return sum(len(v) for v in by_ns.values())

    def snapshot(self, storage: str, rv: int) -> list[Obj]:
        """All objects of ``storage`` as they were at ``rv`` (410 Expired if out of the window)."""
        history = self._history.get(storage) or History(floor=0)
        if rv < history.floor:
            raise expired(f"too old resource version: {rv} ({history.floor + 1})")
        state: dict[tuple[str, str], Obj] = {}
        for obj in self.items(storage):
            md = obj["metadata"]
            state[(md.get("namespace", ""), md["name"])] = obj
        for change in reversed(history.events):
            if change.rv <= rv:
                break
            md = change.obj["metadata"]
            key = (md.get("namespace", ""), md["name"])
            if change.type == ADDED:
                state.pop(key, None)
            elif change.old is not None:
                state[key] = change.old
        return [state[k] for k in sorted(state)]

    def changes_since(self, storage: str, rv: int) -> list[Change]:
        """Changes with RV > ``rv`` for a watch resuming from ``rv`` (410 if out of the window)."""
        history = self._history.get(storage)
        if history is None:
            return []
        if rv < history.floor:
            raise expired(f"too old resource version: {rv} ({history.floor + 1})")
        out = []
        for change in reversed(history.events):
            if change.rv <= rv:
                break
            out.append(change)
        out.reverse()
        return out

    def oldest_available(self, storage: str) -> int:
        history = self._history.get(storage)
        return history.floor if history else 0

    # -- writes --------------------------------------------------------------------------------
    def commit(self, storage: str, kind: str, obj: Obj, old: Obj | None) -> Change:
        """Store ``obj`` (fresh dict, owned by the store from now on) under the next RV."""
        self.rv += 1
        md = obj["metadata"]
        md["resourceVersion"] = str(self.rv)
        ns, name = md.get("namespace", ""), md["name"]
        if kind == DELETED:
            spaces = self._data.get(storage, {})
            spaces.get(ns, {}).pop(name, None)
            if ns in spaces and not spaces[ns]:
                del spaces[ns]
        else:
            self._data.setdefault(storage, {}).setdefault(ns, {})[name] = obj
        change = Change(self.rv, kind, obj, old)
        history = self._history.setdefault(storage, History())
        history.events.append(change)
        while len(history.events) > self.window:
            history.floor = history.events.popleft().rv
        for sub in tuple(self._subscribers.get(storage, ())):
            sub(storage, change)
        for sub in tuple(self._global):
            sub(storage, change)
        return change

    def compact(self, storage: str | None = None) -> None:
        """Forget history (like an etcd compaction): watches from older RVs get 410."""
        keys = (
            [storage]
            if storage
            else list(self._history) + [s for s in self._data if s not in self._history]
        )
        for key in keys:
            self._history[key] = History(floor=self.rv)

    # -- subscriptions -------------------------------------------------------------------------
    def subscribe(self, storage: str | None, fn: Subscriber) -> Callable[[], None]:
        """Call ``fn`` synchronously on every commit to ``storage`` (or to all, with None)."""
        target = self._global if storage is None else self._subscribers.setdefault(storage, [])
        target.append(fn)

        def unsubscribe() -> None:
            if fn in target:
                target.remove(fn)

        return unsubscribe

    def watcher_count(self) -> int:
        return sum(len(v) for v in self._subscribers.values())
