"""Run a service until SIGTERM or SIGINT, then let it stop cleanly; or hold signals off.

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


class DeferredSignals:
    """SIGTERM, SIGINT and SIGHUP noted, not obeyed, while something must not be cut short.

    ``unsealer init`` holds the only copy of Vault's new shares between ``sys/init`` and their
    custody: a SIGTERM, a Ctrl-C or a dropped SSH session (SIGHUP) must not end the process
    there. Inside ``with DeferredSignals() as deferred:`` (in the running loop) such a signal
    sets :attr:`received` and the :attr:`arrived` event instead, so the holder can finish or
    rescue what it holds, then honour it. Outside, each signal is back to its previous
    handling. Only SIGKILL (or power loss) remains.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

    def __init__(self) -> None:
        self.received: signal.Signals | None = None
        self.arrived = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def __enter__(self) -> DeferredSignals:
        self._loop = asyncio.get_running_loop()
        for signum in self.SIGNALS:
            self._loop.add_signal_handler(signum, self._note, signum)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None
        for signum in self.SIGNALS:
            self._loop.remove_signal_handler(signum)

    def _note(self, signum: signal.Signals) -> None:
        if self.received is None:
            self.received = signum
        self.arrived.set()
