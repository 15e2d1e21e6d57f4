"""A work queue that runs one job per key at a time, coalesces duplicates and backs off.

Controllers hear about the same object many times (a watch event, a periodic refresh, a
dependent's change), often in bursts. Running the reconcile once per burst, never twice at the
same time for the same object, and never more than ``concurrency`` at once across objects, is
what keeps a Raspberry Pi and the Vault behind it calm:

- a key added while it is waiting keeps a single entry, due at the earliest time asked for;
- a key added while its job runs is marked dirty and runs once more after the job ends;
- a job that raises is retried after an exponential, capped, jittered delay, so a hundred
  objects failing on the same sealed Vault do not retry in lock step;
- a job may return a delay to be run again after it (a periodic refresh, a wait for a
  dependency).
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
        rng: random.Random | None = None,
    ) -> None:
        self._worker = worker
        self._concurrency = concurrency
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._rng = rng or random.Random()
        self._heap: list[tuple[float, int, K]] = []
        self._due: dict[K, float] = {}
        self._dirty: dict[K, float] = {}
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

    def add(self, key: K, *, after: float = 0.0) -> None:
        """Run the job for ``key`` in ``after`` seconds, or sooner if it is already due sooner."""
        if self._closed:
            return
        due = asyncio.get_running_loop().time() + max(after, 0.0)
        if key in self._running:
            self._dirty[key] = min(due, self._dirty.get(key, due))
            return
        if key in self._due and self._due[key] <= due:
            return
        self._due[key] = due
        heapq.heappush(self._heap, (due, next(self._sequence), key))
        self._wake.set()

    def forget(self, key: K) -> None:
        """Drop a waiting entry and the failure count (the object is gone)."""
        self._due.pop(key, None)
        self._dirty.pop(key, None)
        self._failures.pop(key, None)

    def backoff(self, failures: int) -> float:
        """The delay before retry number ``failures``: exponential, capped, with jitter."""
        return jittered_backoff(failures, base=self._backoff_base, cap=self._backoff_cap,
                                rng=self._rng)

    async def run(self) -> None:
        """Hand due keys to jobs until :meth:`close`; returns when the queue is closed."""
        loop = asyncio.get_running_loop()
        while not self._closed:
            self._wake.clear()
            timeout = None
            while self._heap and len(self._running) < self._concurrency:
                due, _, key = self._heap[0]
                if self._due.get(key) != due:  # superseded by an earlier add, or forgotten
                    heapq.heappop(self._heap)
                    continue
                if due > loop.time():
                    timeout = due - loop.time()
                    break
                heapq.heappop(self._heap)
                del self._due[key]
                self._running[key] = asyncio.create_task(self._job(key), name=f"job {key}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _job(self, key: K) -> None:
        again: float | None = None
        try:
            again = await self._worker(key)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failures = self._failures[key] = self._failures.get(key, 0) + 1
            again = self.backoff(failures)
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
            self.add(key, after=dirty - asyncio.get_running_loop().time())
        elif again is not None:
            self.add(key, after=again)

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
