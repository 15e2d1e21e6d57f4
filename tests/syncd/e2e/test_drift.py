"""Drift, restarts of syncd and watch gaps: the Secret is put right, and nothing else moves.

- A managed Secret edited or deleted by someone else is restored from the watch, long before
  the next refresh (``refreshAfter: 1h`` here), with an Event, and without restarting workloads:
  the data they run with never changed.
- Restarting syncd restarts no workload and writes nothing: the fingerprints in the statuses
  already match.
- A watch that cannot resume (410 Expired) is followed by a fresh list whose differences are
  handled like watch events, so a change made in the gap is not missed.
"""

from __future__ import annotations

import base64

from tests.syncd.e2e.world import APP_NS, World


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def test_drift_is_repaired_from_the_watch_without_restarts(world: World) -> None:
    value = world.value("drift")
    await world.write_kv("kv-secret/info", {"password": value})
    world.deployment("web", secret="drifty")
    world.vss("drifty", refreshAfter="1h",
              rolloutRestartTargets=[{"kind": "Deployment", "name": "web"}])
    world.start_syncd()
    await world.synced("drifty")
    mac = world.status("drifty")["secretMAC"]

    # Edited by someone else: restored at once (the next refresh is an hour away).
    world.kube.admin.patch("v1", "Secret", "drifty", {"data": {"password": _b64("tampered")},
                                                     "metadata": {"labels": {"seen": "yes"}}},
                           namespace=APP_NS)
    await world.eventually(
        lambda: (world.secret_data("drifty") or {}).get("password") == value, deadline=3,
        message="the edited Secret restored")
    edited = await world.eventually(
        lambda: world.events("SecretRestored", about="drifty", type="Normal"),
        message="an Event about the repair")
    assert "tampered" not in edited[0]["message"]
    # The repair is a PUT built from syncd's cache, which keeps no managedFields: the
    # server's stay (an update without them leaves them alone), so the editor still owns the
    # label it added, which syncd kept.
    restored = world.secret("drifty") or {}
    assert restored["metadata"]["labels"]["seen"] == "yes"
    managers = {e["manager"] for e in restored["metadata"]["managedFields"]}
    assert "testbed-admin" in managers, managers

    # Deleted by someone: recreated at once, and that is told too.
    world.kube.admin.delete("v1", "Secret", "drifty", APP_NS)
    await world.eventually(
        lambda: (world.secret_data("drifty") or {}).get("password") == value, deadline=3,
        message="the deleted Secret recreated")
    await world.eventually(
        lambda: len(world.events("SecretRestored", about="drifty", type="Normal")) == 2,
        message="a second Event, about the recreation")
    recreated = world.secret("drifty") or {}
    assert recreated["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "vault-syncd"
    assert [r["name"] for r in recreated["metadata"]["ownerReferences"]] == ["drifty"]

    # The data the pods run with never changed: no restart, the same fingerprint.
    assert world.restarts("web") == 0
    assert world.status("drifty")["secretMAC"] == mac
    assert world.condition("drifty", "Ready")["status"] == "True"


async def test_restarting_syncd_restarts_nothing_and_writes_nothing(world: World) -> None:
    await world.write_kv("kv-secret/info", {"password": world.value("v1")})
    world.deployment("web", secret="app-secret")
    world.vss("app-secret", rolloutRestartTargets=[{"kind": "Deployment", "name": "web"}])
    world.start_syncd()
    await world.synced("app-secret")
    rotated = world.value("v2")
    await world.write_kv("kv-secret/info", {"password": rotated})
    await world.eventually(lambda: world.restarts("web") == 1, message="the rotation restart")
    await world.wait_condition("app-secret", "RolloutRestart", status="True")
    await world.stop_syncd()

    writes = len(world.syncd_writes())
    events = len(world.all_events())
    status = world.status("app-secret")
    secret_rv = (world.secret("app-secret") or {})["metadata"]["resourceVersion"]
    reconciles = len(world.spans_named("reconcile"))

    world.start_syncd()
    await world.wait_started(count=2)
    # Several reconciles of the restarted syncd (the first one, then refreshes).
    await world.eventually(lambda: len(world.spans_named("reconcile")) >= reconciles + 3,
                           message="the restarted syncd reconciled three times")
    assert world.syncd_writes()[writes:] == []
    assert len(world.all_events()) == events
    assert world.status("app-secret") == status
    assert (world.secret("app-secret") or {})["metadata"]["resourceVersion"] == secret_rv
    assert world.restarts("web") == 1
    assert (world.secret_data("app-secret") or {})["password"] == rotated


async def test_changes_during_a_watch_gap_are_not_missed(world: World) -> None:
    """Both watches (Secrets, VaultStaticSecrets) are cut; their reconnection is slowed down,
    and answered 410 Expired, so the informers must list again. In the gap the managed Secret
    is deleted and another VaultStaticSecret's spec changes."""
    value = world.value("gap")
    await world.write_kv("kv-secret/info", {"password": value})
    await world.write_kv("other/info", {"other": world.value("other")})
    world.vss("gap-secret", refreshAfter="1h")
    world.vss("gap-spec", refreshAfter="1h")
    resources = ("secrets", "vaultstaticsecrets.secrets.vault-syncd.dev")
    for resource in resources:  # the first watch of each is cut after 1.5 s
        world.kube.faults.drop_watch(after_seconds=1.5, verbs=["watch"], resource=resource,
                                     times=1)
    world.start_syncd()
    await world.synced("gap-secret")
    await world.synced("gap-spec")

    def watches(resource: str) -> int:
        return world.kube.requests.count("watch", resource)

    # From now on, the next watch of each waits 1 s, then is told its history is gone.
    assert all(watches(r) == 1 for r in resources)
    for resource in resources:
        world.kube.faults.latency(1.0, verbs=["watch"], resource=resource, times=1)
        world.kube.faults.expire_watch(verbs=["watch"], resource=resource, times=1)
    await world.eventually(lambda: all(watches(r) == 2 for r in resources), deadline=5,
                           message="both watches cut and reconnecting")

    # The gap: nothing syncd watches is connected.
    world.kube.admin.delete("v1", "Secret", "gap-secret", APP_NS)
    world.vss("gap-spec", refreshAfter="1h", path="other/info")

    await world.eventually(
        lambda: (world.secret_data("gap-secret") or {}).get("password") == value, deadline=5,
        message="the Secret deleted in the gap is recreated")
    await world.eventually(
        lambda: "other" in (world.secret_data("gap-spec") or {}), deadline=5,
        message="the spec changed in the gap is synced")
    assert world.logs.getvalue().count("watch expired, listing again") >= 2
    assert all(watches(r) >= 3 for r in resources)  # and watching again after the list
