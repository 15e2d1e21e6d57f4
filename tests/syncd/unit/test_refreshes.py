"""The periodic refresh never cuts a failing object's backoff short."""

from __future__ import annotations

import asyncio

from plumbing.queueing import WorkQueue
from syncd.operator import Refreshes
from testbed.waiting import until

KEY = ("app", "web")


async def test_a_refresh_does_not_add_an_object_that_is_backing_off() -> None:
    async def worker(key: tuple[str, str]) -> None:
        raise RuntimeError("Vault is sealed")

    queue: WorkQueue[tuple[str, str]] = WorkQueue(worker=worker, backoff_base=60)
    refreshes = Refreshes(queue=queue)
    runner = asyncio.create_task(queue.run())
    try:
        await refreshes._due(KEY)  # a healthy object: refreshed at once
        await until(lambda: queue.failures(KEY) == 1)
        await until(lambda: queue.due_in(KEY) is not None)
        assert queue.due_in(KEY) > 20  # type: ignore[operator]  # backoff: 30 to 60 s
        await refreshes._due(KEY)
        assert queue.due_in(KEY) > 20  # type: ignore[operator]  # not pulled forward
    finally:
        await queue.close(grace=1)
        await runner
