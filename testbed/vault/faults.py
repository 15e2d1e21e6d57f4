"""Fault injection and request accounting, per instance.

Tests of the services' retry and back-off logic need Vault to be slow, to fail with 5xx, or to
drop the connection, for chosen requests only, a fixed number of times or at random; benchmarks
need to know how many requests the services actually sent. Both are done in front of routing,
on the raw method and path, so they see exactly what the client sent.
"""

from __future__ import annotations

import fnmatch
import itertools
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Fault:
    """One rule: requests matching ``method`` and ``path`` (an fnmatch glob) get the fault."""

    id: int
    method: str = "*"
    path: str = "*"
    latency: float = 0.0  # seconds to wait before answering (or failing)
    status: int | None = None  # answer with this status and ``errors`` instead of serving
    errors: list[str] = field(default_factory=list)
    reset: bool = False  # drop the connection (TCP RST) instead of answering
    #: Answer with these raw bytes (``status``, default 200, as application/json) instead of
    #: serving: a malformed or hostile Vault answer, byte for byte.
    body: bytes | None = field(default=None, repr=False)
    times: int | None = None  # fire this many times, then retire; None = forever
    probability: float = 1.0
    fired: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (self.method in ("*", method)) and fnmatch.fnmatchcase(path, self.path)

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "method": self.method,
            "path": self.path,
            "latency": self.latency,
            "status": self.status,
            "errors": list(self.errors),
            "reset": self.reset,
            "body_bytes": None if self.body is None else len(self.body),
            "times": self.times,
            "probability": self.probability,
            "fired": self.fired,
        }


class FaultInjector:
    """The active rules of one instance; the first matching rule that fires wins."""

    _ids = itertools.count(1)

    def __init__(self, *, seed: int | None = None) -> None:
        # Copy-on-write tuple: the admin API may replace it from another thread.
        self._rules: tuple[Fault, ...] = ()
        self._random = random.Random(seed)

    def add(
        self,
        *,
        method: str = "*",
        path: str = "*",
        latency: float = 0.0,
        status: int | None = None,
        errors: list[str] | None = None,
        reset: bool = False,
        times: int | None = None,
        probability: float = 1.0,
        body: bytes | None = None,
    ) -> Fault:
        if status is None and not reset and latency <= 0 and body is None:
            raise ValueError("a fault needs a status, a reset, a latency or a body")
        if not 0.0 < probability <= 1.0:
            raise ValueError("probability must be in (0, 1]")
        fault = Fault(
            id=next(self._ids),
            method=method.upper(),
            path=path,
            latency=latency,
            status=status,
            errors=list(errors) if errors is not None else [f"injected fault {status}"],
            reset=reset,
            times=times,
            probability=probability,
            body=body,
        )
        self._rules = (*self._rules, fault)
        return fault

    def remove(self, fault_id: int) -> None:
        self._rules = tuple(rule for rule in self._rules if rule.id != fault_id)

    def clear(self) -> None:
        self._rules = ()

    def rules(self) -> list[Fault]:
        return list(self._rules)

    def pick(self, method: str, path: str) -> Fault | None:
        if not self._rules:
            return None
        for rule in self._rules:
            if not rule.matches(method, path):
                continue
            if rule.probability < 1.0 and self._random.random() >= rule.probability:
                continue
            rule.fired += 1
            if rule.times is not None and rule.fired >= rule.times:
                self.remove(rule.id)
            return rule
        return None


class RequestCounter:
    """Requests seen per (method, path, X-Vault-Namespace header), the query string left out.

    The namespace header is counted, not acted on: Vault Community Edition ignores it (every
    request runs in the root namespace), and so does the emulation; tests use the count to see
    that a client sent it.
    """

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str, str]] = Counter()

    def record(self, method: str, path: str, namespace: str = "") -> None:
        self._counts[method, path, namespace] += 1

    def count(
        self, *, method: str | None = None, path: str | None = None,
        namespace: str | None = None,
    ) -> int:
        """Total of the requests matching ``method``, the fnmatch glob ``path`` and the
        namespace header (``""``: sent without one; None: either)."""
        return sum(
            n
            for (m, p, ns), n in list(self._counts.items())
            if (method is None or m == method.upper())
            and (path is None or fnmatch.fnmatchcase(p, path))
            and (namespace is None or ns == namespace)
        )

    def snapshot(self) -> dict[str, int]:
        """``{"GET /v1/secret/data/x": 3, ...}``."""
        totals: Counter[str] = Counter()
        for (m, p, _), n in self._counts.items():
            totals[f"{m} {p}"] += n
        return dict(sorted(totals.items()))

    def reset(self) -> None:
        self._counts = Counter()
