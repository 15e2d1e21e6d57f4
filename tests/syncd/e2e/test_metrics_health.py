"""Metrics (read back through the SDK's in-memory reader) and the probe endpoints over HTTP."""

from __future__ import annotations

import dataclasses
from typing import Any

import aiohttp
import pytest

from syncd.health import parse_address
from tests.syncd.e2e.world import LEASE_TIMINGS, World


def _with_probes(world: World, **changes: Any) -> None:
    world.settings = dataclasses.replace(
        world.settings, leader_elect=True, health_address="127.0.0.1:0",
        **{**LEASE_TIMINGS, **changes},
    )


async def _get(port: int, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, \
            session.get(f"http://127.0.0.1:{port}{path}") as response:
        return response.status, await response.text()


async def test_syncs_restarts_reads_and_queue_are_counted(world: World) -> None:
    _with_probes(world)
    await world.write_kv("kv-secret/info", {"password": world.value("m1")})
    world.deployment("web", secret="app-secret")
    world.vss("app-secret", rolloutRestartTargets=[{"kind": "Deployment", "name": "web"}])
    world.vss("gone", path="kv-secret/does-not-exist")
    world.start_syncd()
    await world.synced("app-secret")
    await world.wait_condition("gone", "Synced", status="False", reason="SecretNotFound")
    await world.write_kv("kv-secret/info", {"password": world.value("m2")})
    await world.eventually(lambda: world.restarts("web") == 1, message="the rotation restart")
    await world.eventually(
        lambda: world.metric("syncd.syncs").get((("outcome", "Unchanged"),), 0) >= 1,
        message="an unchanged refresh counted")

    syncs = world.metric("syncd.syncs")
    assert syncs[(("outcome", "SecretSynced"),)] == 1
    assert syncs[(("outcome", "SecretRotated"),)] == 1
    assert syncs[(("outcome", "SecretNotFound"),)] >= 1  # raised, retried: counted by reason
    assert world.metric("syncd.rollout.restarts") == {
        (("kind", "Deployment"), ("result", "Restarted")): 1}
    reads = world.metric("syncd.vault.reads")
    assert reads[(("result", "ok"),)] >= 3 and reads[(("result", "SecretNotFound"),)] >= 1
    durations = world.metric("syncd.reconcile.duration")  # the number of reconciles timed
    assert durations[(("outcome", "SecretSynced"),)] == 1
    assert durations[(("outcome", "SecretRotated"),)] == 1
    assert durations[(("outcome", "SecretNotFound"),)] >= 1
    assert set(world.metric("syncd.queue.depth")) == {(("state", "waiting"),),
                                                      (("state", "running"),)}
    assert world.metric("syncd.leader") == {(): 1.0}


async def test_probes_answer_over_http(world: World) -> None:
    _with_probes(world)
    await world.write_kv("kv-secret/info", {"password": world.value("h1")})
    world.vss("app-secret")
    # Hold the first list of VaultStaticSecrets: the caches are not synced meanwhile.
    held = world.kube.faults.latency(
        2.0, verbs=["list"], resource="vaultstaticsecrets.secrets.vault-syncd.dev", times=1)
    leader = world.start_syncd()
    await world.eventually(lambda: world.probes, message="the probe server")
    port = world.probes[0].port
    await world.eventually(lambda: held.hits == 1, message="the list held")
    assert await _get(port, "/healthz") == (200, "ok\n")
    status, text = await _get(port, "/readyz")
    assert status == 503 and "caches not synced: vaultstaticsecrets" in text

    await world.synced("app-secret")
    assert await _get(port, "/readyz") == (200, "ok\n")
    assert await _get(port, "/healthz") == (200, "ok\n")

    # A standby is ready too (see syncd/health.py for why).
    world.start_syncd(world.replica("standby", health_address="127.0.0.1:0"))
    await world.eventually(lambda: len(world.probes) == 2, message="the standby's probes")
    standby_port = world.probes[1].port
    await world.eventually(
        lambda: '"event": "standby: another replica leads"' in world.logs.getvalue())
    assert await _get(standby_port, "/readyz") == (200, "ok\n")
    assert await _get(standby_port, "/healthz") == (200, "ok\n")

    await world.stop_one(leader)
    with pytest.raises(aiohttp.ClientConnectionError):
        await _get(port, "/healthz")


def test_health_address_parsing() -> None:
    assert parse_address("0.0.0.0:8080") == ("0.0.0.0", 8080)
    assert parse_address(":9000") == ("0.0.0.0", 9000)
    assert parse_address("[::]:8080") == ("::", 8080)
    for bad in ("8080", "host:", "host:http", "host:70000"):
        with pytest.raises(ValueError):
            parse_address(bad)
