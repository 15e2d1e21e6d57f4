"""A failure keeps the last good data: every way a Vault read can fail, and the recovery.

Each failure must leave the destination Secret exactly as it was (same data, same
resourceVersion: not written, not blanked, not deleted), restart nothing, and say what is wrong
on the Synced and Ready conditions and in a Warning Event. Once the cause is gone the secret is
synced again, with the right data.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from tests.syncd.e2e.world import GROUP_VERSION, OPERATOR_NS, POLICY, World

Step = Callable[[], Awaitable[Any]]


@dataclass
class Case:
    name: str  # the VaultStaticSecret, its Secret and its Deployment
    reason: str
    fail: Step
    heal: Step
    restarts_after_heal: int = 0  # a heal with new data is a real change: one restart


def _path(name: str) -> str:
    return f"kv-secret/{name}"


def _set_connection_timeout(world: World, seconds: str) -> None:
    world.apply({
        "apiVersion": GROUP_VERSION, "kind": "VaultConnection",
        "metadata": {"name": "default", "namespace": OPERATOR_NS},
        "spec": {"address": world.vault.address, "timeout": seconds},
    })


async def _start_synced(world: World, cases: list[Case]) -> dict[str, dict[str, Any]]:
    """Sync every case's secret once; their Secrets as first written."""
    for case in cases:
        await world.write_kv(_path(case.name), {"password": world.value(case.name)})
        world.deployment(case.name, secret=case.name)
        world.vss(case.name, path=_path(case.name),
                  rolloutRestartTargets=[{"kind": "Deployment", "name": case.name}])
    world.start_syncd()
    first = {}
    for case in cases:
        await world.synced(case.name)
        first[case.name] = world.secret(case.name)
    return first


async def _check_failure_keeps_data(
    world: World, case: Case, before: dict[str, Any]
) -> None:
    for kind in ("Synced", "Ready"):
        found = await world.wait_condition(case.name, kind, status="False", reason=case.reason)
        assert _path(case.name) in found["message"], found
    await world.eventually(
        lambda: world.events(case.reason, about=case.name, type="Warning"),
        message=f"a Warning Event {case.reason} about {case.name}",
    )
    secret = world.secret(case.name)
    assert secret is not None, f"{case.name}: the Secret was deleted on {case.reason}"
    assert secret["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"], (
        f"{case.name}: the Secret was written on {case.reason}")
    assert secret["data"] == before["data"]
    assert world.restarts(case.name) == 0


async def _check_recovery(world: World, case: Case, expected: str) -> None:
    await world.wait_condition(case.name, "Synced", status="True")
    await world.wait_condition(case.name, "Ready", status="True")
    assert (world.secret_data(case.name) or {}).get("password") == expected
    await world.eventually(
        lambda: world.restarts(case.name) == case.restarts_after_heal,
        message=f"{case.name}: {case.restarts_after_heal} restart(s) after the heal",
    )


async def test_vault_read_failures_keep_the_last_good_data(world: World) -> None:
    """404 (path gone), soft-deleted and destroyed latest version, 403 on the path, a read
    timeout and a connection reset — side by side, with a healthy secret next to them."""
    _set_connection_timeout(world, "1s")  # the latency fault below outlasts it
    client = world.vault_client()
    kv = client.secrets.kv.v2
    new_values: dict[str, str] = {}
    faults: list[Any] = []

    async def rewrite(name: str) -> None:
        new_values[name] = world.value(name + "-new")
        await world.write_kv(_path(name), {"password": new_values[name]})

    async def add_fault(**kwargs: Any) -> None:
        faults.extend(world.vault.admin.add_fault(**kwargs))

    async def clear_faults() -> None:
        for fault in faults:
            for node in world.vault.admin.nodes:
                node.faults.remove(fault.id)

    cases = [
        Case("gone", "SecretNotFound",
             fail=lambda: world.vault_call(kv.delete_metadata_and_all_versions,
                                           path=_path("gone"), mount_point="secret"),
             heal=lambda: rewrite("gone"), restarts_after_heal=1),
        Case("soft-deleted", "SourceDeleted",
             fail=lambda: world.vault_call(kv.delete_latest_version_of_secret,
                                           path=_path("soft-deleted"), mount_point="secret"),
             heal=lambda: world.vault_call(kv.undelete_secret_versions, versions=[1],
                                           path=_path("soft-deleted"), mount_point="secret")),
        Case("destroyed", "SourceDeleted",
             fail=lambda: world.vault_call(kv.destroy_secret_versions, versions=[1],
                                           path=_path("destroyed"), mount_point="secret"),
             heal=lambda: rewrite("destroyed"), restarts_after_heal=1),
        Case("forbidden", "VaultPermissionDenied",
             fail=lambda: world.set_policy(
                 POLICY + 'path "secret/data/kv-secret/forbidden" '
                 '{ capabilities = ["deny"] }\n'),
             heal=lambda: world.set_policy(POLICY)),
        Case("slow", "VaultUnavailable",
             fail=lambda: add_fault(path="/v1/secret/data/kv-secret/slow", latency=5.0),
             heal=clear_faults),
        Case("reset", "VaultUnavailable",
             fail=lambda: add_fault(path="/v1/secret/data/kv-secret/reset", reset=True),
             heal=clear_faults),
    ]
    healthy = Case("healthy", "", fail=clear_faults, heal=clear_faults)
    first = await _start_synced(world, [*cases, healthy])
    old_values = {c.name: (world.secret_data(c.name) or {})["password"] for c in cases}

    for case in cases:
        await case.fail()
    for case in cases:
        await _check_failure_keeps_data(world, case, first[case.name])

    # The healthy secret next to them keeps syncing: a rotation reaches it and its workload.
    rotated = world.value("healthy-rotated")
    await world.write_kv(_path("healthy"), {"password": rotated})
    await world.eventually(lambda: (world.secret_data("healthy") or {}).get("password") == rotated,
                           message="the healthy secret rotated")
    await world.eventually(lambda: world.restarts("healthy") == 1, message="healthy restarted")

    for case in cases:
        await case.heal()
    for case in cases:
        await _check_recovery(world, case, new_values.get(case.name, old_values[case.name]))
    # The timeout was a timeout (the client gave up), not an answer after the latency.
    assert "ReadTimeout" in world.condition("slow", "Ready").get("message", "") or any(
        "ReadTimeout" in e["message"] for e in world.events("VaultUnavailable", about="slow"))


