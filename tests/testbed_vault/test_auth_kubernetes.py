"""Kubernetes auth: config, roles, and login validated through a (fake) TokenReview API."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import hvac
import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hvac import exceptions

from .conftest import ReadyVault, in_thread
from .tokenreview import PATH, FakeTokenReview, fake_tokenreview

SIGNING_KEY = ec.generate_private_key(ec.SECP256R1())
UID = "0b9a6f0e-3c43-4d36-9d6b-6f0e0c0f1a11"


def projected_jwt(
    namespace: str = "apps",
    name: str = "syncd",
    uid: str = UID,
    aud: str = "vault",
    key: ec.EllipticCurvePrivateKey = SIGNING_KEY,
) -> str:
    now = int(time.time())
    claims = {
        "aud": [aud],
        "exp": now + 3600,
        "iat": now,
        "iss": "https://kubernetes.default.svc.cluster.local",
        "sub": f"system:serviceaccount:{namespace}:{name}",
        "kubernetes.io": {
            "namespace": namespace,
            "pod": {"name": "syncd-0", "uid": "pod-uid"},
            "serviceaccount": {"name": name, "uid": uid},
        },
    }
    return jwt.encode(claims, key, algorithm="ES256")


def legacy_jwt(namespace: str = "apps", name: str = "syncd", uid: str = UID) -> str:
    claims = {
        "iss": "kubernetes/serviceaccount",
        "sub": f"system:serviceaccount:{namespace}:{name}",
        "kubernetes.io/serviceaccount/namespace": namespace,
        "kubernetes.io/serviceaccount/secret.name": f"{name}-token-abcde",
        "kubernetes.io/serviceaccount/service-account.name": name,
        "kubernetes.io/serviceaccount/service-account.uid": uid,
    }
    return jwt.encode(claims, SIGNING_KEY, algorithm="ES256")


@pytest.fixture
async def reviewer() -> AsyncIterator[FakeTokenReview]:
    async with fake_tokenreview() as fake:
        yield fake


@pytest.fixture
async def kube_root(root: hvac.Client, reviewer: FakeTokenReview) -> hvac.Client:
    await in_thread(root.sys.enable_auth_method, "kubernetes")
    await in_thread(root.auth.kubernetes.configure, reviewer.url, token_reviewer_jwt="reviewer-jwt")
    await in_thread(
        root.sys.create_or_update_policy,
        "syncd",
        'path "secret/data/*" { capabilities = ["read"] }',
    )
    await in_thread(
        root.auth.kubernetes.create_role,
        "syncd",
        bound_service_account_names=["syncd", "sync-*"],
        bound_service_account_namespaces=["apps", "team-*"],
        policies=["syncd"],
        ttl="1h",
        audience="vault",
    )
    return root


def _login(ready: ReadyVault, role: str, token: str) -> dict[str, Any]:
    response: dict[str, Any] = hvac.Client(url=ready.address).auth.kubernetes.login(
        role, token, use_token=False
    )
    return response


async def test_login_success_projected(
    vault_ready: ReadyVault, kube_root: hvac.Client, reviewer: FakeTokenReview
) -> None:
    token = projected_jwt()
    reviewer.valid[token] = ("apps", "syncd", UID)
    response = await in_thread(_login, vault_ready, "syncd", token)
    auth = response["auth"]
    assert auth["policies"] == auth["token_policies"] == ["default", "syncd"]
    assert auth["metadata"] == {
        "role": "syncd",
        "service_account_name": "syncd",
        "service_account_namespace": "apps",
        "service_account_secret_name": "",
        "service_account_uid": UID,
    }
    assert (auth["lease_duration"], auth["renewable"], auth["token_type"]) == (
        3600,
        True,
        "service",
    )
    (review,) = reviewer.requests
    assert review["authorization"] == "Bearer reviewer-jwt"
    assert review["body"]["kind"] == "TokenReview"
    assert review["body"]["spec"] == {"token": token, "audiences": ["vault"]}
    await in_thread(kube_root.secrets.kv.v2.create_or_update_secret, "x", secret={"v": "1"})
    user = vault_ready.client(auth["client_token"])
    assert (
        await in_thread(user.secrets.kv.v2.read_secret_version, "x", raise_on_deleted_version=True)
    )["data"]["data"] == {"v": "1"}
    lookup = (await in_thread(user.auth.token.lookup_self))["data"]
    assert (lookup["path"], lookup["display_name"]) == (
        "auth/kubernetes/login",
        "kubernetes-apps-syncd",
    )


async def test_login_legacy_token_uses_its_own_jwt_as_bearer(
    vault_ready: ReadyVault, kube_root: hvac.Client, reviewer: FakeTokenReview
) -> None:
    await in_thread(kube_root.auth.kubernetes.configure, reviewer.url)
    body = {
        "bound_service_account_names": "*",
        "bound_service_account_namespaces": "*",
        "token_policies": "syncd",
    }
    await in_thread(kube_root.adapter.post, "/v1/auth/kubernetes/role/legacy", json=body)
    token = legacy_jwt(namespace="any", name="thing")
    reviewer.valid[token] = ("any", "thing", UID)
    auth = (await in_thread(_login, vault_ready, "legacy", token))["auth"]
    assert auth["metadata"]["service_account_secret_name"] == "thing-token-abcde"
    assert reviewer.requests[-1]["authorization"] == f"Bearer {token}"


async def test_glob_bounds_match(
    vault_ready: ReadyVault, kube_root: hvac.Client, reviewer: FakeTokenReview
) -> None:
    token = projected_jwt(namespace="team-blue", name="sync-worker")
    reviewer.valid[token] = ("team-blue", "sync-worker", UID)
    assert (await in_thread(_login, vault_ready, "syncd", token))["auth"]["client_token"]


@pytest.mark.parametrize(
    ("role", "token", "status", "message"),
    [
        ("", "x", 400, "missing role"),
        ("syncd", "", 400, "missing jwt"),
        ("nope", "x", 400, 'invalid role name "nope"'),
        ("syncd", projected_jwt(name="intruder"), 403, "service account name not authorized"),
        ("syncd", projected_jwt(namespace="kube-system"), 403, "namespace not authorized"),
        (
            "syncd",
            projected_jwt(aud="other"),
            403,
            "invalid audience (aud) claim: audience claim does not match any expected audience",
        ),
        ("syncd", projected_jwt(), 403, "permission denied"),  # TokenReview: not authenticated
    ],
)
async def test_login_rejections(
    *,
    vault_ready: ReadyVault,
    kube_root: hvac.Client,
    role: str,
    token: str,
    status: int,
    message: str,
) -> None:
    response = await in_thread(
        requests.post,
        f"{vault_ready.address}/v1/auth/kubernetes/login",
        json={"role": role, "jwt": token},
        timeout=5,
    )
    assert (response.status_code, response.json()) == (status, {"errors": [message]})


async def test_reviewed_user_must_match_the_claims(
    vault_ready: ReadyVault, kube_root: hvac.Client, reviewer: FakeTokenReview
) -> None:
    token = projected_jwt()
    reviewer.valid[token] = ("apps", "syncd", "another-uid")
    with pytest.raises(exceptions.Forbidden, match="permission denied"):
        await in_thread(_login, vault_ready, "syncd", token)


async def test_unconfigured_backend(vault_ready: ReadyVault, root: hvac.Client) -> None:
    await in_thread(root.sys.enable_auth_method, "kubernetes", path="k8s")
    await in_thread(
        root.auth.kubernetes.create_role,
        "r",
        bound_service_account_names=["*"],
        bound_service_account_namespaces=["*"],
        mount_point="k8s",
    )
    with pytest.raises(
        exceptions.InternalServerError, match="could not load backend configuration"
    ):
        await in_thread(
            lambda: hvac.Client(url=vault_ready.address).auth.kubernetes.login(
                "r", projected_jwt(), mount_point="k8s"
            )
        )


async def test_https_reviewer_with_ca(
    vault_ready: ReadyVault, root: hvac.Client, tmp_path: Path
) -> None:
    async with fake_tokenreview(tls_dir=tmp_path) as reviewer:
        await in_thread(root.sys.enable_auth_method, "kubernetes")
        await in_thread(
            root.auth.kubernetes.configure, reviewer.url, kubernetes_ca_cert=reviewer.ca_pem
        )
        await in_thread(
            root.auth.kubernetes.create_role,
            "r",
            bound_service_account_names=["syncd"],
            bound_service_account_namespaces=["apps"],
        )
        token = projected_jwt()
        reviewer.valid[token] = ("apps", "syncd", UID)
        assert (await in_thread(_login, vault_ready, "r", token))["auth"]["client_token"]
        # Without the CA the reviewer's certificate is not trusted: permission denied.
        await in_thread(root.auth.kubernetes.configure, reviewer.url)
        with pytest.raises(exceptions.Forbidden):
            await in_thread(_login, vault_ready, "r", token)
    assert reviewer.url.startswith("https://")
    assert PATH.endswith("tokenreviews")


async def test_pem_keys_check_the_signature(
    vault_ready: ReadyVault, kube_root: hvac.Client, reviewer: FakeTokenReview
) -> None:
    public = (
        SIGNING_KEY.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    body = {"kubernetes_host": reviewer.url, "pem_keys": [public]}
    await in_thread(kube_root.adapter.post, "/v1/auth/kubernetes/config", json=body)
    good = projected_jwt()
    forged = projected_jwt(key=ec.generate_private_key(ec.SECP256R1()))
    reviewer.valid[good] = reviewer.valid[forged] = ("apps", "syncd", UID)
    assert (await in_thread(_login, vault_ready, "syncd", good))["auth"]["client_token"]
    with pytest.raises(exceptions.Forbidden, match="permission denied"):
        await in_thread(_login, vault_ready, "syncd", forged)


async def test_role_and_config_reads(
    vault_ready: ReadyVault, kube_root: hvac.Client, reviewer: FakeTokenReview
) -> None:
    role = await in_thread(kube_root.auth.kubernetes.read_role, "syncd")
    assert role["bound_service_account_names"] == ["syncd", "sync-*"]
    assert (role["token_policies"], role["policies"], role["token_ttl"], role["ttl"]) == (
        ["syncd"],
        ["syncd"],
        3600,
        3600,
    )
    assert role["audience"] == "vault"
    config = await in_thread(kube_root.auth.kubernetes.read_config)
    assert config["kubernetes_host"] == reviewer.url
    assert config["token_reviewer_jwt_set"] is True
    assert "token_reviewer_jwt" not in config
    assert (await in_thread(kube_root.auth.kubernetes.list_roles))["keys"] == ["syncd"]
    with pytest.raises(
        exceptions.InvalidRequest, match='"bound_service_account_names" can not be empty'
    ):
        await in_thread(
            kube_root.auth.kubernetes.create_role,
            "bad",
            bound_service_account_names=[],
            bound_service_account_namespaces=["a"],
        )
