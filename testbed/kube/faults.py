"""Fault injection and request accounting, for tests of how clients behave when the API misbehaves.

Faults match requests by verb and by resource/namespace/name patterns (fnmatch), fire N times or
with a probability, and are one of: added latency, an error Status (5xx), 429 with Retry-After,
a watch connection dropped after some events, a watch that is answered with 410 Expired at
once, a watch ended cleanly (a proper end of the chunked stream, as a proxy with a short idle
timeout does) after some events, or raw events written into a watch (malformed ones, say).
A latency fault announces the requests it holds (``Faults.held()``: who asked, from which client
port, until when), so a test can act while a write is provably in flight, e.g. kill its client.
Counters record every API request by (verb, resource) so a test can assert, for example, that
a reconcile which changes nothing made zero Kubernetes requests.
"""

from __future__ import annotations

import fnmatch
import random
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Literal

FaultKind = Literal[
    "latency", "error", "throttle", "drop_watch", "expire_watch", "close_watch", "watch_events"
]


@dataclass(frozen=True)
class Held:
    """A request a latency fault holds now: received, not yet answered."""

    verb: str
    resource: str
    namespace: str
    name: str
    user: str
    peer_port: int  #: the client's TCP port (whose connection it is), 0 if unknown
    until: float  #: ``time.time()`` when the hold ends (a wall clock other processes share)


@dataclass
class Fault:
    kind: FaultKind
    verbs: frozenset[str] | None = None
    resource: str | None = None  # "secrets", "deployments.apps", "pods/status", "*"
    namespace: str | None = None
    name: str | None = None
    times: int | None = None  # None: unlimited
    probability: float = 1.0
    seconds: float = 0.0  # latency; for drop_watch: drop after this long (if > 0)
    code: int = 500
    retry_after: int = 1
    after_events: int = 0  # drop_watch, close_watch: after this many events were written
    events: tuple[Any, ...] = ()  # watch_events: written as JSON lines after the initial ones
    hits: int = 0
    user: str | None = None  # fnmatch on the authenticated user's name
    holding: list[Held] = field(default_factory=list)  # latency: the requests held now

    def matches(self, verb: str, resource: str, namespace: str, name: str,
                user: str = "") -> bool:
        if self.user is not None and not fnmatch.fnmatchcase(user, self.user):
            return False
        if self.verbs is not None and verb not in self.verbs:
            return False
        if self.resource is not None and not fnmatch.fnmatchcase(resource, self.resource):
            return False
        if self.namespace is not None and not fnmatch.fnmatchcase(namespace, self.namespace):
            return False
        return self.name is None or fnmatch.fnmatchcase(name, self.name)

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times


@dataclass(frozen=True)
class RequestRecord:
    verb: str
    resource: str  # qualified resource with "/subresource", or the path for non-resource requests
    namespace: str
    name: str
    user: str


class Faults:
    """The active faults (the admin handle exposes this as ``kube.faults``)."""

    def __init__(self, *, seed: int | None = None) -> None:
        self._faults: list[Fault] = []
        self._random = random.Random(seed)

    def add(
        self,
        kind: FaultKind,
        *,
        verbs: list[str] | str | None = None,
        resource: str | None = None,
        namespace: str | None = None,
        name: str | None = None,
        times: int | None = None,
        probability: float = 1.0,
        seconds: float = 0.0,
        code: int = 500,
        retry_after: int = 1,
        after_events: int = 0,
        events: tuple[Any, ...] = (),
        user: str | None = None,
    ) -> Fault:
        if isinstance(verbs, str):
            verbs = [verbs]
        fault = Fault(
            kind,
            frozenset(verbs) if verbs else None,
            resource,
            namespace,
            name,
            times,
            probability,
            seconds,
            code,
            retry_after,
            after_events,
            tuple(events),
            user=user,
        )
        self._faults.append(fault)
        return fault

    def latency(self, seconds: float, **match: Any) -> Fault:
        return self.add("latency", seconds=seconds, **match)

    def error(self, code: int = 500, **match: Any) -> Fault:
        return self.add("error", code=code, **match)

    def throttle(self, retry_after: int = 1, **match: Any) -> Fault:
        return self.add("throttle", retry_after=retry_after, **match)

    def drop_watch(
        self, *, after_events: int = 0, after_seconds: float = 0.0, **match: Any
    ) -> Fault:
        return self.add(
            "drop_watch",
            after_events=after_events,
            seconds=after_seconds,
            **match,
        )

    def expire_watch(self, **match: Any) -> Fault:
        """The next matching watch (``times=1`` unless given) is answered with 410 Expired."""
        match.setdefault("times", 1)
        return self.add("expire_watch", **match)

    def close_watch(
        self, *, after_events: int = 0, after_seconds: float = 0.0, **match: Any
    ) -> Fault:
        """Matching watches end cleanly (the stream's last chunk is sent) after ``after_events``
        events or ``after_seconds``: what a proxy with a short timeout does."""
        return self.add("close_watch", after_events=after_events, seconds=after_seconds, **match)

    def watch_events(self, *events: Any, **match: Any) -> Fault:
        """Matching watches carry ``events`` (any JSON, malformed on purpose) verbatim, after
        their initial events; JSON watches only (not protobuf)."""
        return self.add("watch_events", events=events, **match)

    def remove(self, fault: Fault) -> None:
        if fault in self._faults:
            self._faults.remove(fault)

    def clear(self) -> None:
        self._faults.clear()

    def __bool__(self) -> bool:
        return bool(self._faults)

    def held(self) -> list[Held]:
        """The requests the active latency faults hold now, oldest first."""
        return sorted((held for fault in self._faults for held in fault.holding),
                      key=lambda held: held.until)

    def take(self, verb: str, resource: str, namespace: str, name: str,
             user: str = "") -> list[Fault]:
        """The faults that fire for this request (their counters are consumed)."""
        fired = []
        for fault in list(self._faults):
            if fault.exhausted or not fault.matches(verb, resource, namespace, name, user):
                continue
            if fault.probability < 1.0 and self._random.random() >= fault.probability:
                continue
            fault.hits += 1
            fired.append(fault)
        self._faults = [f for f in self._faults if not f.exhausted]
        return fired


@dataclass
class RequestCounter:
    """Counts API requests by (verb, resource); keeps the most recent ones for inspection."""

    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: Requests per authenticated user (``system:serviceaccount:ns:sa``, ``admin``...).
    users: Counter[str] = field(default_factory=Counter)
    log: deque[RequestRecord] = field(default_factory=lambda: deque(maxlen=20000))
    include_discovery: bool = False

    def record(self, record: RequestRecord) -> None:
        self.counts[(record.verb, record.resource)] += 1
        self.users[record.user] += 1
        self.log.append(record)

    def count(self, verb: str | None = None, resource: str | None = None) -> int:
        """Requests matching ``verb`` and ``resource`` (fnmatch pattern); None matches all."""
        return sum(
            n
            for (v, r), n in self.counts.items()
            if (verb is None or v == verb)
            and (resource is None or fnmatch.fnmatchcase(r, resource))
            and (self.include_discovery or not r.startswith("/"))
        )

    @property
    def total(self) -> int:
        return self.count()

    def writes(self) -> int:
        return sum(
            self.count(v) for v in ("create", "update", "patch", "delete", "deletecollection")
        )

    def reset(self) -> None:
        self.counts.clear()
        self.users.clear()
        self.log.clear()

    def snapshot(self) -> dict[str, int]:
        return {f"{v} {r}": n for (v, r), n in sorted(self.counts.items())}
