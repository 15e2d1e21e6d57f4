"""What Kubernetes would refuse is refused before any write, naming the key, never the value.

A Vault key that cannot be a Secret data key ("bad key!") and data over Kubernetes' 1 MiB limit
write nothing: no Secret is created from them, and a synced Secret keeps its last good data.
"""

from __future__ import annotations

from tests.syncd.e2e.world import World


async def test_bad_key_writes_nothing_and_names_the_key(world: World) -> None:
    good, bad = world.value("good"), world.value("bad")
    await world.write_kv("kv-secret/badkey", {"good": good, "bad key!": bad})
    world.vss("badkey", path="kv-secret/badkey")
    world.start_syncd()

    for kind in ("Synced", "Ready"):
        found = await world.wait_condition("badkey", kind, status="False",
                                           reason="InvalidSecretData")
        assert "'bad key!'" in found["message"], found
        assert bad not in found["message"] and good not in found["message"]
    events = await world.eventually(
        lambda: world.events("InvalidSecretData", about="badkey", type="Warning"))
    assert "'bad key!'" in events[0]["message"]
    assert world.secret("badkey") is None  # nothing written, not even the good key
    assert not [r for r in world.syncd_writes() if r.resource == "secrets" and r.namespace == "app"]

    # The way out the message suggests: exclude the key.
    world.vss("badkey", path="kv-secret/badkey",
              destination={"name": "badkey", "create": True,
                           "transformation": {"excludes": ["^bad key!$"], "excludeRaw": True}})
    assert await world.synced("badkey") == {"good": good}


async def test_oversized_data_keeps_the_last_good_data(world: World) -> None:
    small = world.value("small")
    await world.write_kv("kv-secret/big", {"small": small})
    world.vss("big", path="kv-secret/big")
    world.start_syncd()
    await world.synced("big")
    before = world.secret("big")
    assert before is not None

    chunk = world.value("blob")
    blob = chunk * (1024 * 1024 // len(chunk) + 1)  # just over 1 MiB on its own
    await world.write_kv("kv-secret/big", {"small": small, "blob": blob})
    for kind in ("Synced", "Ready"):
        found = await world.wait_condition("big", kind, status="False",
                                           reason="InvalidSecretData")
        assert "blob" in found["message"] and "1 MiB" in found["message"], found
        assert chunk not in found["message"]
    await world.eventually(lambda: world.events("InvalidSecretData", about="big",
                                                type="Warning"))
    after = world.secret("big")
    assert after is not None
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert after["data"] == before["data"]

    # Back under the limit: synced again.
    await world.write_kv("kv-secret/big", {"small": small, "blob": chunk})
    await world.wait_condition("big", "Ready", status="True")
    assert (world.secret_data("big") or {}).get("blob") == chunk
