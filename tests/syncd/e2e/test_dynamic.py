"""VaultDynamicSecret end to end: database credentials under a lease, against the Vault
emulation's database engine and leases.

The leases are short (seconds) and real time passes: syncd schedules from its own clock, and
the emulation's clock is the wall clock, so both agree on when a lease ends. Every wait is on a
condition (a status field, a span, a lease in Vault) with a deadline.
"""

from __future__ import annotations

import json
from itertools import pairwise
from typing import Any

import pytest

from tests.syncd.e2e.world import APP_NS, GROUP_VERSION, POLICY, World

DYNAMIC_POLICY = POLICY + """
path "database/creds/*" { capabilities = ["read"] }
path "database/static-creds/*" { capabilities = ["read"] }
path "sys/leases/renew" { capabilities = ["update"] }
path "sys/leases/revoke" { capabilities = ["update"] }
"""


async def _database(world: World, *, ttl: int, max_ttl: int, role: str = "app") -> None:
    """A database engine with dynamic role ``role``, and a syncd policy that may use it."""
    client = world.vault_client()
    mounts = await world.vault_call(client.sys.list_mounted_secrets_engines)
    if "database/" not in mounts:
        await world.vault_call(client.sys.enable_secrets_engine, "database")
        await world.vault_call(
            client.secrets.database.configure, "pg", "postgresql-database-plugin",
            allowed_roles=["*"], verify_connection=False,
            connection_url="postgresql://{{username}}:{{password}}@db:5432/app",
            username="vault", password=world.value("db-root"))
    await world.vault_call(
        client.secrets.database.create_role, role, "pg",
        ["CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}';"],
        default_ttl=ttl, max_ttl=max_ttl)
    await world.set_policy(DYNAMIC_POLICY)


def _vds(world: World, name: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"mount": "database", "path": "creds/app",
                            "destination": {"name": name, "create": True}}
    body.update(spec)
    return world.apply({"apiVersion": GROUP_VERSION, "kind": "VaultDynamicSecret",
                        "metadata": {"name": name, "namespace": APP_NS}, "spec": body})


def _get(world: World, name: str) -> dict[str, Any] | None:
    return world.kube.admin.get(GROUP_VERSION, "VaultDynamicSecret", name, APP_NS)


def _status(world: World, name: str) -> dict[str, Any]:
    return dict((_get(world, name) or {}).get("status") or {})


def _lease(world: World, name: str) -> str:
    return str((_status(world, name).get("secretLease") or {}).get("id") or "")


def _ready(world: World, name: str) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in _status(world, name).get("conditions") or [])


def _credentials(world: World, name: str) -> tuple[str, str]:
    data = world.secret_data(name) or {}
    world.remember(data.get("password"))
    return data.get("username", ""), data.get("password", "")


def _spans(world: World, name: str, result: str | None = "ok") -> int:
    return len([s for s in world.spans_named(name)
                if result is None or (s.attributes or {}).get("syncd.result") == result])


def _live(world: World, lease_id: str) -> bool:
    return any(lease.id == lease_id for lease in world.vault.admin.leases("database/"))


async def _first_sync(world: World, name: str) -> tuple[str, str, str]:
    await world.eventually(lambda: _ready(world, name) and world.secret_data(name),
                           message=f"{name} synced")
    username, password = _credentials(world, name)
    return _lease(world, name), username, password


def _no_leaks(world: World, *texts: str) -> None:
    statuses = json.dumps([v.get("status") for v in
                           world.kube.admin.list(GROUP_VERSION, "VaultDynamicSecret")])
    leaked = world.leaks([world.captured(), json.dumps(world.all_events()), statuses, *texts])
    assert not leaked, leaked


async def test_lease_renewed_at_the_renewal_percent_again_and_again(world: World) -> None:
    await _database(world, ttl=3, max_ttl=120)
    world.workload("Deployment", "web", secret="db")
    _vds(world, "db", rolloutRestartTargets=[{"kind": "Deployment", "name": "web"}])
    world.start_syncd()
    lease, username, password = await _first_sync(world, "db")
    assert lease.startswith("database/creds/app/")
    issued_at = _status(world, "db")["lastRenewalTime"]

    await world.eventually(lambda: _spans(world, "vault.lease.renew") >= 3, deadline=15,
                           message="three renewals")
    # Each renewal at 67 % of 3 s after the last (the spans have the exact times).
    starts = [s.start_time / 1e9 for s in sorted(
        world.spans_named("vault.issue") + world.spans_named("vault.lease.renew"),
        key=lambda s: s.start_time)]
    assert all(later - earlier >= 3 * 0.67 - 0.05 for earlier, later in pairwise(starts))
    # The status follows each renewal (the span ends just before it is written).
    status = await world.eventually(
        lambda: (found := _status(world, "db"))["lastRenewalTime"] >= issued_at + 4 and found,
        message="the renewals in the status")
    assert status["secretLease"] == {**status["secretLease"], "id": lease, "renewable": True}
    assert _credentials(world, "db") == (username, password)
    assert world.vault.admin.credentials_valid(username, password)
    assert _spans(world, "vault.issue") == 1
    assert world.restarts("web") == 0
    assert [lease_.id for lease_ in world.vault.admin.leases("database/creds/app/")] == [lease]
    # The lease id is in the status (as in VSO) but in no log line, span or Event.
    assert lease not in world.captured()
    assert lease not in json.dumps(world.all_events())
    _no_leaks(world)


