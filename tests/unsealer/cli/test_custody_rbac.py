"""``unsealer custody rbac``: the Roles the custody config needs, applied to the emulation: the
unsealer's service account reads exactly its share Secrets, and nothing else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
USER = "system:serviceaccount:vault:vault-unsealer"
TOKEN = {"name": "token", "kind": "kubernetesSecret", "namespace": "vault-root",
         "secretName": "root-token", "rootTokenKey": "root-token", "shares": 0}


async def test_the_committed_custody_rbac_is_the_commands_output(world: Any) -> None:
    """manifests/unsealer/custody-rbac.yaml follows the example config of deployment.yaml."""
    [config_map, *_] = yaml.safe_load_all(
        (ROOT / "manifests/unsealer/deployment.yaml").read_text())
    example = world.directory / "example.yaml"
    example.write_text(config_map["data"]["custody.yaml"])
    run = await world.cli("custody", "rbac", "--custody-config", str(example))
    assert run.rc == 0, run
    assert run.out == (ROOT / "manifests/unsealer/custody-rbac.yaml").read_text()


async def test_the_roles_let_the_unsealer_read_its_shares_and_nothing_else(world: Any) -> None:
    keys = world.bootstrap().keys
    world.place({"kube-a": keys[0:2], "kube-b": keys[2:4], "disk": [keys[4], keys[0]]})
    for namespace, secret in (("vault-custody", "other"), ("vault-root", "root-token")):
        world.kube.admin.apply({"apiVersion": "v1", "kind": "Secret",
                                "metadata": {"name": secret, "namespace": namespace},
                                "data": {"x": "eA=="}})
    config = world.custody_config(more=[TOKEN])
    run = await world.cli("custody", "rbac", "--custody-config", str(config))
    assert run.rc == 0, run
    world.kube.admin.apply_yaml((ROOT / "manifests/unsealer/rbac.yaml").read_text())
    world.kube.admin.apply_yaml(run.out)
    kubeconfig = world.kube.write_kubeconfig(
        world.directory / "sa-kubeconfig",
        token=world.kube.admin.mint_token("vault", "vault-unsealer"))

    # Sufficient: as the service account, verify reads every share custodian (from the same
    # config without the root token's custodian, which this account must not read).
    shares_only = world.custody_config(name="shares-only.yaml")
    verify = await world.cli("custody", "verify", "--custody-config", str(shares_only),
                             "--kubeconfig", str(kubeconfig), "--address-template",
                             world.template)
    assert verify.rc == 0, verify
    for name in ("kube-a", "kube-b"):
        assert any(line.split()[:2] == [name, "reachable"] for line in verify.out.splitlines())

    # Minimal: get on exactly those two Secrets; not the root token's, not a neighbour, no
    # list, no write.
    can = world.kube.admin.can
    assert can(USER, "get", "secrets", namespace="vault-custody", name="unseal-a")
    assert can(USER, "get", "secrets", namespace="vault-custody-b", name="unseal-b")
    assert not can(USER, "get", "secrets", namespace="vault-custody", name="other")
    assert not can(USER, "get", "secrets", namespace="vault-root", name="root-token")
    for verb in ("list", "watch", "create", "patch", "update", "delete"):
        assert not can(USER, verb, "secrets", namespace="vault-custody", name="unseal-a"), verb
    documents = list(yaml.safe_load_all(run.out))
    assert [(d["kind"], d["metadata"]["namespace"]) for d in documents] == [
        ("Role", "vault-custody"), ("RoleBinding", "vault-custody"),
        ("Role", "vault-custody-b"), ("RoleBinding", "vault-custody-b")]


async def test_init_rights_cover_the_root_token_and_writes(world: Any) -> None:
    config = world.custody_config(more=[TOKEN])
    run = await world.cli("custody", "rbac", "--custody-config", str(config), "--init",
                          "--service-account", "ops/vault-init")
    assert run.rc == 0, run
    world.kube.admin.create_namespace("ops")
    world.kube.admin.apply_yaml(run.out)
    user = "system:serviceaccount:ops:vault-init"
    can = world.kube.admin.can
    for verb in ("get", "patch"):
        assert can(user, verb, "secrets", namespace="vault-root", name="root-token")
        assert can(user, verb, "secrets", namespace="vault-custody", name="unseal-a")
    assert can(user, "create", "secrets", namespace="vault-custody-b")
    assert not can(user, "get", "secrets", namespace="vault-custody", name="other")
    assert not can(user, "delete", "secrets", namespace="vault-custody", name="unseal-a")


async def test_an_unsafe_config_is_refused_in_one_line(world: Any) -> None:
    config = world.custody_config(extra={"kube-b": {"namespace": "vault-custody"}})
    run = await world.cli("custody", "rbac", "--custody-config", str(config))
    assert run.rc == 2
    assert run.err_lines == [
        "unsealer custody rbac: error: split custody does not hold: place "
        "namespace/vault-custody (kube-a, kube-b) alone yields 4 shares, and the threshold "
        "is 3"]
    assert run.out == ""
