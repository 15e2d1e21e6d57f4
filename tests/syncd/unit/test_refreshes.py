"""The periodic refresh: jitter that only shortens refreshAfter, never a backoff cut short."""

from __future__ import annotations

import asyncio
import itertools
import random

from plumbing.queueing import WorkQueue
from syncd.refreshing import BATCH, Refreshes
from testbed.waiting import until

KEY = ("app", "web")
Key = tuple[str, str]


class RecordingQueue(WorkQueue[Key]):
    """A work queue that only records when each key was added (nothing runs)."""

    def __init__(self) -> None:
        async def worker(key: Key) -> None:
            return None

        super().__init__(worker=worker)
        self.added: dict[Key, list[float]] = {}

    def add(self, key: Key, *, after: float = 0.0) -> None:
        self.added.setdefault(key, []).append(asyncio.get_running_loop().time())


def test_the_jitter_only_shortens_the_interval() -> None:
    refreshes = Refreshes(queue=RecordingQueue(), rng=random.Random(7))
    gaps = [refreshes.interval(30.0) for _ in range(2000)]
    assert max(gaps) <= 30.0
    assert min(gaps) >= 27.0
    assert max(gaps) - min(gaps) > 2.5  # it does spread: objects created together drift apart
    hours = [refreshes.interval(3600.0) for _ in range(200)]
    assert min(hours) >= 3570.0 and max(hours) <= 3600.0  # at most 30 s off, however long


async def test_every_object_is_refreshed_within_its_interval() -> None:
    queue = RecordingQueue()
    refreshes = Refreshes(queue=queue, rng=random.Random(3))
    keys = [("app", f"s{i}") for i in range(20)]
    for key in keys:
        refreshes.ensure(key, 0.3)
    refreshes.start()
    try:
        await until(lambda: all(len(queue.added.get(k, [])) >= 4 for k in keys), deadline=10)
        for key in keys:
            due = refreshes.due_in(key)
            assert due is not None and 0 < due <= 0.3  # the next one is scheduled within it
            times = queue.added[key]
            for earlier, later in itertools.pairwise(times):
                # Never earlier than the shortest jittered interval (less one batch)...
                assert later - earlier >= 0.27 - BATCH - 1e-3
                # ...and late only by the event loop's own lag, not by a longer schedule.
                assert later - earlier <= 0.3 + 0.2
    finally:
        refreshes.shutdown()


async def test_a_removed_object_is_not_refreshed_and_a_new_interval_takes_effect() -> None:
    queue = RecordingQueue()
    refreshes = Refreshes(queue=queue)
    refreshes.ensure(("app", "gone"), 0.05)
    refreshes.ensure(KEY, 3600.0)
    refreshes.remove(("app", "gone"))
    refreshes.start()
    try:
        refreshes.ensure(KEY, 0.05)  # refreshAfter edited down: rescheduled, not after an hour
        await until(lambda: len(queue.added.get(KEY, [])) >= 2, deadline=5)
        assert ("app", "gone") not in queue.added
        assert refreshes.due_in(("app", "gone")) is None
    finally:
        refreshes.shutdown()


class CountingQueue(WorkQueue[Key]):
    """A real work queue that counts how often a refresh asked about a key's failures."""

    asked = 0

    def failures(self, key: Key) -> int:
        self.asked += 1
        return super().failures(key)


async def test_a_refresh_does_not_add_an_object_that_is_backing_off() -> None:
    async def worker(key: Key) -> None:
        raise RuntimeError("Vault is sealed")

    queue = CountingQueue(worker=worker, backoff_base=60)
    refreshes = Refreshes(queue=queue)
    runner = asyncio.create_task(queue.run())
    refreshes.ensure(KEY, 0.05)
    refreshes.start()
    try:
        await until(lambda: queue.failures(KEY) == 1)
        await until(lambda: queue.due_in(KEY) is not None)
        backoff = queue.due_in(KEY)
        assert backoff is not None and backoff > 20  # backoff: 30 to 60 s
        # Several refreshes fall due meanwhile; none pulls the retry forward.
        asked = queue.asked
        await until(lambda: queue.asked >= asked + 3, deadline=5)
        retry = queue.due_in(KEY)
        assert retry is not None and retry > backoff - 1
        assert queue.failures(KEY) == 1
    finally:
        refreshes.shutdown()
        await queue.close(grace=1)
        await runner


async def test_a_held_object_is_not_refreshed() -> None:
    """Parked while its Vault is away: its connection's probe stands for its refreshes."""
    queue = RecordingQueue()
    held = {("app", "parked")}
    refreshes = Refreshes(queue=queue, held=held.__contains__)
    refreshes.ensure(("app", "parked"), 0.05)
    refreshes.ensure(KEY, 0.05)
    refreshes.start()
    try:
        await until(lambda: len(queue.added.get(KEY, [])) >= 3, deadline=5)
        assert ("app", "parked") not in queue.added
        held.clear()  # resumed: refreshed again
        await until(lambda: ("app", "parked") in queue.added, deadline=5)
    finally:
        refreshes.shutdown()
