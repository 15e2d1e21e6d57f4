"""VaultAuth ``method: kubernetes``: a TokenRequest token traded for a Vault token, as VSO does.

Both emulations are wired as a cluster would be: Vault's kubernetes auth reviews the
ServiceAccount tokens at the Kubernetes emulation's TokenReview API, with the JWT of a reviewer
bound to ``system:auth-delegator``, and syncd asks the TokenRequest API for its tokens with its
real RBAC. What is shown: one login serves many refreshes (ESO #376); a Vault token that
expires (the Vault emulation's clock moved on) or whose lease is two thirds gone is replaced by
a new login; a refused login, or a TokenRequest refused by RBAC, names the VaultAuth and what
to fix and leaves the Secret alone; and neither the JWTs nor the Vault tokens show up anywhere
syncd writes or logs.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import yaml

from plumbing.kube import connect
from plumbing.vault import VaultPool
from syncd.specs import parse_vault_auth, parse_vault_connection
from syncd.vault_addresses import AllowedAddresses
from syncd.vault_clients import AuthError, VaultClients
from tests.syncd.e2e.world import APP_NS, GROUP_VERSION, OPERATOR_NS, ROOT, World


def _outputs(world: World) -> str:
    """Everything syncd said: logs, spans, Events and statuses."""
    return "\n".join([
        world.captured(), json.dumps(world.all_events()),
        json.dumps([v.get("status") for v in world.all_vss()]),
    ])


async def test_syncs_with_one_login_for_many_refreshes(world: World) -> None:
    await world.kubernetes_auth()
    value = world.value("k8s-auth")
    await world.write_kv("kv-secret/info", {"password": value})
    world.vss("via-k8s", vaultAuthRef="k8s")
    world.vss("via-k8s-too", vaultAuthRef="k8s", destination={"name": "via-k8s-too",
                                                                "create": True})
    world.start_syncd()

    assert (await world.synced("via-k8s"))["password"] == value
    assert (await world.synced("via-k8s-too"))["password"] == value
    reads = world.vault_reads()
    await world.eventually(lambda: world.vault_reads() >= reads + 6, message="refreshes")
    # Two VaultStaticSecrets of one namespace and one VaultAuth: one client, one login.
    assert world.logins() == 1
    assert len(world.token_requests()) == 1
    request = world.token_requests()[0]
    assert (request.namespace, request.name) == ("app", "app-reader")

    await world.stop_syncd()
    assert world.credentials, "the JWTs and tokens were recorded"
    output = _outputs(world)
    assert [c for c in world.credentials if c in output] == []


async def test_logs_in_again_when_vault_refuses_the_expired_token(world: World) -> None:
    # A 5-minute token: moving Vault's clock 400 s on expires it, while the new JWT syncd
    # then requests (valid for 600 s of real time) is still within Vault's leeway.
    await world.kubernetes_auth(token_ttl="5m")
    value = world.value("k8s-expiry")
    await world.write_kv("kv-secret/info", {"password": value})
    world.vss("expiring", vaultAuthRef="k8s")
    world.start_syncd()
    await world.synced("expiring")
    assert world.logins() == 1

    world.vault.admin.advance_clock(400)
    await world.eventually(lambda: world.logins() == 2, message="a second login")
    # The read with the expired token was refused (403), which dropped the client.
    await world.eventually(lambda: world.events("VaultPermissionDenied", about="expiring"),
                           message="the refused read")
    await world.wait_condition("expiring", "Ready", status="True")
    reads = world.vault_reads()
    await world.eventually(lambda: world.vault_reads() >= reads + 3, message="refreshes")
    assert world.logins() == 2
    assert len(world.token_requests()) == 2
    assert (world.secret_data("expiring") or {})["password"] == value


async def test_logs_in_again_before_the_lease_runs_out(world: World) -> None:
    # A 3-second token: syncd logs in again at two thirds of it, before Vault refuses it.
    await world.kubernetes_auth(token_ttl="3s")
    await world.write_kv("kv-secret/info", {"password": world.value("k8s-lease")})
    world.vss("short-lease", vaultAuthRef="k8s")
    world.start_syncd()
    await world.synced("short-lease")

    await world.eventually(lambda: world.logins() >= 3, deadline=15, message="two re-logins")
    assert world.events("VaultPermissionDenied", about="short-lease") == []
    assert world.condition("short-lease", "Ready")["status"] == "True"


async def test_refused_logins_say_what_to_fix_and_keep_the_secret(world: World) -> None:
    await world.kubernetes_auth()  # role app-reader allows SA app-reader only
    world.kube.admin.ensure_service_account("app", "intruder")
    for name, role, account in [("k8s-other-sa", "app-reader", "intruder"),
                                ("k8s-no-role", "no-such-role", "app-reader"),
                                ("k8s-no-sa", "app-reader", "ghost")]:
        world.apply({"apiVersion": GROUP_VERSION, "kind": "VaultAuth",
                     "metadata": {"name": name, "namespace": APP_NS},
                     "spec": {"method": "kubernetes", "kubernetes": {
                         "role": role, "serviceAccount": account, "audiences": ["vault"]}}})
    value = world.value("k8s-kept")
    await world.write_kv("kv-secret/info", {"password": value})
    names = ("denied", "no-role", "no-sa")
    for name in names:
        world.vss(name)  # synced first with the default (token) VaultAuth
    world.start_syncd()
    before = {name: (await world.synced(name), world.secret(name)) for name in names}

    world.vss("denied", vaultAuthRef="k8s-other-sa")
    world.vss("no-role", vaultAuthRef="k8s-no-role")
    world.vss("no-sa", vaultAuthRef="k8s-no-sa")
    expected = {
        "denied": ["VaultAuth app/k8s-other-sa", "role 'app-reader' does not allow "
                   "ServiceAccount app/intruder", "bound_service_account_names"],
        "no-role": ["VaultAuth app/k8s-no-role", "Vault has no role 'no-such-role' at "
                    "auth/kubernetes", "spec.kubernetes.role"],
        "no-sa": ["VaultAuth app/k8s-no-sa", "ServiceAccount app/ghost not found"],
    }
    for name, parts in expected.items():
        condition = await world.wait_condition(name, "Synced", status="False",
                                               reason="VaultAuthFailed")
        for part in parts:
            assert part in condition["message"], (part, condition["message"])
        await world.eventually(lambda n=name: world.events("VaultAuthFailed", about=n),
                               message=f"{name}: a VaultAuthFailed Event")
    for name, (data, secret) in before.items():
        assert world.secret_data(name) == data
        assert (world.secret(name) or {})["metadata"]["resourceVersion"] == (
            (secret or {})["metadata"]["resourceVersion"])
    await world.stop_syncd()
    output = _outputs(world)
    assert [c for c in world.credentials if c in output] == []


async def test_token_request_refused_by_rbac_names_the_missing_grant(world: World) -> None:
    # syncd's ClusterRole as deployed, less the TokenRequest rule.
    for document in yaml.safe_load_all((ROOT / "manifests/syncd/rbac.yaml").read_text()):
        if document and document["kind"] == "ClusterRole":
            document["rules"] = [r for r in document["rules"]
                                 if "serviceaccounts/token" not in r["resources"]]
            world.apply(document)
    await world.kubernetes_auth()
    await world.write_kv("kv-secret/info", {"password": world.value("k8s-rbac")})
    world.vss("no-grant", vaultAuthRef="k8s")
    world.start_syncd()

    condition = await world.wait_condition("no-grant", "Synced", status="False",
                                           reason="VaultAuthFailed")
    assert "VaultAuth app/k8s" in condition["message"]
    assert "create on serviceaccounts/token" in condition["message"]
    assert world.secret("no-grant") is None
    assert world.logins() == 0


class _Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_client_lifetime_on_an_injected_clock(world: World) -> None:
    """VaultClients alone, on a hand-moved clock: cached until two thirds of the lease, then a
    new login; a failed re-login falls back on the still-valid token, an expired one does not;
    ``forget`` with an old client keeps the newer one."""
    await world.kubernetes_auth(token_ttl="1h")
    auth = parse_vault_auth(world.kube.admin.get(GROUP_VERSION, "VaultAuth", "k8s", APP_NS)
                            or {})
    connection = parse_vault_connection(world.kube.admin.get(
        GROUP_VERSION, "VaultConnection", "default", OPERATOR_NS) or {})
    kube, pool, clock = await connect(kubeconfig=str(world.kubeconfig)), VaultPool(), _Clock()
    addresses = AllowedAddresses(patterns=None, operator_namespace=OPERATOR_NS,
                                 connections=lambda: [world.kube.admin.get(
                                     GROUP_VERSION, "VaultConnection", "default", OPERATOR_NS)
                                     or {}])
    clients = VaultClients(kube=kube, pool=pool, addresses=addresses, clock=clock)
    where = {"namespace": APP_NS, "auth": auth, "connection": connection}
    try:
        first = await clients.get(**where)
        assert await clients.get(**where) is first and world.logins() == 1
        clock.now += 2399  # just short of two thirds of 3600 s
        assert await clients.get(**where) is first and world.logins() == 1
        clock.now += 2
        second = await clients.get(**where)
        assert second is not first and world.logins() == 2
        assert second.token != first.token

        clients.forget(**where, client=first)  # a late 403 on the old token
        assert await clients.get(**where) is second and world.logins() == 2

        world.vault.admin.add_fault(method="POST", path="/v1/auth/kubernetes/login",
                                    status=503, errors=["unavailable"])
        clock.now += 2500  # re-login due, but the token has 1100 s left
        assert await clients.get(**where) is second
        clock.now += 1200  # and now it has none
        with pytest.raises(AuthError) as refused:
            await clients.get(**where)
        assert refused.value.reason == "VaultUnavailable"
        world.vault.admin.clear_faults()
        third = await clients.get(**where)
        assert third is not second

        # The VaultAuth deleted and created again: generation 1 again, but a new uid.
        logins = world.logins()
        recreated = dataclasses.replace(auth, uid="uid-of-the-new-object")
        assert await clients.get(namespace=APP_NS, auth=recreated,
                                 connection=connection) is not third
        assert world.logins() == logins + 1
    finally:
        await kube.close()
        pool.shutdown()
