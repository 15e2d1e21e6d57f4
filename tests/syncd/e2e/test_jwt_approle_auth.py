"""VaultAuth ``method: jwt`` and ``method: appRole``, end to end against both emulations.

Vault's jwt auth trusts the Kubernetes emulation's ServiceAccount signing key (as a cluster's
Vault would, through ``jwt_validation_pubkeys``) and a second issuer's key for JWTs kept in
Secrets. What is shown: each method syncs with one login for many refreshes and logs in again
before a short lease runs out; credentials are read only from Secrets of the method's own type
(a namespace user cannot make syncd send another workload's credentials); a missing key, a bad
reference or a ``secretIDPath`` outside the operator's folder is a condition naming the field;
and no JWT, SecretID or Vault token shows up anywhere syncd writes or logs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from plumbing.kube import connect
from plumbing.vault import VaultPool
from syncd.specs import parse_vault_auth, parse_vault_connection
from syncd.vault_addresses import AllowedAddresses
from syncd.vault_clients import AuthError, VaultClients
from tests.syncd.e2e.world import APP_NS, GROUP_VERSION, OPERATOR_NS, World

_ISSUER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_ISSUER = "https://ci.example"
JWT_TYPE = "secrets.vault-syncd.dev/vault-jwt"
APPROLE_TYPE = "secrets.vault-syncd.dev/vault-approle"


def _outputs(world: World) -> str:
    return "\n".join([
        world.captured(), json.dumps(world.all_events()),
        json.dumps([v.get("status") for v in world.all_vss()]),
    ])


def _issued_jwt(world: World, subject: str = "ci-runner") -> str:
    now = int(time.time())
    token = jwt.encode({"iss": _ISSUER, "sub": subject, "aud": "vault", "iat": now,
                        "exp": now + 3600}, _ISSUER_KEY, algorithm="RS256")
    world.credentials.append(token)
    world.secret_values.add(token.rsplit(".", 1)[-1])
    return token


async def _jwt_auth(world: World, *, token_ttl: str = "1h") -> None:
    """Vault's jwt auth trusting the cluster's ServiceAccount key and the CI issuer's key."""
    client = world.vault_client()
    methods = await world.vault_call(client.sys.list_auth_methods)
    if "jwt/" not in (methods.get("data") or methods):
        world._record_credentials()
        await world.vault_call(client.sys.enable_auth_method, method_type="jwt")
        issuer_pem = _ISSUER_KEY.public_key().public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        await world.vault_call(client.auth.jwt.configure, jwt_validation_pubkeys=[
            world.kube.cluster.authn.signer.public_pem, issuer_pem])
    await world.vault_call(
        client.auth.jwt.create_role, "app-sa", role_type="jwt", user_claim="sub",
        bound_audiences=["vault"], bound_subject="system:serviceaccount:app:app-reader",
        token_policies=["syncd"], token_ttl=token_ttl, allowed_redirect_uris=[])
    await world.vault_call(
        client.auth.jwt.create_role, "ci", role_type="jwt", user_claim="sub",
        bound_audiences=["vault"], bound_claims={"sub": "ci-runner"},
        token_policies=["syncd"], token_ttl=token_ttl, allowed_redirect_uris=[])
    world.kube.admin.ensure_service_account(APP_NS, "app-reader")


async def _approle(world: World, *, token_ttl: str = "1h") -> tuple[str, str]:
    client = world.vault_client()
    world._record_credentials()
    await world.vault_call(client.sys.enable_auth_method, method_type="approle")
    await world.vault_call(client.auth.approle.create_or_update_approle, "syncd",
                           token_policies=["syncd"], token_ttl=token_ttl)
    role_id = (await world.vault_call(client.auth.approle.read_role_id, "syncd"))["data"][
        "role_id"]
    secret_id = (await world.vault_call(client.auth.approle.generate_secret_id, "syncd"))[
        "data"]["secret_id"]
    world.credentials.append(secret_id)
    world.secret_values.add(secret_id)
    return role_id, secret_id


def _secret(world: World, name: str, *, type_: str, data: dict[str, str]) -> None:
    world.apply({"apiVersion": "v1", "kind": "Secret", "type": type_,
                 "metadata": {"name": name, "namespace": APP_NS}, "stringData": data})


def _auth(world: World, name: str, method: str, block: dict[str, Any]) -> None:
    world.apply({"apiVersion": GROUP_VERSION, "kind": "VaultAuth",
                 "metadata": {"name": name, "namespace": APP_NS},
                 "spec": {"method": method, method: block}})


