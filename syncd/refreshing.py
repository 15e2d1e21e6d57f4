"""The periodic refresh of every VaultStaticSecret: one timer over a due-queue.

``refreshAfter`` is the user's bound on staleness, so the time between two refreshes of an
object never exceeds it: the jitter that spreads objects created together (a ``kubectl apply``
of fifty) only ever *shortens* an interval, by up to 10 % (at most 30 s). A refresh is only a
nudge to the work queue, and never for an object that is backing off after a failure (its
retry is already due within ``refreshAfter``, the queue's cap for it: a refresh would only cut
the backoff short), nor for one that is *held* (parked while its Vault is down, see
:mod:`syncd.outages`: one probe per connection stands for all of them).

One timer and one heap serve every object, instead of one scheduler job each: at 10,000 objects
refreshed every 30 s that is 333 refreshes a second, and each must cost next to nothing (an
apscheduler job computes time-zone-aware trigger times, takes locks and starts a task per run;
here it is a heap pop and push inside one timer callback).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
from collections.abc import Callable

from plumbing.queueing import WorkQueue

Key = tuple[str, str]

#: The share of an interval the jitter may take off, and its ceiling in seconds.
JITTER = 0.1
JITTER_CAP = 30.0
#: Entries due within this many seconds of a wake-up are refreshed by it.
BATCH = 0.01


class Refreshes:
    """Adds each object to the work queue every ``seconds`` (or a little sooner)."""

    def __init__(
        self, *, queue: WorkQueue[Key], held: Callable[[Key], bool] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._queue = queue
        self._held = held
        self._rng = rng or random.Random()
        self._intervals: dict[Key, float] = {}
        #: key -> when it is next due (loop time); heap entries not matching it are stale.
        self._due: dict[Key, float] = {}
        self._heap: list[tuple[float, int, Key]] = []
        self._sequence = itertools.count()
        self._started = False
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._intervals)

    def interval(self, seconds: float) -> float:
        """The next gap for an object refreshed every ``seconds``: never longer."""
        return seconds - self._rng.uniform(0.0, min(seconds * JITTER, JITTER_CAP))

    def due_in(self, key: Key) -> float | None:
        """Seconds until ``key`` is next refreshed; None if it is not scheduled."""
        due = self._due.get(key)
        return None if due is None else due - asyncio.get_running_loop().time()

    def ensure(self, key: Key, seconds: float, *, first: float | None = None) -> None:
        """Refresh ``key`` every ``seconds`` from now on (a no-op if it already is); the first
        time in ``first`` seconds when given (many objects changing interval at once spread
        their first refreshes so), never later than one interval."""
        if self._intervals.get(key) == seconds:
            return
        self._intervals[key] = seconds
        gap = self.interval(seconds) if first is None else min(max(first, 0.0), seconds)
        self._schedule(key, asyncio.get_running_loop().time() + gap)

    def remove(self, key: Key) -> None:
        self._intervals.pop(key, None)
        self._due.pop(key, None)  # its heap entry is dropped when it comes up

    def start(self) -> None:
        """Begin refreshing (the leader only); objects already due are refreshed at once."""
        self._started = True
        self._arm()

    def shutdown(self) -> None:
        self._started = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _schedule(self, key: Key, due: float) -> None:
        self._due[key] = due
        heapq.heappush(self._heap, (due, next(self._sequence), key))
        if self._timer is None or due < self._timer.when():
            self._arm()

    def _arm(self) -> None:
        """Set the one timer for the earliest live entry."""
        if not self._started:
            return
        while self._heap and self._due.get(self._heap[0][2]) != self._heap[0][0]:
            heapq.heappop(self._heap)  # removed, or rescheduled
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._heap:
            self._timer = asyncio.get_running_loop().call_at(self._heap[0][0], self._tick)

    def _tick(self) -> None:
        self._timer = None
        now = asyncio.get_running_loop().time()
        # What falls due within the next few milliseconds goes now too: one wake-up for a
        # bunch, and an interval only ever gets shorter.
        horizon = now + BATCH
        while self._heap and self._heap[0][0] <= horizon:
            due, _, key = heapq.heappop(self._heap)
            if self._due.get(key) != due:
                continue
            # A failing object already has its retry scheduled by the queue's backoff, and a
            # held one waits for its connection's probe.
            if not self._queue.failures(key) and not (self._held and self._held(key)):
                self._queue.add(key)
            # From now, not from when it was due: a late timer must not make the next gap
            # longer than the interval.
            self._due[key] = next_due = now + self.interval(self._intervals[key])
            heapq.heappush(self._heap, (next_due, next(self._sequence), key))
        self._arm()
