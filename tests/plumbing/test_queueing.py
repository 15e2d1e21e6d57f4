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


async def test_an_urgent_key_overtakes_a_backlog_of_due_keys() -> None:
    """A notice must not wait behind refreshes already due (issue 12: 75 s at 10,000)."""
    order: list[str] = []
    release = asyncio.Event()

    async def worker(key: str) -> None:
        order.append(key)
        if key == "first":
            await release.wait()

    queue = WorkQueue(worker=worker, concurrency=1)
    async with running(queue):
        queue.add("first")
        await until(lambda: order == ["first"])
        for i in range(200):
            queue.add(f"refresh-{i}")  # due now, all of them: the backlog
        queue.add("notice", urgent=True)
        queue.add("later-notice", after=0.05, urgent=True)  # urgent, but not due yet
        release.set()
        await until(lambda: len(order) == 203, deadline=10)
    assert order[1] == "notice"  # the first free worker went to the urgent key
    assert order[2:5] == ["refresh-0", "refresh-1", "refresh-2"]  # the rest in their order
    # Not due yet when the backlog began: urgency orders due keys, it does not make them due.
    assert order.index("later-notice") > 2


async def test_coalescing_keeps_the_earliest_due_time_and_the_urgency() -> None:
    ran: list[str] = []
    block = asyncio.Event()

    async def worker(key: str) -> None:
        ran.append(key)
        if key == "blocker":
            await block.wait()

    queue = WorkQueue(worker=worker, concurrency=1)
    queue.add("a", after=60, urgent=True)
    queue.add("a")  # due now, and still urgent
    queue.add("b")
    queue.add("b", after=60, urgent=True)  # urgent, still due now
    assert len(queue) == 2
    assert queue.is_urgent("a") and queue.is_urgent("b")
    due_a, due_b = queue.due_in("a"), queue.due_in("b")
    assert due_a is not None and due_a < 1 and due_b is not None and due_b < 1
    async with running(queue):
        queue.add("blocker")
        await until(lambda: "blocker" in ran)
        queue.add("blocker", urgent=True)  # while it runs: once more after, urgently
        queue.add("blocker", after=30)
        assert queue.is_urgent("blocker")
        queue.add("plain")
        block.set()
        await until(lambda: len(ran) == 5)
    assert ran[:3] in (["a", "b", "blocker"], ["b", "a", "blocker"])
    assert ran[3:] == ["blocker", "plain"]  # its urgent re-run before the plain due key


async def test_the_backoff_is_capped_per_key() -> None:
    attempts: dict[str, int] = {"bounded": 0, "unbounded": 0}

    async def worker(key: str) -> None:
        attempts[key] += 1
        raise RuntimeError("source deleted")

    caps = {"bounded": 0.05, "unbounded": None}
    queue = WorkQueue(worker=worker, backoff_base=1.0, backoff_cap=300.0,
                      backoff_cap_of=caps.__getitem__, rng=random.Random(5))
    async with running(queue):
        queue.add("bounded")
        queue.add("unbounded")
        # Retries of the bounded key keep coming, however many failures it has had.
        await until(lambda: attempts["bounded"] >= 6, deadline=5)
        assert queue.failures("bounded") >= 5
        retry = queue.due_in("bounded")
        assert retry is None or retry <= 0.05
        waiting = queue.due_in("unbounded")
        assert attempts["unbounded"] == 1 and waiting is not None and waiting > 0.4
    assert all(queue.backoff(n, cap=2.0) <= 2.0 for n in range(1, 30))
    assert queue.backoff(30) > 100  # the queue's own cap otherwise


