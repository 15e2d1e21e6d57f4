"""A work queue that runs one job per key at a time, coalesces duplicates and backs off.

Controllers hear about the same object many times (a watch event, a periodic refresh, a
dependent's change), often in bursts. Running the reconcile once per burst, never twice at the
same time for the same object, and never more than ``concurrency`` at once across objects, is
what keeps a Raspberry Pi and the Vault behind it calm:

- a key added while it is waiting keeps a single entry, due at the earliest time asked for;
- a key added while its job runs is marked dirty and runs once more after the job ends;
- a job that raises is retried after an exponential, capped, jittered delay, so a hundred
  objects failing on the same sealed Vault do not retry in lock step; the cap may be set per
  key (``backoff_cap_of``: a VaultStaticSecret's ``refreshAfter``, the user's bound on
  staleness);
- a job may return a delay to be run again after it (a periodic refresh, a wait for a
  dependency);
- a key added ``urgent`` (someone is waiting for it: a change notice, a user's edit) is handed
  out before every non-urgent key that is due, so it never queues behind a backlog of due
  refreshes (at 10,000 objects a notice waited 75 s at p50 behind them). Urgency only orders
  the keys that are due: it changes neither when a key is due nor the rules above, and a key
  waiting in both ways keeps one entry, urgent, due at the earlier time.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import random
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

import structlog

K = TypeVar("K", bound=Hashable)


def jittered_backoff(
    failures: int, *, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """The delay before retry number ``failures`` (from 1): exponential, capped, jittered.

    "Equal jitter": between half the ceiling and the ceiling, so retries spread out but never
    come back at once (full jitter may draw ~0 s, which a loop of failures turns into a burst).
    """
    ceiling = min(cap, base * 2 ** max(failures - 1, 0))
    return (rng or random).uniform(ceiling / 2, ceiling)
Worker = Callable[[K], Awaitable[float | None]]


class WorkQueue(Generic[K]):
    """Run ``worker(key)`` for added keys with the guarantees in the module docstring."""

    def __init__(
        self,
        *,
        worker: Worker[K],
        concurrency: int = 4,
        backoff_base: float = 1.0,
        backoff_cap: float = 300.0,
        backoff_cap_of: Callable[[K], float | None] | None = None,
        retry_rate: float = 100.0,
        retry_burst: int = 200,
        rng: random.Random | None = None,
    ) -> None:
        self._worker = worker
        #: Retries after failures are paced to ``retry_rate`` a second, ``retry_burst`` at
        #: once, whatever each key's own backoff says: a token bucket kept as one number, the
        #: time its next token is free (a generic cell rate algorithm's; no timer).
        self._retry_interval = 1.0 / retry_rate
        self._retry_slack = retry_burst * self._retry_interval
        self._retry_tat = 0.0
        self._concurrency = concurrency
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._backoff_cap_of = backoff_cap_of
        self._rng = rng or random.Random()
        #: Two lanes of (due, sequence, key); an entry is live only if ``_due`` and
        #: ``_urgent`` still say so (a key moved forward or made urgent leaves a stale one).
        self._heap: list[tuple[float, int, K]] = []
        self._urgent_heap: list[tuple[float, int, K]] = []
        self._due: dict[K, float] = {}
        self._urgent: set[K] = set()
        #: Keys added while their job ran: when to run again, and whether urgently.
        self._dirty: dict[K, tuple[float, bool]] = {}
        self._running: dict[K, asyncio.Task[None]] = {}
        self._failures: dict[K, int] = {}
        self._sequence = itertools.count()
        self._wake = asyncio.Event()
        self._closed = False
        self._log = structlog.get_logger("queueing")

    def __len__(self) -> int:
        return len(self._due)

    @property
    def in_flight(self) -> int:
        return len(self._running)

    def failures(self, key: K) -> int:
        return self._failures.get(key, 0)

    def due_in(self, key: K) -> float | None:
        """Seconds until ``key`` runs, if it is waiting (0 when due); None otherwise."""
        due = self._due.get(key)
        if due is None:
            return None
        return max(0.0, due - asyncio.get_running_loop().time())

    def is_urgent(self, key: K) -> bool:
        """Whether ``key`` waits (or will run again) in the urgent lane."""
        return key in self._urgent or self._dirty.get(key, (0.0, False))[1]

    def add(self, key: K, *, after: float = 0.0, urgent: bool = False) -> None:
        """Run the job for ``key`` in ``after`` seconds, or sooner if it is already due sooner;
        ``urgent``: ahead of every non-urgent key that is due by then."""
        if self._closed:
            return
        due = asyncio.get_running_loop().time() + max(after, 0.0)
        if key in self._running:
            earlier = self._dirty.get(key)
            if earlier is not None:
                due, urgent = min(due, earlier[0]), urgent or earlier[1]
            self._dirty[key] = (due, urgent)
            return
        waiting = self._due.get(key)
        was_urgent = key in self._urgent
        if waiting is not None:
            if waiting <= due and (was_urgent or not urgent):
                return  # already due as soon, in a lane as fast
            due = min(due, waiting)
        self._due[key] = due
        if urgent or was_urgent:
            self._urgent.add(key)
            heapq.heappush(self._urgent_heap, (due, next(self._sequence), key))
        else:
            heapq.heappush(self._heap, (due, next(self._sequence), key))
        self._wake.set()

    def forget(self, key: K) -> None:
        """Drop a waiting entry and the failure count (the object is gone)."""
        self._due.pop(key, None)
        self._urgent.discard(key)
        self._dirty.pop(key, None)
        self._failures.pop(key, None)

    def backoff(self, failures: int, *, cap: float | None = None) -> float:
        """The delay before retry number ``failures``: exponential, capped (at the queue's cap,
        or ``cap`` if lower), with jitter."""
        return jittered_backoff(failures, base=self._backoff_base, cap=self._ceiling(cap),
                                rng=self._rng)

    def _ceiling(self, cap: float | None) -> float:
        """The longest a retry waits: the queue's cap, or ``cap`` if lower."""
        return self._backoff_cap if cap is None else min(cap, self._backoff_cap)

    async def run(self) -> None:
        """Hand due keys to jobs until :meth:`close`; returns when the queue is closed."""
        loop = asyncio.get_running_loop()
        while not self._closed:
            self._wake.clear()
            timeout = None
            while len(self._running) < self._concurrency:
                key, timeout = self._next(loop.time())
                if key is None:
                    break
                self._running[key] = asyncio.create_task(self._job(key), name=f"job {key}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    def _next(self, now: float) -> tuple[K | None, float | None]:
        """The next due key (taken off the queue), urgent ones first; or None and the seconds
        until one is due (None: nothing waits)."""
        soonest: float | None = None
        for heap, urgent in ((self._urgent_heap, True), (self._heap, False)):
            while heap:
                due, _, key = heap[0]
                if self._due.get(key) != due or (key in self._urgent) != urgent:
                    heapq.heappop(heap)  # moved forward, made urgent, or forgotten
                    continue
                if due <= now:
                    heapq.heappop(heap)
                    del self._due[key]
                    self._urgent.discard(key)
                    return key, None
                soonest = due if soonest is None else min(soonest, due)
                break
        return None, None if soonest is None else soonest - now

    async def _job(self, key: K) -> None:
        again: float | None = None
        try:
            again = await self._worker(key)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failures = self._failures[key] = self._failures.get(key, 0) + 1
            cap = self._cap_of(key)
            again = self._paced(self.backoff(failures, cap=cap), ceiling=self._ceiling(cap))
            self._log.warning(
                "job failed, retrying", job=str(key), error=str(exc), failures=failures,
                retry_in=round(again, 2),
            )
        else:
            self._failures.pop(key, None)
        finally:
            del self._running[key]
            self._wake.set()
        dirty = self._dirty.pop(key, None)
        if dirty is not None:
            # A change arrived while the job ran: look at it now rather than after a backoff.
            self.add(key, after=dirty[0] - asyncio.get_running_loop().time(), urgent=dirty[1])
        elif again is not None:
            self.add(key, after=again)

    def _paced(self, delay: float, *, ceiling: float) -> float:
        """``delay``, or longer if retries are leaving faster than the queue allows.

        Each key's backoff keeps one failing object calm, not a thousand failing together: a
        Vault path answering 500 to every object (its health fine, so nothing parks) had them
        retry at 1, 2, 4, 8 s, each retry a read, a status write and an Event (574 Kubernetes
        requests a second at 1,000 objects). As client-go's controllers pair the per-item
        backoff with one token bucket, retries here share one rate."""
        now = asyncio.get_running_loop().time()
        # A token is taken now (a retry 300 s away must not hold back one due in a second);
        # the retry runs after its own backoff or its token's time, whichever is later, but
        # never after its key's ``ceiling`` (a VaultStaticSecret's refreshAfter): one tenant's
        # thousand failing objects may slow another's retries, never past that bound, and the
        # bucket never runs further ahead than the longest ceiling.
        self._retry_tat = min(max(self._retry_tat, now) + self._retry_interval,
                              now + self._backoff_cap + self._retry_slack)
        token = self._retry_tat - self._retry_interval - self._retry_slack - now
        return max(delay, min(token, ceiling))

    def _cap_of(self, key: K) -> float | None:
        if self._backoff_cap_of is None:
            return None
        try:
            return self._backoff_cap_of(key)
        except Exception as exc:  # a bound that cannot be read is no reason to stop retrying
            self._log.warning("no backoff bound", job=str(key), error=str(exc))
            return None

    async def close(self, *, grace: float) -> None:
        """Stop handing out work, give running jobs ``grace`` seconds, then cancel them."""
        self._closed = True
        self._wake.set()
        running = list(self._running.values())
        if not running:
            return
        _, pending = await asyncio.wait(running, timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
