"""Notifications from ``unsealer run`` to local webhook receivers: a generic JSON one and a
Slack-compatible one. A person learns each pod sealed and unsealed, and once (not per retry)
that one could not be; a receiver that fails is retried, one that hangs delays nothing; no
share, root token or share fingerprint is in any notification, and no webhook URL in a log."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from tests.unsealer.e2e.world import CUSTODY_NS, World, free_port
from unsealer.notifications import Target


@dataclass
class Receiver:
    """A webhook receiver on loopback that keeps every body; ``fail_first`` requests get 503,
    and with ``hang`` no request is ever answered."""

    fail_first: int = 0
    hang: bool = False
    bodies: list[dict[str, Any]] = field(default_factory=list)
    requests: int = 0
    port: int = field(default_factory=free_port)
    _runner: web.AppRunner | None = None

    def url(self, path: str = "/hooks/T0001/B0002/s3cr3t-webhook-token") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.hang:
            await asyncio.Event().wait()
        if self.requests <= self.fail_first:
            return web.Response(status=503)
        self.bodies.append(await request.json())
        return web.Response(text="ok")

    def events(self) -> list[tuple[str, str]]:
        return [(b["event"], b["pod"]) for b in self.bodies]

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def _fingerprints(world: World) -> set[str]:
    return {str(s.attributes["unsealer.share.fingerprint"])
            for s in world.spans.get_finished_spans()
            if s.attributes and "unsealer.share.fingerprint" in s.attributes}


async def test_seal_and_unseal_are_told_to_both_kinds_of_webhook(world: World) -> None:
    async with Receiver(fail_first=2) as generic, Receiver() as slack:
        targets = (Target(url=generic.url()), Target(url=slack.url("/slack/token"), slack=True))
        world.start_unsealer(dataclasses.replace(world.settings, notify=targets))
        everyone = {(event, f"vault-{n}") for n in range(3) for event in ("sealed", "unsealed")}
        await world.eventually(lambda: set(generic.events()) == everyone,
                               message="sealed and unsealed told for every pod")
        await world.eventually(lambda: len(slack.bodies) == 6, message="the Slack webhook")

    assert generic.requests >= 8  # two refusals (503), retried
    first = next(b for b in generic.bodies if b["event"] == "unsealed")
    assert first["source"] == "vault-unsealer" and first["namespace"] == "vault"
    assert first["reason"] == "Unsealed" and "unsealed with shares from" in first["message"]
    assert set(first) == {"source", "event", "namespace", "pod", "reason", "message", "time"}
    assert all(set(b) == {"text"} for b in slack.bodies)
    assert sum(":unlock: Vault pod vault/vault-" in b["text"] for b in slack.bodies) == 3

    sent = json.dumps(generic.bodies + slack.bodies)
    fingerprints = _fingerprints(world)
    assert fingerprints, "the spans name the shares by fingerprint"
    for secret in [*world.share_forms(), *fingerprints]:
        assert secret not in sent
    # The webhooks' paths are their credentials: never in a log line.
    assert "s3cr3t-webhook-token" not in world.captured()
    assert "/slack/token" not in world.captured()


async def test_a_failure_is_told_once_per_reason_and_a_hanging_webhook_delays_nothing(
    world: World,
) -> None:
    async with Receiver() as told, Receiver(hang=True) as hanging:
        targets = (Target(url=hanging.url()), Target(url=told.url()))
        world.start_unsealer(dataclasses.replace(world.settings, notify=targets,
                                                 backoff_max_seconds=0.2))
        started = time.monotonic()
        await world.eventually(lambda: not any(world.sealed(n) for n in range(3)),
                               message="every pod unsealed, whatever the webhooks do")
        assert time.monotonic() - started < 5

        # Two of the three custodians go: vault-1 seals and stays sealed, retried every 0.2 s.
        world.kube.admin.delete("v1", "Secret", "unseal-shares", CUSTODY_NS)
        world.share_file.rename(world.share_file.with_name("unmounted"))
        await world.restart_vault(1)
        await world.eventually(
            lambda: ("unseal_failed", "vault-1") in told.events(), message="the failure told")
        attempts = len(world.log_records("unseal failed"))
        await world.eventually(lambda: len(world.log_records("unseal failed")) >= attempts + 3,
                               message="three more failed attempts")
        failure = next(b for b in told.bodies if b["event"] == "unseal_failed")
        assert failure["reason"] == "NotEnoughShares"
        assert "unreachable custodians" in failure["message"]
        assert told.events().count(("unseal_failed", "vault-1")) == 1

        stopping = time.monotonic()
        await world.stop_unsealer()
        assert time.monotonic() - stopping < 10  # the hanging webhook does not hold it up
