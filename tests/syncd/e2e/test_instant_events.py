"""Instant updates from Vault Enterprise's event notifications (``--instant-updates-source
events``): a rotation arrives within 250 ms with one read, polling falls back to refreshAfter
while the stream is down, and an event never lets a tenant read what its own token cannot."""

from __future__ import annotations

import dataclasses
import time

from syncd.instant import InstantSettings
from tests.syncd.e2e.world import POLICY, World

#: What syncd's token needs for events (Vault 1.16+, as VSO documents it).
EVENTS_POLICY = POLICY + """
path "sys/events/subscribe/kv*" { capabilities = ["read"] }
path "secret/data/kv-secret/*" {
  capabilities = ["list", "subscribe"]
  subscribe_event_types = ["*"]
}
"""
INFO_READS = "/v1/secret/data/kv-secret/info"
#: Propagation target of the issue.
TARGET = 0.25


def events_settings(world: World) -> None:
    world.settings = dataclasses.replace(world.settings, instant_updates=InstantSettings(
        source="events", safety_seconds=3600))


async def rotate(world: World, name: str = "instant", path: str = "kv-secret/info") -> float:
    """Write a new value; the seconds until the destination Secret holds it."""
    value = world.value("rotated")
    started = time.monotonic()
    await world.write_kv(path, {"SECRET_KEY": value})
    await world.kube.wait_for(
        lambda: (world.secret_data(name) or {}).get("SECRET_KEY") == value,
        interval=0.002, timeout=10, message="rotation synced")
    return time.monotonic() - started


def streams(world: World) -> int:
    return world.vault.core.events.connected


async def start(world: World) -> None:
    """syncd with the events source and one instant object, synced, its stream open."""
    await world.set_policy(EVENTS_POLICY)
    events_settings(world)
    await world.write_kv("kv-secret/info", {"SECRET_KEY": world.value("first")})
    world.vss("instant", refreshAfter="1s", syncConfig={"instantUpdates": True})
    world.start_syncd()
    await world.synced("instant")
    await world.eventually(lambda: streams(world) == 1, message="events stream open")


async def test_a_rotation_arrives_within_250ms_with_one_read_and_no_polling(
    world: World,
) -> None:
    # A polled object on another path: its reads (every second) are the test's clock.
    await world.write_kv("other/clock", {"TICK": world.value("tick")})
    world.vss("clock", path="other/clock", refreshAfter="1s")
    await start(world)
    await world.synced("clock")

    # A write nobody references schedules nothing.
    await world.write_kv("kv-secret/unreferenced", {"X": world.value("unreferenced")})
    reads = world.vault.admin.request_count(method="GET", path=INFO_READS)
    elapsed = [await rotate(world, "instant") for _ in range(3)]
    print(f"events: rotation propagated in {', '.join(f'{e * 1000:.0f}' for e in elapsed)} ms")
    assert max(elapsed) < TARGET, elapsed
    # Two polls of the clock object (over a second): the instant object, refreshAfter 1s, was
    # not polled meanwhile (its safety interval is an hour), and read once per write.
    clock = world.vault.admin.request_count(method="GET", path="/v1/secret/data/other/clock")
    await world.eventually(lambda: world.vault.admin.request_count(
        method="GET", path="/v1/secret/data/other/clock") >= clock + 2, message="two polls")
    assert world.vault.admin.request_count(method="GET", path=INFO_READS) == reads + 3


async def test_while_the_stream_is_down_polling_takes_over_then_events_resume(
    world: World,
) -> None:
    await start(world)

    node = world.vault.nodes[0]
    refused = node.faults.add(method="GET", path="/v1/sys/events/subscribe/*", status=503,
                              errors=["Vault is sealed"])
    world.vault.core.events.disconnect_all()
    await world.eventually(lambda: streams(world) == 0, message="stream closed")
    # No stream: the write arrives by polling at refreshAfter (1 s), not at the safety hour.
    polled = await rotate(world, "instant")
    assert streams(world) == 0 and node.faults.rules()
    assert world.vault.admin.request_count(path="/v1/sys/events/subscribe/*") >= 2  # retried
    print(f"events down: rotation propagated by polling in {polled * 1000:.0f} ms")

    node.faults.remove(refused.id)
    await world.eventually(lambda: streams(world) == 1, deadline=15, message="stream back")
    assert await rotate(world, "instant") < TARGET


