"""Shares go only to a Vault the unsealer has verified: the attacks of issue 9, acted out.

Each test plays the hostile party with what it would really have: a pod it created with its own
ServiceAccount (the ``edit`` role in Vault's namespace) and Vault's labels, a server at an IP
answering ``sys/seal-status`` as a sealed Vault, a certificate from Vault's own CA for a name of
its choosing, a Vault reporting another threshold. The :class:`RogueVault` counts every request
and every share it was sent; the unsealer runs as in production.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import aiohttp
import pytest

from tests.unsealer.e2e.rogue import RogueVault
from tests.unsealer.e2e.world import VAULT_NS, World

LABELS = {"app.kubernetes.io/name": "vault", "component": "server"}
ROGUE_IP = "127.0.0.6"


async def create_rogue_pod(world: World, *, name: str = "vault-3", ip: str = ROGUE_IP) -> None:
    """An intruder, allowed to create pods in Vault's namespace, creates one with its labels."""
    world.kube.admin.ensure_service_account(VAULT_NS, "intruder")
    world.kube.admin.grant(VAULT_NS, "intruder", "edit", in_namespace=VAULT_NS)
    token = world.kube.admin.mint_token(VAULT_NS, "intruder")
    world.kube.kubelet.assign_ip(VAULT_NS, name, ip)
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": VAULT_NS, "labels": LABELS},
           "spec": {"containers": [{"name": "vault", "image": "hashicorp/vault:1.18.3"}]}}
    async with aiohttp.ClientSession() as http, http.post(
        f"{world.kube.url}/api/v1/namespaces/{VAULT_NS}/pods", json=pod,
        headers={"Authorization": f"Bearer {token}"},
    ) as response:
        assert response.status == 201, await response.text()
    await world.eventually(lambda: world.kube.kubelet.pod_ip(VAULT_NS, name) == ip,
                           message=f"{name} running at {ip}")


def warnings_about(world: World, pod: str) -> list[dict[str, Any]]:
    return [e for e in world.events("NotAVaultPod") if e["involvedObject"]["name"] == pod]


async def two_more_polls(world: World, node: int = 0) -> None:
    """Wait until the unsealer has read vault-N's seal-status twice more (its poll ran)."""
    before = world.vault.admin.request_count(method="GET", path="/v1/sys/seal-status", node=node)
    await world.eventually(
        lambda: world.vault.admin.request_count(
            method="GET", path="/v1/sys/seal-status", node=node) >= before + 2,
        message="two more seal-status polls",
    )


async def test_a_rogue_pod_with_a_valid_certificate_of_its_own_gets_no_request(
    world: World,
) -> None:
    # Even a certificate from Vault's CA for its own pod name and IP does not make it Vault.
    assert world.vault.tls is not None
    files = world.vault.tls.issue(
        "intruder", names=["vault-3", "vault-3.vault-internal.vault.svc"], ips=[ROGUE_IP])
    async with RogueVault(ROGUE_IP, world.port, files.server_context()) as rogue:
        await create_rogue_pod(world)
        world.start_unsealer()
        await world.eventually(lambda: not any(world.sealed(n) for n in range(3)),
                               message="the real pods unsealed")
        await two_more_polls(world)
        assert rogue.requests == [] and rogue.keys == []
        [warning] = await world.eventually(lambda: warnings_about(world, "vault-3"),
                                           message="a Warning Event on vault-3")
    assert warning["type"] == "Warning"
    assert "not a pod of StatefulSet 'vault'" in warning["message"]
    assert "no controller" in warning["message"]
    [logged] = [r for r in world.log_records("not a vault pod: never spoken to")
                if r["pod"] == "vault-3"]
    assert logged["level"] == "warning"


@pytest.mark.parametrize("world", ["plain-http"], indirect=True)
async def test_a_rogue_pod_gets_no_request_over_plain_http_either(world: World) -> None:
    async with RogueVault(ROGUE_IP, world.port) as rogue:
        await create_rogue_pod(world)
        world.start_unsealer()
        await world.eventually(lambda: not any(world.sealed(n) for n in range(3)),
                               message="the real pods unsealed over plain http")
        await two_more_polls(world)
        assert rogue.requests == [] and rogue.keys == []
        await world.eventually(lambda: warnings_about(world, "vault-3"),
                               message="a Warning Event on vault-3")
    # Plain http is announced: at start, on every attempt (log, span, metric) .
    [announced] = world.log_records("plain http: Vault's identity is not verified")
    assert announced["level"] == "warning"
    unsealed = world.log_records("unsealed")
    assert len(unsealed) == 3 and all(r["transport"] == "plain-http" for r in unsealed)
    attempts = [s for s in world.spans.get_finished_spans() if s.name == "unseal"]
    assert attempts and all(
        (s.attributes or {}).get("unsealer.transport") == "plain-http"
        and (s.attributes or {}).get("unsealer.identity_verified") is False for s in attempts)
    points = world.metric_points("unsealer.attempts")
    assert points and all(p.attributes["transport"] == "plain-http" for p in points)