@pytest.mark.parametrize("ending", ["max TTL", "renewal refused"])
async def test_lease_that_cannot_be_renewed_is_replaced_before_it_expires(
    world: World, ending: str,
) -> None:
    # max TTL 8 s: renewed at 2 s and 4 s, capped at 6 s (3 s asked, 2 s left): new
    # credentials then, with 2 s of the old ones left; the new lease's renewals at 8 s and
    # 10 s succeed.
    await _database(world, ttl=3, max_ttl=8 if ending == "max TTL" else 120)
    world.workload("Deployment", "web", secret="db")
    _vds(world, "db", revoke=True,
         rolloutRestartTargets=[{"kind": "Deployment", "name": "web"}])
    world.start_syncd()
    old_lease, old_user, old_password = await _first_sync(world, "db")
    [old] = world.vault.admin.leases("database/creds/app/")
    if ending == "renewal refused":
        world.vault.admin.refuse_renewals("app")

    await world.eventually(lambda: _lease(world, "db") not in ("", old_lease), deadline=10,
                           message="new credentials")
    # At once (the new lease is renewed 2 s after it was issued): that one lives on.
    world.vault.admin.refuse_renewals("app", refused=False)
    new_user, new_password = _credentials(world, "db")
    # Replaced before the old lease's end: the new one was issued while the old one lived.
    assert _status(world, "db")["lastRenewalTime"] < old.expire_time
    assert new_user != old_user
    assert world.vault.admin.credentials_valid(new_user, new_password)
    await world.eventually(lambda: world.restarts("web") == 1, message="one restart")
    # ...and the old lease revoked, its user dropped.
    assert not _live(world, old_lease)
    assert not world.vault.admin.credentials_valid(old_user, old_password)
    assert _spans(world, "vault.lease.revoke") == 1
    rotated = await world.eventually(lambda: world.events("SecretRotated", about="db"),
                                     message="a SecretRotated Event")
    assert "new credentials" in rotated[0]["message"]
    # Events are posted beside the writes, not before them: wait for it as for the other.
    await world.eventually(lambda: world.events("LeaseNotRenewable", about="db"),
                           message="a LeaseNotRenewable Event")
    if ending == "renewal refused":
        assert _spans(world, "vault.lease.renew", result="LeaseNotRenewable") >= 1
    # The new lease lives on as any other: renewed, with no further restart.
    renewals = _spans(world, "vault.lease.renew")
    await world.eventually(lambda: _spans(world, "vault.lease.renew") > renewals,
                           message="the new lease renewed")
    assert _spans(world, "vault.issue") == 2
    assert world.restarts("web") == 1
    leases = world.metric("syncd.vault.leases")
    assert leases[(("operation", "renew"), ("result", "LeaseNotRenewable"))] == 1
    assert leases[(("operation", "revoke"), ("result", "ok"))] == 1
    assert leases[(("operation", "issue"), ("result", "ok"))] == 2
    _no_leaks(world)


async def test_restart_mid_lease_renews_the_same_lease(world: World) -> None:
    await _database(world, ttl=4, max_ttl=120)
    world.workload("Deployment", "web", secret="db")
    _vds(world, "db", rolloutRestartTargets=[{"kind": "Deployment", "name": "web"}])
    first = world.start_syncd()
    lease, username, password = await _first_sync(world, "db")
    await world.stop_one(first, crash=True)
    assert _spans(world, "vault.lease.renew") == 0

    world.start_syncd()
    await world.eventually(lambda: _spans(world, "vault.lease.renew") >= 2, deadline=12,
                           message="the same lease renewed by the new process")
    assert _lease(world, "db") == lease
    assert _credentials(world, "db") == (username, password)
    assert _spans(world, "vault.issue") == 1  # no new credentials
    assert [lease_.id for lease_ in world.vault.admin.leases("database/creds/app/")] == [lease]
    assert world.restarts("web") == 0


