"""Kubernetes auth between the two emulations: Vault asks the Kubernetes emulation's
TokenReview API about a real TokenRequest token, as a real Vault asks a real API server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import hvac
import pytest
from hvac import exceptions

from testbed.kube import Kube, running_kube

from .conftest import ReadyVault, in_thread


@pytest.fixture
async def kube() -> AsyncIterator[Kube]:
    async with running_kube() as running:
        running.admin.create_namespace("apps")
        running.admin.ensure_service_account("apps", "syncd")
        running.admin.ensure_service_account("apps", "intruder")
        running.admin.ensure_service_account("kube-system", "vault-reviewer")
        running.admin.grant("kube-system", "vault-reviewer", "system:auth-delegator")
        yield running


async def _configure(vault_ready: ReadyVault, kube: Kube) -> hvac.Client:
    client = vault_ready.client()
    await in_thread(client.sys.enable_auth_method, method_type="kubernetes")
    reviewer = kube.admin.mint_token("kube-system", "vault-reviewer")
    await in_thread(
        client.auth.kubernetes.configure, kubernetes_host=kube.url, token_reviewer_jwt=reviewer
    )
    await in_thread(
        client.auth.kubernetes.create_role, name="syncd",
        bound_service_account_names=["syncd"], bound_service_account_namespaces=["apps"],
        policies=["default"], audience="vault",
    )
    return client


async def test_login_with_a_token_request_token(vault_ready: ReadyVault, kube: Kube) -> None:
    await _configure(vault_ready, kube)
    jwt = kube.admin.mint_token("apps", "syncd", audiences=["vault"])
    login = vault_ready.client(token="")
    reply = await in_thread(login.auth.kubernetes.login, role="syncd", jwt=jwt)
    auth = reply["auth"]
    assert auth["metadata"]["service_account_name"] == "syncd"
    assert auth["metadata"]["service_account_namespace"] == "apps"
    assert "default" in auth["policies"]
    assert kube.requests.count("create", "tokenreviews*") == 1


@pytest.mark.parametrize(
    ("account", "audience", "message"),
    [
        ("intruder", "vault", "service account name not authorized"),
        ("syncd", "not-vault", None),
    ],
)
async def test_login_rejections(
    vault_ready: ReadyVault, kube: Kube, account: str, audience: str, message: str | None
) -> None:
    await _configure(vault_ready, kube)
    jwt = kube.admin.mint_token("apps", account, audiences=[audience])
    login = vault_ready.client(token="")
    with pytest.raises(exceptions.Forbidden) as refused:
        await in_thread(login.auth.kubernetes.login, role="syncd", jwt=jwt)
    if message:
        assert message in str(refused.value)


async def test_deleted_service_account_token_is_refused_by_token_review(
    vault_ready: ReadyVault, kube: Kube
) -> None:
    await _configure(vault_ready, kube)
    jwt = kube.admin.mint_token("apps", "syncd", audiences=["vault"])
    kube.admin.delete("v1", "ServiceAccount", "syncd", "apps")
    login = vault_ready.client(token="")
    with pytest.raises(exceptions.Forbidden):
        await in_thread(login.auth.kubernetes.login, role="syncd", jwt=jwt)
    assert kube.requests.count("create", "tokenreviews*") == 1
