"""VaultAuthGlobal and SecretTransformation end to end, from VSO-style manifests.

The corpus (``vso_corpus/``, written from VSO's documentation examples) is applied unchanged
but for its apiVersion with ``kubectl apply --validate=strict`` against the Kubernetes
emulation, and syncs: the VaultAuth takes its method, role, ServiceAccount and Vault namespace
from the ``default`` VaultAuthGlobal of syncd's namespace; the VaultStaticSecrets take
templates and filters from a SecretTransformation with VSO's precedence. Then the tenant
boundary, acting as a namespace user of ``app``: a VaultAuthGlobal or SecretTransformation of
another namespace that does not allow ``app`` is refused, and nothing is sent to Vault; when
the global starts allowing ``app``, the VaultStaticSecret using it syncs without being touched.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from tests.syncd.e2e.world import APP_NS, GROUP_VERSION, World

CORPUS = Path(__file__).parent / "vso_corpus"
KUBECTL = shutil.which("kubectl")


async def _kubectl(world: World, *args: str, stdin: str) -> str:
    if KUBECTL is None:
        pytest.skip("kubectl is not installed")
    env = {**os.environ, "KUBECONFIG": str(world.kubeconfig),
           "HOME": str(world.kubeconfig.parent), "NO_PROXY": "127.0.0.1"}
    proc = await asyncio.create_subprocess_exec(
        KUBECTL, f"--cache-dir={world.kubeconfig.parent / 'kubectl-cache'}", *args, env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 60)
    assert proc.returncode == 0, err.decode() or out.decode()
    return out.decode()


async def test_vso_corpus_applies_unchanged_but_for_api_version_and_syncs(world: World) -> None:
    await world.kubernetes_auth()  # Vault's kubernetes auth, role app-reader
    source = {"username": "app", "password": world.value("db"), "internal-id": "7"}
    await world.write_kv("kv-secret/db", source)
    for path in sorted(CORPUS.glob("*.yaml")):
        text = path.read_text().replace("apiVersion: secrets.hashicorp.com/v1beta1",
                                        f"apiVersion: {GROUP_VERSION}")
        out = await _kubectl(world, "apply", "--validate=strict", "-f", "-", stdin=text)
        assert "created" in out
    world.start_syncd()

    # VSO's precedence: the inline template wins over the transformation's for "dsn"; the
    # templateRefs pick url (as connection-url) and banner; excludes, then includes, filter
    # the Vault keys (never the templates).
    assert await world.synced("db") == {
        "username": "app", "password": source["password"], "dsn": "inline-wins",
        "connection-url": "postgresql://db.app.svc:5432/app", "banner": "shared banner",
    }
    # No templateRefs: every template of the transformation whose key is free; its includes
    # ignored, its excludes kept.
    assert await world.synced("db-all") == {
        "username": "app", "password": source["password"], "dsn": "inline-wins",
        "url": "postgresql://db.app.svc:5432/app", "banner": "shared banner",
    }
    # The method, role and ServiceAccount came from the global: one kubernetes login, as
    # app-reader, and the global's defaultVaultNamespace went with it.
    assert world.logins() == 1
    assert [(r.namespace, r.name) for r in world.token_requests()] == [(APP_NS, "app-reader")]
    assert world.vault.admin.request_count(path="/v1/auth/kubernetes/login",
                                           namespace="tenant-ns") == 1


async def test_a_namespace_user_cannot_borrow_another_namespace_s_globals(world: World) -> None:
    await world.kubernetes_auth()
    await world.write_kv("kv-secret/info", {"password": world.value("tenant")})
    world.kube.admin.apply({"apiVersion": "v1", "kind": "Namespace",
                            "metadata": {"name": "team-b"}})
    world.apply({"apiVersion": GROUP_VERSION, "kind": "VaultAuthGlobal",
                 "metadata": {"name": "team-b-login", "namespace": "team-b"},
                 "spec": {"defaultAuthMethod": "kubernetes", "kubernetes": {
                     "role": "app-reader", "serviceAccount": "app-reader"}}})
    world.apply({"apiVersion": GROUP_VERSION, "kind": "SecretTransformation",
                 "metadata": {"name": "team-b-templates", "namespace": "team-b"},
                 "spec": {"templates": {"k": {"text": '{{ "team-b only" }}'}}}})
    world.start_syncd()
    async with world.tenant() as tenant:
        await tenant.create({
            "kind": "VaultAuth", "metadata": {"name": "borrowed", "namespace": APP_NS},
            "spec": {"vaultAuthGlobalRef": {"name": "team-b-login", "namespace": "team-b"}}})
        await tenant.create({
            "kind": "VaultStaticSecret", "metadata": {"name": "borrowing", "namespace": APP_NS},
            "spec": {"vaultAuthRef": "borrowed", "mount": "secret", "path": "kv-secret/info",
                     "type": "kv-v2", "refreshAfter": "1s",
                     "destination": {"name": "borrowing", "create": True}}})
        await tenant.create({
            "kind": "VaultStaticSecret", "metadata": {"name": "templates", "namespace": APP_NS},
            "spec": {"mount": "secret", "path": "kv-secret/info", "type": "kv-v2",
                     "destination": {"name": "templates", "create": True, "transformation": {
                         "transformationRefs": [{"name": "team-b-templates",
                                                 "namespace": "team-b"}]}}}})

    condition = await world.wait_condition("borrowing", "Synced", status="False",
                                           reason="VaultAuthGlobalNotAllowed")
    assert ("VaultAuthGlobal team-b/team-b-login does not allow namespace app"
            in condition["message"])
    condition = await world.wait_condition("templates", "Ready", status="False",
                                           reason="TransformationNotAllowed")
    assert "transformationRefs[0].namespace" in condition["message"]
    assert "team-b only" not in world.captured()
    # Nothing was sent anywhere for the refused global: no TokenRequest, no login.
    assert world.token_requests() == [] and world.logins() == 0
    assert world.secret("borrowing") is None and world.secret("templates") is None

    # Team b allows app: the change to the global alone re-queues the VaultStaticSecret.
    world.apply({"apiVersion": GROUP_VERSION, "kind": "VaultAuthGlobal",
                 "metadata": {"name": "team-b-login", "namespace": "team-b"},
                 "spec": {"allowedNamespaces": [APP_NS], "defaultAuthMethod": "kubernetes",
                          "kubernetes": {"role": "app-reader", "serviceAccount": "app-reader"}}})
    assert "password" in await world.synced("borrowing")
    assert world.logins() == 1


async def test_reference_errors_are_conditions_naming_the_field(world: World) -> None:
    await world.new_vault_token()
    await world.write_kv("kv-secret/info", {"password": world.value("refs")})
    world.apply({"apiVersion": GROUP_VERSION, "kind": "VaultAuth",
                 "metadata": {"name": "no-global", "namespace": APP_NS},
                 "spec": {"vaultAuthGlobalRef": {"name": "ghost"}}})
    world.vss("missing-global", vaultAuthRef="no-global")
    world.vss("missing-template", destination={"name": "missing-template", "create": True,
                                               "transformation": {"transformationRefs": [
                                                   {"name": "ghost"}]}})
    world.start_syncd()
    condition = await world.wait_condition("missing-global", "Synced", status="False",
                                           reason="VaultAuthGlobalNotFound")
    assert "spec.vaultAuthGlobalRef: VaultAuthGlobal app/ghost not found" in condition["message"]
    condition = await world.wait_condition("missing-template", "Ready", status="False",
                                           reason="TransformationNotFound")
    assert ("spec.destination.transformation.transformationRefs[0]: SecretTransformation"
            " app/ghost not found") in condition["message"]
    # Created afterwards, the SecretTransformation is picked up without touching the VSS.
    world.apply({"apiVersion": GROUP_VERSION, "kind": "SecretTransformation",
                 "metadata": {"name": "ghost", "namespace": APP_NS},
                 "spec": {"templates": {"greeting": {"text": '{{ "hello" }}'}}}})
    assert (await world.synced("missing-template"))["greeting"] == "hello"


async def test_header_merge_strategies_reach_vault(world: World) -> None:
    """The headers each mergeStrategy yields are the ones Vault receives (the emulation counts
    requests by ``X-Vault-Namespace``, so that header stands for all)."""
    await world.kubernetes_auth()
    await world.write_kv("kv-secret/info", {"password": world.value("merge")})
    header = "X-Vault-Namespace"
    world.apply({"apiVersion": GROUP_VERSION, "kind": "VaultAuthGlobal",
                 "metadata": {"name": "shared", "namespace": APP_NS},
                 "spec": {"defaultAuthMethod": "kubernetes",
                          "headers": {header: "from-defaults", "X-Other": "1"},
                          "kubernetes": {"role": "app-reader", "serviceAccount": "app-reader",
                                         "headers": {header: "from-method"}}}})
    cases = {"none": ({}, ""), "union": ({}, "from-method"),
             "replace": ({header: "own"}, "own")}
    for strategy, (own, _) in cases.items():
        world.apply({"apiVersion": GROUP_VERSION, "kind": "VaultAuth",
                     "metadata": {"name": f"merge-{strategy}", "namespace": APP_NS},
                     "spec": {"headers": own, "vaultAuthGlobalRef": {
                         "name": "shared", "mergeStrategy": {"headers": strategy}}}})
        world.vss(f"merge-{strategy}", vaultAuthRef=f"merge-{strategy}")
    world.start_syncd()
    for strategy in cases:
        await world.synced(f"merge-{strategy}")
    count = world.vault.admin.request_count
    login = "/v1/auth/kubernetes/login"
    assert count(path=login, namespace="from-method") == 1  # union: the method's over defaults
    assert count(path=login, namespace="own") == 1  # replace: the VaultAuth's own
    assert count(path=login, namespace="from-defaults") == 0
    assert count(path=login, namespace="") == 1  # none: the VaultAuth's (no such header)
    assert count(path=login) == 3
