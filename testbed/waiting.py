"""Waiting on a condition with a deadline: how tests synchronise, instead of sleeping."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


async def until(
    predicate: Callable[[], bool | Awaitable[bool]], *, deadline: float = 5.0, every: float = 0.005
) -> None:
    """Return as soon as ``predicate()`` is true; raise TimeoutError after ``deadline`` s."""
    async with asyncio.timeout(deadline):
        while True:
            result = predicate()
            if not isinstance(result, bool):
                result = await result
            if result:
                return
            await asyncio.sleep(every)