async def test_jwt_logins_by_service_account_and_by_secret(world: World) -> None:
    await _jwt_auth(world)
    _secret(world, "ci-jwt", type_=JWT_TYPE, data={"jwt": _issued_jwt(world)})
    _auth(world, "jwt-sa", "jwt", {"role": "app-sa", "serviceAccount": "app-reader",
                                   "audiences": ["vault"]})
    _auth(world, "jwt-secret", "jwt", {"role": "ci", "secretRef": "ci-jwt"})
    value = world.value("jwt")
    await world.write_kv("kv-secret/info", {"password": value})
    world.vss("via-sa", vaultAuthRef="jwt-sa")
    world.vss("via-secret", vaultAuthRef="jwt-secret")
    world.start_syncd()

    assert (await world.synced("via-sa"))["password"] == value
    assert (await world.synced("via-secret"))["password"] == value
    reads = world.vault_reads()
    await world.eventually(lambda: world.vault_reads() >= reads + 4, message="refreshes")
    assert world.logins("jwt") == 2  # one per VaultAuth, not one per refresh
    [request] = world.token_requests()
    assert (request.namespace, request.name) == (APP_NS, "app-reader")
    await world.stop_syncd()
    assert world.credentials
    output = _outputs(world)
    assert [c for c in world.credentials if c in output] == []


async def test_approle_login_and_relogin_before_a_short_lease_ends(world: World) -> None:
    role_id, secret_id = await _approle(world, token_ttl="3s")
    _secret(world, "approle", type_=APPROLE_TYPE, data={"id": secret_id})
    _auth(world, "approle", "appRole", {"roleId": role_id, "secretRef": "approle"})
    value = world.value("approle")
    await world.write_kv("kv-secret/info", {"password": value})
    world.vss("via-approle", vaultAuthRef="approle")
    world.start_syncd()

    assert (await world.synced("via-approle"))["password"] == value
    # A 3-second token: logged in again at two thirds of it, before Vault refuses it.
    await world.eventually(lambda: world.logins("approle") >= 3, deadline=15,
                           message="two re-logins")
    assert world.events("VaultPermissionDenied", about="via-approle") == []
    assert world.condition("via-approle", "Ready")["status"] == "True"
    await world.stop_syncd()
    output = _outputs(world)
    assert [c for c in world.credentials if c in output] == []


async def test_jwt_relogin_before_a_short_lease_ends(world: World) -> None:
    await _jwt_auth(world, token_ttl="3s")
    _auth(world, "jwt-sa", "jwt", {"role": "app-sa", "serviceAccount": "app-reader"})
    await world.write_kv("kv-secret/info", {"password": world.value("jwt-lease")})
    world.vss("short", vaultAuthRef="jwt-sa")
    world.start_syncd()
    await world.synced("short")
    await world.eventually(lambda: world.logins("jwt") >= 3, deadline=15,
                           message="two re-logins")
    # Each login a fresh ServiceAccount token, for the Vault audience (the default).
    assert len(world.token_requests()) == world.logins("jwt")
    assert world.events("VaultPermissionDenied", about="short") == []


