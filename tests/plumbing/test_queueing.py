"""The work queue: coalescing, one job per key, bounded concurrency, backoff, clean close."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from plumbing.queueing import WorkQueue
from testbed.waiting import until


@contextlib.asynccontextmanager
async def running(queue: WorkQueue[str]) -> AsyncIterator[WorkQueue[str]]:
    task = asyncio.create_task(queue.run())
    try:
        yield queue
    finally:
        await queue.close(grace=1)
        await asyncio.wait_for(task, 2)


async def test_duplicates_added_while_waiting_run_once() -> None:
    calls: list[str] = []

    async def worker(key: str) -> None:
        calls.append(key)

    queue = WorkQueue(worker=worker)
    for _ in range(5):
        queue.add("a", after=0.05)
    queue.add("b", after=0.05)
    async with running(queue):
        await until(lambda: len(calls) == 2)
        await until(lambda: queue.in_flight == 0)
        assert len(queue) == 0  # no second entry for "a" waits anywhere
    assert sorted(calls) == ["a", "b"]


async def test_key_added_while_running_runs_once_more_after() -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    runs = 0
    concurrent = 0
    most = 0

    async def worker(key: str) -> None:
        nonlocal runs, concurrent, most
        runs += 1
        concurrent += 1
        most = max(most, concurrent)
        started.set()
        if runs == 1:
            await release.wait()
        concurrent -= 1

    queue = WorkQueue(worker=worker, concurrency=4)
    async with running(queue):
        queue.add("a")
        await asyncio.wait_for(started.wait(), 2)
        queue.add("a")
        queue.add("a")
        release.set()
        await until(lambda: runs == 2)
        await until(lambda: queue.in_flight == 0)
    assert runs == 2 and most == 1


async def test_concurrency_is_bounded() -> None:
    active = 0
    most = 0
    done = 0

    async def worker(key: str) -> None:
        nonlocal active, most, done
        active += 1
        most = max(most, active)
        await asyncio.sleep(0.01)
        active -= 1
        done += 1

    queue = WorkQueue(worker=worker, concurrency=3)
    async with running(queue):
        for i in range(12):
            queue.add(f"k{i}")
        await until(lambda: done == 12)
    assert most == 3


async def test_failures_back_off_exponentially_and_success_resets() -> None:
    attempts: list[float] = []

    async def worker(key: str) -> None:
        attempts.append(asyncio.get_running_loop().time())
        if len(attempts) < 4:
            raise RuntimeError("vault sealed")

    queue = WorkQueue(worker=worker, backoff_base=0.02, backoff_cap=0.05, rng=random.Random(1))
    async with running(queue):
        queue.add("a")
        await until(lambda: len(attempts) == 4)
        await until(lambda: queue.failures("a") == 0)
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    # Retry n waits between half and all of min(cap, base * 2**(n-1)).
    assert gaps[0] >= 0.01 and gaps[1] >= 0.02 and gaps[2] >= 0.025


def test_backoff_is_capped_and_jittered() -> None:
    queue: WorkQueue[str] = WorkQueue(
        worker=_never, backoff_base=1, backoff_cap=60, rng=random.Random(7)
    )
    delays = [queue.backoff(n) for n in range(1, 20)]
    assert all(d <= 60 for d in delays)
    assert delays[0] <= 1 and delays[-1] >= 30
    assert len({round(d, 6) for d in delays[-5:]}) == 5  # jittered, not lock step


async def _never(key: str) -> None:
    raise AssertionError("not called")


async def test_returned_delay_requeues() -> None:
    runs = 0

    async def worker(key: str) -> float | None:
        nonlocal runs
        runs += 1
        return 0.01 if runs < 3 else None

    queue = WorkQueue(worker=worker)
    async with running(queue):
        queue.add("a")
        await until(lambda: runs == 3)
        await until(lambda: len(queue) == 0 and queue.in_flight == 0)
    assert runs == 3


async def test_close_waits_for_running_jobs_within_grace_then_cancels() -> None:
    finished: list[str] = []
    cancelled: list[str] = []

    def make(delay: float) -> Callable[[str], Awaitable[None]]:
        async def worker(key: str) -> None:
            try:
                await asyncio.sleep(delay if key == "slow" else 0.02)
                finished.append(key)
            except asyncio.CancelledError:
                cancelled.append(key)
                raise
        return worker

    queue = WorkQueue(worker=make(30), concurrency=2)
    task = asyncio.create_task(queue.run())
    queue.add("quick")
    queue.add("slow")
    await until(lambda: queue.in_flight == 2)
    await queue.close(grace=0.5)
    await asyncio.wait_for(task, 1)
    assert finished == ["quick"] and cancelled == ["slow"]
    queue.add("late")
    assert len(queue) == 0


@pytest.mark.parametrize("after", [0.0, 0.02])
async def test_earlier_add_moves_a_waiting_key_forward(after: float) -> None:
    ran = asyncio.Event()

    async def worker(key: str) -> None:
        ran.set()

    queue = WorkQueue(worker=worker)
    queue.add("a", after=60)
    queue.add("a", after=after)
    async with running(queue):
        await asyncio.wait_for(ran.wait(), 2)