async def test_sealed_vault_keeps_data_and_recovers(world: World) -> None:
    await world.write_kv(_path("info"), {"password": world.value("sealed")})
    world.deployment("web", secret="sealed")
    world.vss("sealed", path=_path("info"),
              rolloutRestartTargets=[{"kind": "Deployment", "name": "web"}])
    world.start_syncd()
    await world.synced("sealed")
    before = world.secret("sealed")
    assert before is not None

    world.vault.admin.seal()
    for kind in ("Synced", "Ready"):
        found = await world.wait_condition("sealed", kind, status="False", reason="VaultSealed")
        assert "sealed" in found["message"]
    await world.eventually(lambda: world.events("VaultSealed", about="sealed", type="Warning"))
    after = world.secret("sealed")
    assert after is not None and after["metadata"]["resourceVersion"] == \
        before["metadata"]["resourceVersion"]
    assert world.restarts("web") == 0

    # Unsealing is the unsealer's job; here the testbed's admin does it.
    world.vault.admin.unseal(world.unseal_keys)
    await world.wait_condition("sealed", "Ready", status="True")
    assert world.secret("sealed")["data"] == before["data"]  # type: ignore[index]
    assert world.restarts("web") == 0


async def test_revoked_token_is_permission_denied_until_a_new_token(world: World) -> None:
    value = world.value("revoked")
    await world.write_kv(_path("info"), {"password": value})
    world.vss("revoked", path=_path("info"))
    world.start_syncd()
    await world.synced("revoked")
    before = world.secret("revoked")
    assert before is not None

    old_token = world.vault_token()
    await world.vault_call(world.vault_client().auth.token.revoke, old_token)
    for kind in ("Synced", "Ready"):
        await world.wait_condition("revoked", kind, status="False",
                                   reason="VaultPermissionDenied")
    await world.eventually(
        lambda: world.events("VaultPermissionDenied", about="revoked", type="Warning"))
    after = world.secret("revoked")
    assert after is not None and after["metadata"]["resourceVersion"] == \
        before["metadata"]["resourceVersion"]

    # A new token in the Secret the VaultAuth names is picked up (the refused client was
    # dropped), and syncing resumes.
    await world.new_vault_token()
    await world.wait_condition("revoked", "Ready", status="True")
    assert (world.secret_data("revoked") or {})["password"] == value
    assert old_token not in world.captured()


async def test_retries_failing_the_same_way_write_the_status_once(world: World) -> None:
    """A path answering 500 and 502 in turn: every retry reads again and each distinct message
    is an Event, but the status (already VaultUnavailable) is not rewritten per retry (it was:
    one status write per retry per object, 574 Kubernetes requests a second at 1,000)."""
    await world.write_kv(_path("flaky"), {"password": world.value("flaky")})
    world.vss("flaky", path=_path("flaky"))
    world.start_syncd()
    await world.synced("flaky")
    path = "/v1/secret/data/kv-secret/flaky"
    for status in [500, 502] * 5:  # in turn: each fault fires once, in order
        world.vault.admin.add_fault(path=path, status=status, times=1)
    world.vault.admin.add_fault(path=path, status=500)
    world.vault.admin.reset_counters()
    await world.wait_condition("flaky", "Synced", status="False", reason="VaultUnavailable")
    writes_then = [r for r in world.syncd_requests(["patch"])
                   if r.resource.endswith("/status") and r.name == "flaky"]
    await world.eventually(lambda: world.vault.admin.request_count(path=path) >= 5,
                           message="five reads of the failing path", deadline=20)
    writes = [r for r in world.syncd_requests(["patch"])
              if r.resource.endswith("/status") and r.name == "flaky"]
    assert len(writes) - len(writes_then) <= 1  # at most one more (REWRITE_FAILURE_AFTER)
    messages = {e["message"] for e in world.events("VaultUnavailable", about="flaky")}
    assert any("500" in m for m in messages) and any("502" in m for m in messages)