async def test_a_cap_that_cannot_be_read_falls_back_on_the_queue_cap() -> None:
    failed = asyncio.Event()

    async def worker(key: str) -> None:
        failed.set()
        raise RuntimeError("no")

    def broken(key: str) -> float | None:
        raise KeyError(key)

    queue = WorkQueue(worker=worker, backoff_base=0.5, backoff_cap=1.0, backoff_cap_of=broken)
    async with running(queue):
        queue.add("a")
        await asyncio.wait_for(failed.wait(), 2)
        await until(lambda: queue.due_in("a") is not None)
        retry = queue.due_in("a")
        assert retry is not None and 0.1 < retry <= 0.5


async def test_retries_of_many_failing_keys_share_one_rate() -> None:
    """Forty keys failing together retry at most ``retry_burst`` at once and ``retry_rate`` a
    second after that, whatever their own (tiny) backoff says."""
    loop = asyncio.get_running_loop()
    failed_at: dict[str, float] = {}
    retried_at: dict[str, float] = {}

    async def worker(key: str) -> None:
        if key not in failed_at:
            failed_at[key] = loop.time()
            raise RuntimeError("Vault answered 500")
        retried_at[key] = loop.time()

    queue = WorkQueue(worker=worker, concurrency=40, backoff_base=0.01, retry_rate=50.0,
                      retry_burst=10)
    for i in range(40):
        queue.add(f"k{i}")
    async with running(queue):
        await until(lambda: len(retried_at) == 40, deadline=10)
    first_failure = min(failed_at.values())
    gaps = sorted(at - first_failure for at in retried_at.values())
    # 10 at once, then one each 20 ms: the 40th no sooner than 30 tokens later (0.6 s).
    assert gaps[-1] >= (40 - 10 - 1) / 50.0
    assert gaps[9] < 0.5  # the burst went at its own backoff


async def test_a_far_retry_holds_back_no_near_one() -> None:
    """Tokens are taken when a retry is scheduled: a key retrying in five minutes does not
    make the next failure wait five minutes too."""
    loop = asyncio.get_running_loop()
    retried: list[str] = []
    failures: dict[str, int] = {}

    async def worker(key: str) -> None:
        failures[key] = failures.get(key, 0) + 1
        if failures[key] == 1:
            raise RuntimeError("fails once")
        retried.append(key)

    caps = {"far": 300.0, "near": 0.05}
    queue = WorkQueue(worker=worker, backoff_base=1000.0, backoff_cap_of=caps.get,
                      retry_rate=1.0, retry_burst=1)
    async with running(queue):
        queue.add("far")
        await until(lambda: failures.get("far") == 1)
        started = loop.time()
        queue.add("near")
        await until(lambda: retried == ["near"], deadline=5)
        assert loop.time() - started < 2.0  # its backoff (≤ 0.05 s) and one token (1 s)
        assert (queue.due_in("far") or 0) > 100


async def test_one_tenants_failing_keys_delay_anothers_retry_no_longer_than_its_cap() -> None:
    """Two hundred keys failing for ever (a tenant's hostile objects) take every token of the
    bucket; another key's retry still comes within its own cap (its refreshAfter)."""
    loop = asyncio.get_running_loop()
    failures: dict[str, int] = {}
    victim_retried_at: list[float] = []

    async def worker(key: str) -> None:
        failures[key] = failures.get(key, 0) + 1
        if key.startswith("noisy") or failures[key] == 1:
            raise RuntimeError("fails")
        victim_retried_at.append(loop.time())

    caps = {"victim": 0.5}
    queue = WorkQueue(worker=worker, concurrency=50, backoff_base=0.01, retry_rate=10.0,
                      retry_burst=5, backoff_cap_of=lambda key: caps.get(key, 1.0))
    async with running(queue):
        for i in range(200):
            queue.add(f"noisy{i}")
        await until(lambda: sum(failures.values()) >= 400, deadline=10)
        queue.add("victim")
        await until(lambda: "victim" in failures)
        failed_at = loop.time()
        await until(lambda: bool(victim_retried_at), deadline=5)
    assert victim_retried_at[0] - failed_at < 0.5 + 0.5  # its cap, and the loop's latency
