"""Run a service until SIGTERM or SIGINT, then let it stop cleanly.

Kubernetes sends SIGTERM and waits ``terminationGracePeriodSeconds`` before SIGKILL. The
service's main coroutine receives a ``stop`` event instead of being cancelled outright, so it
can stop taking work, finish in-flight work within its grace period and close its clients. A
second signal cancels the main task: someone is impatient, and they are right to be.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

Main = Callable[[asyncio.Event], Awaitable[None]]


async def run_until_signalled(main: Main) -> None:
    """Run ``main(stop)``; the first SIGTERM/SIGINT sets ``stop``, the second cancels."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    task = asyncio.ensure_future(main(stop))

    def on_signal() -> None:
        if stop.is_set():
            task.cancel()
        stop.set()

    signals = (signal.SIGTERM, signal.SIGINT)
    for signum in signals:
        loop.add_signal_handler(signum, on_signal)
    try:
        await task
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


def serve(*, prog: str, version: str, log_format: str, log_level: str, main: Main) -> None:
    """Set up telemetry, then run ``main`` until signalled; the whole life of a service process.

    A telemetry misconfiguration ends the process the way a bad option does: one line, exit 2.
    """
    from plumbing.options import fail  # noqa: PLC0415
    from plumbing.telemetry import TelemetryError, configure  # noqa: PLC0415

    try:
        telemetry = configure(
            service_name=prog,
            service_version=version,
            log_format="console" if log_format == "console" else "json",
            log_level=log_level,
        )
    except TelemetryError as exc:
        fail(prog, str(exc))
    try:
        asyncio.run(run_until_signalled(main))
    finally:
        telemetry.shutdown()
