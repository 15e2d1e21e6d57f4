"""VSO's documented manifests: kubernetes, jwt and appRole logins, and Go templates over the
secret data, end to end (issue 13).

The corpus (``vso_corpus/auth_methods.yaml`` and ``templates.yaml``, written from VSO's
VaultAuth and Secret transformation documentation) is applied with ``kubectl apply
--validate=strict`` unchanged but for the apiVersion and the documented in-cluster Vault
address; each VaultStaticSecret yields the Secret VSO documents for it, computed here from Go's
``text/template`` rules, not from syncd's output. A source template's text outside its
``define`` blocks is written nowhere.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from tests.syncd.e2e.kubectl import kubectl_apply
from tests.syncd.e2e.world import APP_NS, GROUP_VERSION, World

CORPUS = Path(__file__).parent / "vso_corpus"
DOCUMENTED_ADDRESS = "http://vault.vault.svc.cluster.local:8200"
APPROLE_TYPE = "secrets.vault-syncd.dev/vault-approle"
CA = "-----BEGIN CERTIFICATE-----\nnot really a certificate\n-----END CERTIFICATE-----\n"


async def _vault_logins(world: World) -> None:
    """Vault's kubernetes, jwt and approle auth, as VSO's documentation sets them up."""
    await world.kubernetes_auth()  # role app-reader for ServiceAccount app/app-reader
    client = world.vault_client()
    await world.vault_call(client.sys.enable_auth_method, method_type="jwt")
    # As a cluster's Vault trusts its ServiceAccount tokens: the issuer's public key.
    await world.vault_call(client.auth.jwt.configure, jwt_validation_pubkeys=[
        world.kube.cluster.authn.signer.public_pem])
    await world.vault_call(
        client.auth.jwt.create_role, "app-sa", role_type="jwt", user_claim="sub",
        bound_audiences=["vault"], bound_subject="system:serviceaccount:app:app-reader",
        token_policies=["syncd"], token_ttl="1h", allowed_redirect_uris=[])
    await world.vault_call(client.sys.enable_auth_method, method_type="approle")
    await world.vault_call(client.auth.approle.create_or_update_approle, "webapp",
                           token_policies=["syncd"], token_ttl="1h")
    await world.vault_call(client.auth.approle.update_role_id, "webapp", "webapp-role-id")
    secret_id = (await world.vault_call(client.auth.approle.generate_secret_id, "webapp"))[
        "data"]["secret_id"]
    world.credentials.append(secret_id)
    world.secret_values.add(secret_id)
    world.apply({"apiVersion": "v1", "kind": "Secret", "type": APPROLE_TYPE,
                 "metadata": {"name": "approle-secret-id", "namespace": APP_NS},
                 "stringData": {"id": secret_id}})


def _go_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


async def test_documented_manifests_sync_to_the_documented_secrets(world: World) -> None:
    await _vault_logins(world)
    password = world.value("webapp")
    source = {"username": "static-user", "password": password, "port": 5432,
              "ca_b64": base64.b64encode(CA.encode()).decode()}
    await world.write_kv("kv-secret/webapp/config", source)
    for name in ("auth_methods.yaml", "templates.yaml"):
        text = (CORPUS / name).read_text()
        text = text.replace("apiVersion: secrets.hashicorp.com/v1beta1",
                            f"apiVersion: {GROUP_VERSION}")
        text = text.replace(DOCUMENTED_ADDRESS, world.vault.address)
        assert "created" in await kubectl_apply(world, text)
    world.start_syncd()

    # The three logins, each once, each reading the same secret.
    read = await world.vault_call(world.vault_client().secrets.kv.v2.read_secret_version,
                                  path="kv-secret/webapp/config", mount_point="secret",
                                  raise_on_deleted_version=True)
    plain = {"username": "static-user", "password": password, "port": "5432",
             "ca_b64": source["ca_b64"]}
    assert await world.synced("via-kubernetes") == {**plain, "_raw": _go_json(read["data"])}
    assert await world.synced("via-jwt") == plain
    assert await world.synced("via-approle") == {"password": f"password={password}"}
    assert (world.logins("kubernetes"), world.logins("jwt"), world.logins("approle")) == (1, 1, 1)

    # Inline templates over .Secrets, .Metadata, .Annotations and .Labels; excludes, then
    # includes, filter the Vault keys only.
    dsn = f"postgresql://static-user:{password}@postgres:5432/db"
    assert await world.synced("webapp") == {
        "url": dsn,
        "password": password,
        "ca.crt": CA,
        "config.json": '{"port":5432,"user":"static-user"}',
        "app.props": (f"ca_b64={source['ca_b64']}\npassword={password}\nport=5432\n"
                      "username=static-user\n"),
        "meta": "version=1 host=postgres.postgres.svc app=webapp",
        "username": "static-user",
        "port": "5432",
    }
    # templateRefs with keyOverride: only the named templates; the source template's
    # definitions called from them; the transformation's excludes then includes.
    refs = await world.synced("webapp-refs")
    assert refs == {"DATABASE_URL": dsn, "labels": "app=webapp;tier=backend;",
                    "user-upper": "STATIC-USER", "username": "static-user"}
    # No templateRefs: all the transformation's templates; ignoreExcludes; _raw kept.
    every = await world.synced("webapp-all")
    assert every == {"dsn": dsn, "labels": "app=webapp-all;",
                     "public.json": '{"port":5432,"username":"static-user"}',
                     "username": "static-user", "_raw": _go_json(read["data"])}
    # The source template's text outside its definitions is written nowhere.
    for secret in (refs, every):
        assert not [k for k, v in secret.items() if "outside every define" in v]


async def test_source_template_errors_are_conditions_naming_transformation_and_line(
        world: World) -> None:
    await world.kubernetes_auth()
    await world.write_kv("kv-secret/info", {"password": world.value("source-errors")})
    world.apply({"apiVersion": GROUP_VERSION, "kind": "SecretTransformation",
                 "metadata": {"name": "broken-syntax", "namespace": APP_NS},
                 "spec": {"sourceTemplates": [{"name": "helpers", "text": (
                     '{{- define "ok" -}}fine{{- end -}}\n\n{{ nosuch .Secrets }}')}]}})
    world.apply({"apiVersion": GROUP_VERSION, "kind": "SecretTransformation",
                 "metadata": {"name": "broken-run", "namespace": APP_NS},
                 "spec": {"sourceTemplates": [{"text": (
                     'prose outside\n{{- define "first" -}}\n{{ .Secrets.password.nope }}\n'
                     "{{- end -}}")}]}})
    for name in ("broken-syntax", "broken-run"):
        world.vss(name, vaultAuthRef="k8s", destination={
            "name": name, "create": True, "transformation": {
                "templates": {"out": {"text": 'line one\n{{ template "first" . }}'}},
                "transformationRefs": [{"name": name}]}})
    world.start_syncd()

    condition = await world.wait_condition("broken-syntax", "Ready", status="False")
    assert ("transformationRefs[0]: SecretTransformation app/broken-syntax sourceTemplates[0]"
            " ('helpers'): template syntax error on line 3: function \"nosuch\" not defined"
            ) in condition["message"]
    # Called from line 2 of "out", failing on line 3 of the source template (its own lines).
    condition = await world.wait_condition("broken-run", "Ready", status="False")
    assert "key 'out': template failed:" in condition["message"]
    assert condition["message"].endswith(
        "(SecretTransformation app/broken-run sourceTemplates[0], line 3)")
    assert world.secret("broken-syntax") is None and world.secret("broken-run") is None