async def test_bad_credentials_are_conditions_naming_the_field(world: World) -> None:
    await _jwt_auth(world)
    role_id, secret_id = await _approle(world)
    # An application's own Secret holding a JWT and a SecretID: not of the methods' types.
    _secret(world, "app-creds", type_="Opaque",
            data={"jwt": _issued_jwt(world), "id": secret_id})
    _secret(world, "empty-jwt", type_=JWT_TYPE, data={"other": "x"})
    cases = {
        "wrong-type": ("jwt", {"role": "ci", "secretRef": "app-creds"},
                       ["spec.jwt.secretRef", "Secret app/app-creds is of type 'Opaque'",
                        JWT_TYPE], "VaultAuthInvalid"),
        "no-key": ("jwt", {"role": "ci", "secretRef": "empty-jwt"},
                   ["spec.jwt.secretRef", "has no key 'jwt'"], "VaultAuthInvalid"),
        "no-secret": ("appRole", {"roleId": role_id, "secretRef": "ghost"},
                      ["spec.appRole.secretRef", "Secret app/ghost cannot be read"],
                      "VaultAuthFailed"),
        "approle-opaque": ("appRole", {"roleId": role_id, "secretRef": "app-creds"},
                           ["spec.appRole.secretRef", APPROLE_TYPE], "VaultAuthInvalid"),
        "outside-path": ("appRole", {"roleId": role_id,
                                     "secretIDPath": "/var/run/secrets/kubernetes.io/"
                                                     "serviceaccount/token"},
                         ["spec.appRole.secretIDPath", "is not in", "/approle/app/"],
                         "VaultAuthInvalid"),
        "no-role": ("jwt", {"role": "nope", "serviceAccount": "app-reader"},
                    ["VaultAuth app/no-role", "Vault has no role 'nope' at auth/jwt",
                     "spec.jwt.role"], "VaultAuthFailed"),
        "bad-subject": ("jwt", {"role": "app-sa", "serviceAccount": "intruder"},
                        ["Vault refused ServiceAccount app/intruder for role 'app-sa'",
                         "invalid subject claim (sub)"], "VaultAuthFailed"),
        "api-audience": ("jwt", {"role": "app-sa", "serviceAccount": "app-reader",
                                 "audiences": ["https://kubernetes.default.svc"]},
                         ["spec.jwt.audiences[0]", "API server's own audience"],
                         "VaultAuthInvalid"),
    }
    world.kube.admin.ensure_service_account(APP_NS, "intruder")
    for name, (method, block, _, _) in cases.items():
        _auth(world, name, method, block)
        world.vss(name, vaultAuthRef=name)
    await world.write_kv("kv-secret/info", {"password": world.value("bad-creds")})
    world.start_syncd()
    for name, (_, _, parts, reason) in cases.items():
        condition = await world.wait_condition(name, "Synced", status="False", reason=reason)
        for part in parts:
            assert part in condition["message"], (name, part, condition["message"])
        assert world.secret(name) is None
    # Nothing was sent for the refused Secrets and the path outside the folder.
    assert world.logins("approle") == 0
    await world.stop_syncd()
    output = _outputs(world)
    assert [c for c in world.credentials if c in output] == []


async def test_a_refused_secret_id_says_what_to_fix(world: World) -> None:
    role_id, _ = await _approle(world)
    _secret(world, "stale-id", type_=APPROLE_TYPE, data={"id": world.value("stale-secret-id")})
    _auth(world, "stale", "appRole", {"roleId": role_id, "secretRef": "stale-id"})
    await world.write_kv("kv-secret/info", {"password": world.value("stale")})
    world.vss("stale", vaultAuthRef="stale")
    world.start_syncd()
    condition = await world.wait_condition("stale", "Synced", status="False",
                                           reason="VaultAuthFailed")
    for part in ("VaultAuth app/stale", "Vault refused the SecretID of Secret app/stale-id",
                 "invalid role or secret ID", "spec.appRole.roleId"):
        assert part in condition["message"], (part, condition["message"])
    assert world.logins("approle") >= 1 and world.secret("stale") is None


async def test_secret_id_path_inside_the_namespace_folder(world: World, tmp_path: Path) -> None:
    """VaultClients alone (the folder is a constructor argument): a SecretID file of the
    namespace's folder logs in; one of another namespace's folder is refused."""
    role_id, secret_id = await _approle(world)
    (tmp_path / APP_NS).mkdir()
    (tmp_path / APP_NS / "syncd").write_text(secret_id + "\n")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "syncd").write_text(secret_id)
    connection = parse_vault_connection(world.kube.admin.get(
        GROUP_VERSION, "VaultConnection", "default", OPERATOR_NS) or {})

    def auth(path: str) -> Any:
        return parse_vault_auth({
            "apiVersion": GROUP_VERSION, "kind": "VaultAuth",
            "metadata": {"name": "file", "namespace": APP_NS, "uid": path, "generation": 1},
            "spec": {"method": "appRole", "appRole": {"roleId": role_id,
                                                      "secretIDPath": path}}})

    kube, pool = await connect(kubeconfig=str(world.kubeconfig)), VaultPool()
    addresses = AllowedAddresses(patterns=None, operator_namespace=OPERATOR_NS,
                                 connections=lambda: [world.kube.admin.get(
                                     GROUP_VERSION, "VaultConnection", "default", OPERATOR_NS)
                                     or {}])
    clients = VaultClients(kube=kube, pool=pool, addresses=addresses, secret_id_dir=tmp_path)
    try:
        client = await clients.get(namespace=APP_NS, auth=auth(f"{tmp_path}/app/syncd"),
                                   connection=connection)
        assert client.token and world.logins("approle") == 1
        for path in (f"{tmp_path}/other/syncd", f"{tmp_path}/app/missing"):
            with pytest.raises(AuthError) as refused:
                await clients.get(namespace=APP_NS, auth=auth(path), connection=connection)
            assert "spec.appRole.secretIDPath" in str(refused.value)
            assert secret_id not in str(refused.value)
        assert world.logins("approle") == 1
    finally:
        await kube.close()
        pool.shutdown()