async def test_leader_change_renews_the_same_lease(world: World) -> None:
    """The standby that takes over renews the lease the leader left in the status."""
    await _database(world, ttl=4, max_ttl=120)
    world.workload("Deployment", "web", secret="db")
    _vds(world, "db", rolloutRestartTargets=[{"kind": "Deployment", "name": "web"}])
    a = world.start_syncd(world.replica("syncd-a"))
    await world.eventually(lambda: world.lease_holder() == "syncd-a", message="a leads")
    world.start_syncd(world.replica("syncd-b"))
    lease, username, password = await _first_sync(world, "db")

    await world.stop_one(a)  # releases the Lease: b takes over
    await world.eventually(lambda: world.lease_holder() == "syncd-b", message="b leads")
    renewals = _spans(world, "vault.lease.renew")  # a may have renewed once already

    def written_by_b() -> list[Any]:
        return [r for r in world.requests_of(_user("syncd-b")) if r.verb == "patch"
                and r.resource == "vaultdynamicsecrets.secrets.vault-syncd.dev/status"]

    await world.eventually(lambda: _spans(world, "vault.lease.renew") > renewals
                           and written_by_b(), deadline=10, message="the lease renewed by b")
    assert _lease(world, "db") == lease
    assert _credentials(world, "db") == (username, password)
    assert _spans(world, "vault.issue") == 1
    assert world.restarts("web") == 0


def _user(replica: str) -> str:
    return f"system:serviceaccount:vault-syncd:{replica}"


async def test_deletion_with_revoke_revokes_the_lease(world: World) -> None:
    await _database(world, ttl=60, max_ttl=120)
    _vds(world, "db", revoke=True)
    world.start_syncd()
    lease, username, password = await _first_sync(world, "db")
    assert (_get(world, "db") or {})["metadata"]["finalizers"] == [
        "secrets.vault-syncd.dev/revoke-lease"]
    assert _live(world, lease)

    world.kube.admin.delete(GROUP_VERSION, "VaultDynamicSecret", "db", APP_NS)
    await world.eventually(lambda: _get(world, "db") is None, message="the object gone")
    assert not _live(world, lease)
    assert not world.vault.admin.credentials_valid(username, password)


async def test_without_revoke_no_finalizer_and_the_lease_is_left(world: World) -> None:
    await _database(world, ttl=60, max_ttl=120)
    _vds(world, "db")
    world.start_syncd()
    lease, _, _ = await _first_sync(world, "db")
    assert not (_get(world, "db") or {})["metadata"].get("finalizers")
    world.kube.admin.delete(GROUP_VERSION, "VaultDynamicSecret", "db", APP_NS)
    await world.eventually(lambda: _get(world, "db") is None, message="the object gone")
    assert _live(world, lease)


async def test_deleted_secret_gets_new_credentials_and_a_denied_path_a_condition(
    world: World,
) -> None:
    await _database(world, ttl=60, max_ttl=120)
    _vds(world, "db")
    _vds(world, "denied", path="creds/nobody")
    world.start_syncd()
    lease, username, _ = await _first_sync(world, "db")

    world.kube.admin.delete("v1", "Secret", "db", APP_NS)
    await world.eventually(lambda: _lease(world, "db") not in ("", lease),
                           message="new credentials for the deleted Secret")
    assert _credentials(world, "db")[0] != username

    def refused() -> dict[str, Any] | None:
        return next((c for c in _status(world, "denied").get("conditions") or []
                     if c["type"] == "Ready" and c["status"] == "False"), None)

    condition = await world.eventually(refused, message="denied: Ready False")
    assert "database/creds/nobody" in condition["message"]
    assert world.secret("denied") is None


async def test_static_role_followed_through_its_rotation(world: World) -> None:
    """allowStaticCreds: no lease; read again when Vault's ttl says the password rotates,
    written and restarted once when it did, and not at the reads in between."""
    await _database(world, ttl=60, max_ttl=120)
    client = world.vault_client()
    await world.vault_call(
        client.secrets.database.create_static_role, "static-app", "pg", "app-user",
        ["ALTER USER \"{{name}}\" WITH PASSWORD '{{password}}';"], rotation_period=5)
    world.workload("Deployment", "web", secret="static")
    _vds(world, "static", path="static-creds/static-app", allowStaticCreds=True,
         rolloutRestartTargets=[{"kind": "Deployment", "name": "web"}])
    world.start_syncd()
    await world.eventually(lambda: _ready(world, "static") and world.secret_data("static"),
                           message="static synced")
    user, password = _credentials(world, "static")
    assert user == "app-user"
    status = _status(world, "static")
    assert "secretLease" not in status
    assert status["staticCredsMetaData"]["rotationPeriod"] == 5
    assert 0 < status["staticCredsMetaData"]["ttl"] <= 5
    assert "ttl" not in (world.secret_data("static") or {})  # it changes at every read

    await world.eventually(lambda: _credentials(world, "static")[1] != password, deadline=12,
                           message="the rotated password written")
    assert world.vault.admin.credentials_valid(*_credentials(world, "static"))
    await world.eventually(lambda: world.restarts("web") == 1, message="one restart")
    # About one read per rotation, not one per second.
    assert _spans(world, "vault.issue") <= 3
    _no_leaks(world)
