"""Leader election: two replicas, one works; the other takes over when the leader goes.

Each replica talks to Kubernetes as its own ServiceAccount (bound to the same roles by
rbac.yaml, see ``World.replica``), so the testbed's request log shows who did what. Timings
are short (``LEASE_TIMINGS``: lease 2 s, renew deadline 1.5 s, retry 0.25 s).
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from syncd.leadership import LeadershipLost
from tests.syncd.e2e.test_shutdown import _syncd_tasks
from tests.syncd.e2e.world import LEASE_TIMINGS, OPERATOR_NS, World

READS = frozenset({"get", "list", "watch"})
LEASE = LEASE_TIMINGS["lease_duration_seconds"]


def _user(name: str) -> str:
    return f"system:serviceaccount:{OPERATOR_NS}:{name}"


def _logged(world: World, event: str, identity: str) -> bool:
    for line in world.logs.getvalue().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == event and entry.get("replica") == identity:
            return True
    return False


async def _two_replicas(world: World) -> tuple[asyncio.Task[None], asyncio.Task[None]]:
    """syncd-a leading (started first, so the order is known), syncd-b standing by."""
    a = world.start_syncd(world.replica("syncd-a"))
    await world.eventually(lambda: world.lease_holder() == "syncd-a", message="a leads")
    b = world.start_syncd(world.replica("syncd-b"))
    await world.eventually(lambda: _logged(world, "standby: another replica leads", "syncd-b"),
                           message="b stands by")
    return a, b


async def test_one_replica_works_and_the_standby_takes_over_after_a_clean_stop(
    world: World,
) -> None:
    await world.write_kv("kv-secret/info", {"password": world.value("v1")})
    world.deployment("web", secret="app-secret")
    world.vss("app-secret", rolloutRestartTargets=[{"kind": "Deployment", "name": "web"}])
    a, _ = await _two_replicas(world)
    await world.synced("app-secret")
    rotated = world.value("v2")
    await world.write_kv("kv-secret/info", {"password": rotated})
    await world.eventually(lambda: world.restarts("web") == 1, message="the rotation restart")
    await world.eventually(lambda: (world.secret_data("app-secret") or {}).get("password")
                           == rotated)

    # Only the leader wrote; the standby only read (its caches) and looked at the Lease.
    assert {r.verb for r in world.requests_of(_user("syncd-a"))} - READS
    standby = world.requests_of(_user("syncd-b"), leases=True)
    assert {r.verb for r in standby if not r.resource.startswith("leases.")} <= READS
    assert {r.verb for r in standby if r.resource.startswith("leases.")} == {"get"}
    assert world.lease_holder() == "syncd-a"

    # A clean stop releases the Lease: b leads at its next retry, long before the lease ends.
    stopped = time.monotonic()
    await world.stop_one(a)
    assert world.lease_holder() in ("", "syncd-b")
    await world.eventually(lambda: world.lease_holder() == "syncd-b", deadline=LEASE,
                           message="b leads")
    assert time.monotonic() - stopped < LEASE

    # b syncs a change made after the takeover, and restarts the workload once for it.
    before = len(world.requests_of(_user("syncd-b")))
    third = world.value("v3")
    await world.write_kv("kv-secret/info", {"password": third})
    await world.eventually(lambda: (world.secret_data("app-secret") or {}).get("password")
                           == third, message="b synced v3")
    await world.eventually(lambda: world.restarts("web") == 2, message="b restarted web")
    writes = [r for r in world.requests_of(_user("syncd-b"))[before:] if r.verb not in READS]
    assert {r.resource for r in writes} >= {"secrets", "deployments.apps"}
    # No restart for data the workload already runs: b did not repeat a's restart.
    await world.wait_condition("app-secret", "RolloutRestart", status="True")
    assert world.restarts("web") == 2


async def test_the_standby_takes_over_within_the_lease_duration_after_a_crash(
    world: World,
) -> None:
    await world.write_kv("kv-secret/info", {"password": world.value("v1")})
    world.vss("app-secret")
    a, _ = await _two_replicas(world)
    await world.synced("app-secret")

    crashed = time.monotonic()
    await world.stop_one(a, crash=True)  # no release: the Lease must run out
    assert world.lease_holder() == "syncd-a"
    await world.eventually(lambda: world.lease_holder() == "syncd-b",
                           deadline=LEASE + 2, message="b leads")
    took = time.monotonic() - crashed
    assert took >= LEASE - 0.5, f"b took the Lease of a live-looking leader after {took:.1f} s"
    assert took < LEASE + LEASE_TIMINGS["retry_period_seconds"] + 1.0

    changed = world.value("after-crash")
    await world.write_kv("kv-secret/info", {"password": changed})
    await world.eventually(lambda: (world.secret_data("app-secret") or {}).get("password")
                           == changed, message="b synced the change")


async def test_a_leader_that_cannot_renew_stops_working_and_exits(world: World) -> None:
    await world.write_kv("kv-secret/info", {"password": world.value("v1")})
    world.vss("app-secret")
    a = world.start_syncd(world.replica("syncd-a"))
    await world.synced("app-secret")
    assert world.lease_holder() == "syncd-a"

    world.kube.faults.error(503, resource="leases.coordination.k8s.io")
    cut = time.monotonic()
    done, _ = await asyncio.wait([a], timeout=LEASE_TIMINGS["renew_deadline_seconds"] + 3)
    assert done, "the leader kept running without its Lease"
    took = time.monotonic() - cut
    assert took < LEASE, f"it stopped after {took:.1f} s, when a standby could already lead"
    with pytest.raises(LeadershipLost):
        a.result()
    world.tasks.remove(a)
    world.stops.pop()
    assert '"why": "leadership lost"' in world.logs.getvalue()
    world.kube.faults.clear()

    # Stopped for good: run() returned, and not one of its tasks is left to work.
    assert _syncd_tasks() == []
