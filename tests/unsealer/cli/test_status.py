"""``unsealer status`` against Vault pods found through the Kubernetes API."""

from __future__ import annotations

import json
import socket
from typing import Any

DEAD_HOST = "127.0.0.4"


async def test_table_shows_each_pod_and_exit_1_when_one_is_not_unsealed(world: Any) -> None:
    world.bootstrap(shares=5, threshold=3)
    world.vault.admin.seal(1)
    await world.unseal([sorted(world.shares)[0]], node=1)  # progress 1/3 on vault-1
    world.add_pod("vault-2", DEAD_HOST)

    run = await world.cli("status", *world.pod_args())

    assert run.rc == 1, run
    rows = {line.split()[0]: line.split() for line in run.out.splitlines()[1:4]}
    assert run.out.splitlines()[0].split() == [
        "POD", "ADDRESS", "STATE", "INITIALIZED", "SEALED", "PROGRESS", "KEYS", "VERSION",
        "IDENTITY"]
    assert rows["vault-0"][1:5] == [f"http://127.0.0.2:{world.port}", "unsealed", "yes", "no"]
    assert rows["vault-0"][5:9] == ["0/3", "3", "of", "5"]
    assert rows["vault-0"][-2:] == ["plain", "http"]  # nothing proved who answered
    assert rows["vault-1"][2:6] == ["sealed", "yes", "yes", "1/3"]
    assert rows["vault-2"][2] == "unreachable"
    assert f"vault-2: GET sys/seal-status on http://{DEAD_HOST}:{world.port}: no answer" \
        in run.out
    assert run.err == ""  # a finding is not an error: the table says it all


async def test_json_for_scripts(world: Any) -> None:
    world.bootstrap(shares=5, threshold=3)
    world.vault.admin.seal(1)
    world.add_pod("vault-2", DEAD_HOST)

    run = await world.cli("status", "--output", "json", *world.pod_args())

    assert run.rc == 1, run
    document = json.loads(run.out)
    assert document["healthy"] is False
    pods = {pod["pod"]: pod for pod in document["pods"]}
    assert list(pods) == ["vault-0", "vault-1", "vault-2"]
    assert pods["vault-0"] == {
        "pod": "vault-0", "address": f"http://127.0.0.2:{world.port}", "reachable": True,
        "initialized": True, "sealed": False, "progress": 0, "threshold": 3, "shares": 5,
        "version": pods["vault-0"]["version"], "error": None, "state": "unsealed",
        "identity": "plain http", "server_name": None,
    }
    assert pods["vault-0"]["version"].startswith("1.")
    assert (pods["vault-1"]["state"], pods["vault-1"]["sealed"]) == ("sealed", True)
    assert pods["vault-2"]["reachable"] is False and "no answer" in pods["vault-2"]["error"]


async def test_exit_0_when_every_pod_is_unsealed_with_options_from_the_environment(
    world: Any,
) -> None:
    world.bootstrap()
    run = await world.cli("status", "--output", "json", env={
        "UNSEALER_KUBECONFIG": str(world.kubeconfig),
        "UNSEALER_ADDRESS_TEMPLATE": world.template,
    })
    assert run.rc == 0, run
    document = json.loads(run.out)
    assert document["healthy"] is True
    assert [pod["state"] for pod in document["pods"]] == ["unsealed", "unsealed"]


async def test_a_pod_with_vaults_labels_but_not_the_statefulsets_is_never_asked(
    world: Any,
) -> None:
    world.bootstrap()
    rogue = world.kube.admin.create({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "vault-debug", "namespace": "vault",
                     "labels": {"app.kubernetes.io/name": "vault", "component": "server"}},
        "spec": {"containers": [{"name": "vault", "image": "hashicorp/vault:1.17"}]},
    })
    rogue["status"] = {"phase": "Running", "podIP": "127.0.0.2"}  # even at a real address
    world.kube.admin.update_status(rogue)
    before = world.vault.admin.request_count(path="/v1/sys/seal-status", node=0)

    run = await world.cli("status", "--output", "json", *world.pod_args())

    assert run.rc == 1, run
    pods = {pod["pod"]: pod for pod in json.loads(run.out)["pods"]}
    assert pods["vault-debug"]["state"] == "not Vault's"
    assert pods["vault-debug"]["address"] == ""
    assert pods["vault-debug"]["error"] == (
        "not a pod of StatefulSet 'vault': it has no controller (no controlling ownerReference)")
    # vault-0 was asked once (its own row), vault-debug never.
    assert world.vault.admin.request_count(path="/v1/sys/seal-status", node=0) == before + 1


async def test_uninitialised_vault(world: Any) -> None:
    run = await world.cli("status", *world.pod_args())
    assert run.rc == 1, run
    assert [line.split()[2] for line in run.out.splitlines()[1:]] == [
        "uninitialised", "uninitialised"]


async def test_one_address_needs_no_kubernetes(world: Any) -> None:
    world.bootstrap()
    run = await world.cli("status", "--address", world.vault.address)  # no kubeconfig at all
    assert run.rc == 0, run
    assert run.out.splitlines()[1].split()[:3] == [
        world.vault.address, world.vault.address, "unsealed"]


async def test_kubernetes_errors_are_one_line(world: Any) -> None:
    no_match = await world.cli("status", *world.pod_args(), "--selector", "app=nothing")
    assert no_match.rc == 1
    assert no_match.error_line() == (
        "unsealer status: error: no pods match selector 'app=nothing' in namespace 'vault' "
        "(see --namespace and --selector)")

    world.kube.faults.error(503, verbs=["list"], resource="pods")
    refused = await world.cli("status", *world.pod_args())
    assert refused.rc == 1
    assert refused.error_line().startswith(
        "unsealer status: error: cannot list the Vault pods in 'vault': 503")
    world.kube.faults.clear()

    missing = await world.cli("status")  # no kubeconfig, not in a cluster
    assert missing.rc == 2
    assert missing.error_line().startswith(
        "unsealer status: error: cannot load Kubernetes credentials")

    dead = world.directory / "dead-kubeconfig"
    dead.write_text(world.kubeconfig.read_text().replace(
        world.kube.url, f"http://127.0.0.1:{free_port()}"))
    unreachable = await world.cli(
        "status", "--kubeconfig", str(dead), "--address-template", world.template)
    assert unreachable.rc == 1
    assert unreachable.error_line().startswith(
        "unsealer status: error: cannot reach the Kubernetes API: ClientConnectorError")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
