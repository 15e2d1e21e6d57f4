"""The unsealer's health port: ``/healthz``, ``/readyz`` and ``/metrics`` (Prometheus text
format, parsed by prometheus-client's parser) while it unseals, and while a pod stays sealed
because custodians are gone; every unsealer metric an alert or the dashboard uses is in the
scrape."""

from __future__ import annotations

import dataclasses

import aiohttp

from testbed.waiting import until
from tests.deploy.metrics import referenced, scrape, value
from tests.unsealer.e2e.conftest import world  # noqa: F401  (the fixture)
from tests.unsealer.e2e.world import CUSTODY_NS, World, free_port


async def _get(port: int, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, \
            session.get(f"http://127.0.0.1:{port}{path}") as response:
        return response.status, await response.text()


async def test_probes_and_metrics_while_unsealing_and_while_sealed(
    world: World,  # noqa: F811
) -> None:
    port = free_port()
    world.start_unsealer(dataclasses.replace(world.settings, health_address=f"127.0.0.1:{port}"))
    await world.eventually(lambda: not any(world.sealed(n) for n in range(3)),
                           message="every pod unsealed")
    assert await _get(port, "/healthz") == (200, "ok\n")
    assert await _get(port, "/readyz") == (200, "ok\n")
    _, text, samples = await scrape(port)
    assert value(samples, "unsealer_attempts_total", result="Unsealed", transport="https") == 3
    assert value(samples, "unsealer_time_to_unseal_seconds_count") == 3
    assert value(samples, "unsealer_sealed_pods") == 0
    assert value(samples, "unsealer_sealed_duration_seconds") == 0
    assert value(samples, "unsealer_custodians_reachable") == 3
    assert value(samples, "unsealer_custodians_configured") == 3

    # Two of the three custodians go (the Secret deleted, the file's disk not mounted): a pod
    # that seals now stays sealed, and the metrics the alerts read say so.
    world.kube.admin.delete("v1", "Secret", "unseal-shares", CUSTODY_NS)
    world.share_file.rename(world.share_file.with_name("unmounted"))
    await world.restart_vault(1)

    async def failing() -> bool:
        _, _, now = await scrape(port)
        return (value(now, "unsealer_attempts_total", result="NotEnoughShares") or 0) >= 1 \
            and (value(now, "unsealer_sealed_duration_seconds") or 0) > 0

    await until(failing, deadline=15, every=0.1)
    _, text, samples = await scrape(port)
    assert value(samples, "unsealer_sealed_pods") == 1
    assert value(samples, "unsealer_custodians_reachable") == 1
    assert world.sealed(1)

    names = {name for name, _ in samples}
    missing = referenced("unsealer_") - names
    assert referenced("unsealer_"), "the alerts and dashboard use the unsealer's metrics"
    assert not missing, f"alerts or dashboard use metrics the unsealer does not export: {missing}"
    for form in world.share_forms():
        assert form not in text
