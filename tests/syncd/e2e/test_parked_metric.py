"""``syncd_vault_parked_objects`` at ``/metrics``: how many objects wait for their
VaultConnection to answer again (:mod:`syncd.outages`), while it is down and not after."""

from __future__ import annotations

import dataclasses

from testbed.waiting import until
from tests.deploy.metrics import scrape, value
from tests.syncd.e2e.world import OPERATOR_NS, World

OBJECTS = 3
WAITING = "waiting for Vault to answer again"


async def test_parked_objects_are_a_gauge_per_vault_connection(world: World) -> None:
    world.settings = dataclasses.replace(world.settings, health_address="127.0.0.1:0")
    await world.write_kv("kv-secret/info", {"password": world.value("parked")})
    names = [f"p{i}" for i in range(OBJECTS)]
    for name in names:
        world.vss(name)
    world.start_syncd()
    for name in names:
        await world.synced(name)
    await world.eventually(lambda: world.probes, message="the health server")
    port = world.probes[0].port
    labels = {"vault_connection_namespace": OPERATOR_NS, "vault_connection_name": "default"}

    async def parked(expected: float | None) -> bool:
        _, _, samples = await scrape(port)
        return value(samples, "syncd_vault_parked_objects", **labels) == expected

    assert await parked(None)  # nothing is down: no series

    world.vault.admin.seal()
    for name in names:
        await world.eventually(lambda n=name: WAITING in world.condition(n, "Ready").get(
            "message", ""), message=f"{name} parked")
    await until(lambda: parked(OBJECTS), deadline=5, every=0.05)
    _, text, _ = await scrape(port)
    assert not world.leaks([text])

    world.vault.admin.unseal(world.unseal_keys)
    for name in names:
        await world.wait_condition(name, "Ready", status="True")
    await until(lambda: parked(None), deadline=5, every=0.05)

