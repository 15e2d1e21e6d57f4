"""The probe and metrics endpoints of both services, over aiohttp: ``/healthz`` (liveness),
``/readyz`` (readiness) and ``/metrics`` (Prometheus text format).

Each service says what alive and ready mean for it (:mod:`syncd.health`, the unsealer's
``service``); the server only answers. ``/metrics`` renders what the OpenTelemetry
instruments recorded (:func:`plumbing.telemetry.prometheus_exposition`), the same numbers OTLP
exports when it is configured. Answers of the probes are plain text (``ok`` or the reason), one
line, for ``kubectl describe pod``. The server logs no access lines: a probe every few seconds
and a scrape every 30 s would drown the log.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from plumbing.telemetry import prometheus_exposition

Check = Callable[[], str | None]  # None when fine, else why not


def parse_address(text: str) -> tuple[str, int]:
    """``host:port`` (``[::]:8080`` for IPv6; ``:8080`` for every interface) as a pair."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not host:port")
    host = host.removeprefix("[").removesuffix("]") or "0.0.0.0"
    return host, int(port)


def address_option(text: str) -> str:
    """The type of a ``--health-address`` option: ``host:port``, or empty (no server)."""
    if not text.strip():
        return ""
    try:
        parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text.strip()


class HealthServer:
    """Serves the two probes and the metrics on ``address`` until :meth:`stop`."""

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
        app.router.add_get("/metrics", self._metrics)
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
        structlog.get_logger("health").info("health endpoints", host=self._host, port=self.port)

    @staticmethod
    def _probe(check: Check) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.Response:
            problem = check()
            if problem is None:
                return web.Response(text="ok\n")
            return web.Response(status=503, text=problem + "\n")

        return handler

    @staticmethod
    async def _metrics(request: web.Request) -> web.Response:
        # Rendering reads the instruments' current values (the observable gauges' callbacks
        # included): in-memory work of a millisecond or so, done on the loop like the probes.
        body, content_type = prometheus_exposition()
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
