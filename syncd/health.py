"""The probe endpoints: ``/healthz`` (liveness) and ``/readyz`` (readiness), over aiohttp.

What each one means is chosen for what Kubernetes does with the answer:

- **/healthz** fails only when restarting the process is the cure: the event loop does not
  answer (then the request times out), or a task syncd cannot work without (a cache, the work
  queue, the leader election) has ended although nobody asked it to stop.
- **/readyz** is 200 once every cache has been listed and, with leader election on, this
  replica either leads or is a standby that can read the Lease. A standby is *ready*: syncd
  serves no traffic, so readiness only paces rollouts of its Deployment, and a standby reported
  unready would block a rolling update of two replicas for good (the new pod could never become
  ready while the old one leads).

Answers are plain text (``ok`` or the reason), one line, for ``kubectl describe pod``. The
server logs no access lines: a probe every few seconds would drown the log.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

Check = Callable[[], str | None]  # None when fine, else why not


def parse_address(text: str) -> tuple[str, int]:
    """``host:port`` (``[::]:8080`` for IPv6; ``:8080`` for every interface) as a pair."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not host:port")
    host = host.removeprefix("[").removesuffix("]") or "0.0.0.0"
    return host, int(port)


class HealthServer:
    """Serves the two probes on ``address`` until :meth:`stop`."""

    def __init__(self, *, address: str, alive: Check, ready: Check) -> None:
        self._host, self._port = parse_address(address)
        self._alive = alive
        self._ready = ready
        self._runner: web.AppRunner | None = None
        self.port = self._port  #: the bound port (differs when asked for port 0)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._probe(self._alive))
        app.router.add_get("/readyz", self._probe(self._ready))
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        if runner.addresses:
            self.port = int(runner.addresses[0][1])
        structlog.get_logger("syncd").info("health endpoints", host=self._host, port=self.port)

    @staticmethod
    def _probe(check: Check) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.Response:
            problem = check()
            if problem is None:
                return web.Response(text="ok\n")
            return web.Response(status=503, text=problem + "\n")

        return handler

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
