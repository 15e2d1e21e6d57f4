"""A server that answers like a sealed Vault and keeps every request: the hostile party.

It stands where an attacker would put it: at a pod IP (a pod they created with Vault's labels,
or an address a Vault pod is given), over plain http or over TLS with a certificate of their
choosing, reporting whatever threshold they like. It never unseals; it only collects, and the
tests count what it collected.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from aiohttp import web


@dataclass
class RogueVault:
    host: str
    port: int
    ssl_context: ssl.SSLContext | None = None
    threshold: int = 3
    shares: int = 5
    #: (method, path) of every request that reached the HTTP layer.
    requests: list[tuple[str, str]] = field(default_factory=list)
    #: The ``key`` of every ``sys/unseal`` request: the shares it collected.
    keys: list[str] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    def _status(self) -> dict[str, Any]:
        return {"type": "shamir", "initialized": True, "sealed": True, "t": self.threshold,
                "n": self.shares, "progress": len(self.keys) % self.threshold,
                "nonce": "0f0f0f0f-rogue" if self.keys else "", "version": "1.18.3",
                "build_date": "2024-12-16T14:00:53Z", "migration": False,
                "recovery_seal": False, "storage_type": "raft"}

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path))
        if request.path == "/v1/sys/unseal" and request.method in ("PUT", "POST"):
            body = await request.json()
            if isinstance(body, dict) and body.get("key"):
                self.keys.append(str(body["key"]))
        return web.json_response(self._status())

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port,
                          ssl_context=self.ssl_context).start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
