"""README's worked example "From the Agent Injector" does what it says, as written in README.

The seed's situation: KV v2 mounted at ``kv-secret``, secret ``info`` with ``SECRET_KEY``,
Vault role ``kubernetes-role`` for ServiceAccount ``app`` of namespace ``default``. The
manifests are taken from README itself and applied with kubectl; the Secret ``info`` holds the
file the injector's template wrote, and a change in Vault restarts the Deployment ``app``,
which reads the Secret through ``envFrom`` and a volume at ``/vault/secrets``.
"""

from __future__ import annotations

import re

import yaml

from tests.syncd.e2e.kubectl import kubectl_apply
from tests.syncd.e2e.world import ROOT, World

NS = "default"


def _readme_manifests() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### From the Agent Injector"):]
    blocks = re.findall(r"```yaml\n(.*?)```", section, re.S)
    [manifests] = [b for b in blocks if "kind: VaultStaticSecret" in b]
    return manifests


async def _seed_vault(world: World, value: str) -> None:
    client = world.vault_client()
    world._record_credentials()
    await world.vault_call(client.sys.enable_secrets_engine, backend_type="kv",
                           path="kv-secret", options={"version": "2"})
    await world.write_kv("info", {"SECRET_KEY": value}, mount="kv-secret")
    await world.vault_call(client.sys.create_or_update_policy, name="app",
                           policy='path "kv-secret/data/info" { capabilities = ["read"] }')
    await world.vault_call(client.sys.enable_auth_method, method_type="kubernetes")
    world.kube.admin.ensure_service_account("kube-system", "vault-reviewer")
    world.kube.admin.grant("kube-system", "vault-reviewer", "system:auth-delegator")
    await world.vault_call(
        client.auth.kubernetes.configure, kubernetes_host=world.kube.url,
        token_reviewer_jwt=world.kube.admin.mint_token("kube-system", "vault-reviewer"))
    # The seed's role, with the audience README says to add.
    await world.vault_call(
        client.auth.kubernetes.create_role, name="kubernetes-role",
        bound_service_account_names=["app"], bound_service_account_namespaces=[NS],
        policies=["app"], ttl="1h", audience="vault")


def _app_deployment() -> dict[str, object]:
    """The seed's app, reading the Secret as README says instead of the injected file."""
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "app", "namespace": NS},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "app"}}, "template": {
            "metadata": {"labels": {"app": "app"}},
            "spec": {"serviceAccountName": "app", "containers": [{
                "name": "app", "image": "busybox:1.36",
                "command": ["sh", "-c", ". /vault/secrets/info && exec sleep infinity"],
                "envFrom": [{"secretRef": {"name": "info"}}],
                "volumeMounts": [{"name": "vault-secrets", "mountPath": "/vault/secrets"}]}],
                "volumes": [{"name": "vault-secrets", "secret": {
                    "secretName": "info", "items": [{"key": "info", "path": "info"}]}}]}}}}


async def test_readme_agent_injector_example_syncs_and_restarts_the_app(world: World) -> None:
    value = world.value("seed")
    await _seed_vault(world, value)
    world.kube.admin.ensure_service_account(NS, "app")
    world.apply(_app_deployment())
    manifests = _readme_manifests()
    assert [d["kind"] for d in yaml.safe_load_all(manifests)] == ["VaultAuth",
                                                                 "VaultStaticSecret"]
    assert "created" in await kubectl_apply(world, manifests)
    world.start_syncd()

    def secret() -> dict[str, str] | None:
        return world.secret_data("info", NS)

    # The Vault key for envFrom, and the same file the injector's template wrote to
    # /vault/secrets/info.
    assert await world.eventually(secret) == {"SECRET_KEY": value,
                                              "info": f'export SECRET_KEY="{value}"'}
    assert world.logins("kubernetes") == 1
    [request] = world.token_requests()
    assert (request.namespace, request.name) == (NS, "app")

    # A new value in Vault: the Secret follows at the next refresh (README's 60 s, cut to 1 s
    # here) and the Deployment restarts once.
    vss = world.get_vss("info", NS) or {}
    assert vss["spec"]["refreshAfter"] == "60s"  # the CRD's default
    world.apply({**vss, "spec": {**vss["spec"], "refreshAfter": "1s"}})
    await world.eventually(lambda: world.status("info", NS).get("lastGeneration") == 2,
                           message="the shorter refresh taken")
    changed = world.value("seed-changed")
    await world.write_kv("info", {"SECRET_KEY": changed}, mount="kv-secret")
    await world.eventually(lambda: secret() == {
        "SECRET_KEY": changed, "info": f'export SECRET_KEY="{changed}"'}, message="the new value")
    await world.eventually(lambda: world.restarts("app") == 1, message="one restart")