async def test_a_certificate_for_another_pods_name_gets_no_share(world: World) -> None:
    # vault-1's address is taken by a server holding a valid certificate from Vault's CA, for
    # vault-0's names and for the very IP it answers at.
    assert world.vault.tls is not None
    await world.vault.nodes[1].stop()
    files = world.vault.tls.issue(
        "stolen", names=["vault-0", "vault-0.vault-internal.vault.svc"], ips=["127.0.0.3"])
    async with RogueVault("127.0.0.3", world.port, files.server_context()) as rogue:
        world.start_unsealer()
        await world.eventually(lambda: not world.sealed(0) and not world.sealed(2),
                               message="vault-0 and vault-2 unsealed")
        failed = await world.eventually(
            lambda: [e for e in world.events("UnsealFailed")
                     if e["involvedObject"]["name"] == "vault-1"],
            message="vault-1's failure reported")
        await two_more_polls(world)
        # The handshake failed: not one HTTP request reached it, let alone a share.
        assert rogue.requests == [] and rogue.keys == []
    assert "TLS refused, no valid certificate for vault-1.vault-internal.vault.svc" in (
        failed[0]["message"])


async def test_a_vault_reporting_another_threshold_gets_no_share(world: World) -> None:
    # A server with vault-2's own certificate (or a Vault initialised by someone else) that
    # asks for all 5 shares: the custody config records 3 of 5.
    assert world.vault.tls is not None
    await world.vault.nodes[2].stop()
    files = world.vault.tls.node(2, "127.0.0.4")
    async with RogueVault("127.0.0.4", world.port, files.server_context(),
                          threshold=5, shares=5) as rogue:
        world.start_unsealer()
        failed = await world.eventually(
            lambda: [e for e in world.events("UnsealFailed")
                     if e["involvedObject"]["name"] == "vault-2"],
            message="vault-2's mismatch reported")
        await world.eventually(lambda: not world.sealed(0) and not world.sealed(1))
        await two_more_polls(world)
        assert rogue.keys == []
        assert ("PUT", "/v1/sys/unseal") not in rogue.requests
        assert rogue.requests  # it was asked (it proved vault-2's name), and refused
    assert ("vault-2 reports threshold 5 of 5 shares, but the custody config records 3 of 5"
            in failed[0]["message"])
    assert any(r["outcome"] == "VaultMismatch" for r in world.log_records("unseal failed"))


@pytest.mark.parametrize("world", ["plain-http"], indirect=True)
async def test_over_plain_http_a_wrong_set_costs_the_threshold_and_then_the_budget_ends(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The custodian answering first holds a wrong share. Over https the unsealer would look
    # for the odd one out (sending more shares); over plain http it must not: each attempt
    # sends exactly the threshold, and after the budget none at all.
    from tests.unsealer.e2e.test_shares import _corrupted
    from tests.unsealer.e2e.world import ENV_VARIABLE

    monkeypatch.setenv(ENV_VARIABLE, _corrupted(world.keys[4]).hex())
    world.kube.faults.latency(0.3, resource="secrets", namespace="vault-custody")
    world.start_unsealer(dataclasses.replace(world.settings, share_attempt_budget=2))

    def submitted(node: int) -> int:
        return world.vault.admin.request_count(method="PUT", path="/v1/sys/unseal", node=node)

    await world.eventually(
        lambda: len([e for e in world.events("UnsealFailed")
                     if "no more shares to it" in e["message"]]) == 3,
        message="every pod out of budget")
    await two_more_polls(world)
    assert [submitted(n) for n in range(3)] == [6, 6, 6]  # 2 attempts x threshold 3
    assert all(world.sealed(n) for n in range(3))
    assert "looking for the odd one out" not in world.logs.getvalue()
    assert "only on a Vault whose identity is verified" in world.logs.getvalue()


async def test_status_says_who_proved_what(world: Any) -> None:
    # unsealer status, as a person runs it: every real pod's answer comes from a server that
    # proved the pod's name; a rogue pod is listed and never asked; a server at vault-1's
    # address with vault-0's certificate is refused at the handshake.
    import asyncio
    import sys

    assert world.vault.tls is not None and world.vault.ca_file is not None
    await world.vault.nodes[1].stop()
    stolen = world.vault.tls.issue(
        "stolen", names=["vault-0.vault-internal.vault.svc"], ips=["127.0.0.3"])
    async with RogueVault("127.0.0.3", world.port, stolen.server_context()) as impostor, \
            RogueVault(ROGUE_IP, world.port) as rogue:
        await create_rogue_pod(world)
        kubeconfig = world.kube.write_kubeconfig(world.directory / "admin-kubeconfig")
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "unsealer", "status", "--output", "json",
            "--kubeconfig", str(kubeconfig), "--namespace", VAULT_NS,
            "--address-template", f"https://{{ip}}:{world.port}",
            "--ca-file", str(world.vault.ca_file),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(), 60)
        assert impostor.requests == [] and rogue.requests == []
    assert process.returncode == 1, err
    pods = {pod["pod"]: pod for pod in json.loads(out)["pods"]}
    assert pods["vault-0"]["identity"] == "verified vault-0.vault-internal.vault.svc"
    assert pods["vault-0"]["server_name"] == "vault-0.vault-internal.vault.svc"
    assert pods["vault-0"]["state"] == "sealed"
    assert pods["vault-1"]["state"] == "unreachable"
    assert "TLS refused, no valid certificate for vault-1.vault-internal.vault.svc" in (
        pods["vault-1"]["error"])
    assert pods["vault-3"]["state"] == "not Vault's" and pods["vault-3"]["address"] == ""