async def test_an_event_never_lets_a_tenant_read_what_its_token_cannot(world: World) -> None:
    """Tenant ``team-b`` references the same path with a token that may hear about it
    (subscribe) but not read it: the event schedules team-b's object, whose read is refused
    with team-b's own token — its Secret never gets the value, however events are routed."""
    await world.set_policy(EVENTS_POLICY)
    events_settings(world)
    client = world.vault_client()
    await world.vault_call(client.sys.create_or_update_policy, name="team-b", policy="""
        path "sys/events/subscribe/kv*" { capabilities = ["read"] }
        path "secret/data/kv-secret/*" {
          capabilities = ["list", "subscribe"]
          subscribe_event_types = ["kv-v2/*"]
        }
    """)
    token_b = (await world.vault_call(client.auth.token.create, policies=["team-b"],
                                      ttl="1h"))["auth"]["client_token"]
    world.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-b"}})
    world.apply({"apiVersion": "v1", "kind": "Secret",
                 "metadata": {"name": "vault-token", "namespace": "team-b"},
                 "type": "secrets.vault-syncd.dev/vault-token", "stringData": {"token": token_b}})
    world.apply({"apiVersion": "secrets.vault-syncd.dev/v1beta1", "kind": "VaultAuth",
                 "metadata": {"name": "own", "namespace": "team-b"},
                 "spec": {"method": "token",
                          "token": {"secretRef": {"name": "vault-token", "key": "token"}}}})
    await world.write_kv("kv-secret/info", {"SECRET_KEY": world.value("first")})
    world.vss("instant", refreshAfter="1h", syncConfig={"instantUpdates": True})
    world.vss("stolen", namespace="team-b", refreshAfter="1h", vaultAuthRef="own",
              syncConfig={"instantUpdates": True})
    world.start_syncd()
    await world.synced("instant")
    await world.eventually(
        lambda: world.condition("stolen", "Ready", namespace="team-b").get("status") == "False",
        message="team-b refused")
    await world.eventually(lambda: streams(world) == 2, message="one stream per login")

    denied = world.vault.admin.request_count(method="GET", path=INFO_READS)
    assert await rotate(world, "instant") < TARGET
    # team-b's object was scheduled by its own stream and read with its own token: refused.
    await world.eventually(
        lambda: world.vault.admin.request_count(method="GET", path=INFO_READS) >= denied + 2,
        message="team-b's own (refused) read")
    assert world.secret("stolen", namespace="team-b") is None
    reason = world.condition("stolen", "Ready", namespace="team-b").get("reason")
    assert reason in ("SourceForbidden", "PermissionDenied", "VaultPermissionDenied"), reason


async def test_a_soft_delete_sends_syncd_no_event_so_only_polling_sees_it(world: World) -> None:
    """Vault sends events without a data_path (delete, destroy, data-delete, metadata-delete)
    to root tokens only: syncd's own token, with the documented policy, never hears of a
    soft delete, and the object is read at its next (safety) poll, not at once."""
    await world.write_kv("other/clock", {"TICK": world.value("tick")})
    world.vss("clock", path="other/clock", refreshAfter="1s")
    await start(world)
    await world.synced("clock")
    reads = world.vault.admin.request_count(method="GET", path=INFO_READS)
    client = world.vault_client()
    await world.vault_call(client.secrets.kv.v2.delete_latest_version_of_secret,
                           path="kv-secret/info")
    clock = world.vault.admin.request_count(method="GET", path="/v1/secret/data/other/clock")
    await world.eventually(lambda: world.vault.admin.request_count(
        method="GET", path="/v1/secret/data/other/clock") >= clock + 2, message="two polls")
    assert world.vault.admin.request_count(method="GET", path=INFO_READS) == reads
    # A write of the same path is a data-write, with a data path: heard at once.
    assert await rotate(world, "instant") < TARGET
