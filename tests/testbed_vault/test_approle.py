"""AppRole: role, role-id, secret-id, login and its rejections."""

from __future__ import annotations

import hvac
import pytest
from hvac import exceptions

from .conftest import ReadyVault, in_thread


async def test_approle_login(vault_ready: ReadyVault, root: hvac.Client) -> None:
    approle = root.auth.approle
    await in_thread(root.sys.enable_auth_method, "approle")
    await in_thread(
        root.sys.create_or_update_policy,
        "app",
        'path "secret/data/app/*" { capabilities = ["read"] }',
    )
    await in_thread(
        approle.create_or_update_approle,
        "ci",
        token_policies=["app"],
        token_ttl="20m",
        secret_id_num_uses=2,
    )
    role_id = (await in_thread(approle.read_role_id, "ci"))["data"]["role_id"]
    generated = (await in_thread(approle.generate_secret_id, "ci"))["data"]
    assert set(generated) >= {
        "secret_id",
        "secret_id_accessor",
        "secret_id_ttl",
        "secret_id_num_uses",
    }
    anonymous = hvac.Client(url=vault_ready.address)
    login = await in_thread(
        anonymous.auth.approle.login, role_id, generated["secret_id"], use_token=False
    )
    auth = login["auth"]
    assert auth["policies"] == ["app", "default"]
    assert (auth["lease_duration"], auth["metadata"]) == (1200, {"role_name": "ci"})
    await in_thread(root.secrets.kv.v2.create_or_update_secret, "app/x", secret={"v": "1"})
    app = vault_ready.client(auth["client_token"])
    assert await in_thread(
        app.secrets.kv.v2.read_secret_version, "app/x", raise_on_deleted_version=True
    )
    # Second use still fine, the third is past secret_id_num_uses.
    await in_thread(anonymous.auth.approle.login, role_id, generated["secret_id"], use_token=False)
    with pytest.raises(exceptions.InvalidRequest, match="invalid role or secret ID"):
        await in_thread(
            anonymous.auth.approle.login, role_id, generated["secret_id"], use_token=False
        )
    with pytest.raises(exceptions.InvalidRequest, match="invalid role or secret ID"):
        await in_thread(anonymous.auth.approle.login, "not-a-role", "x", use_token=False)
    with pytest.raises(exceptions.InvalidRequest, match="missing role_id"):
        await in_thread(anonymous.auth.approle.login, "", "x", use_token=False)


async def test_custom_role_id_and_secret_id_ttl(vault_ready: ReadyVault, root: hvac.Client) -> None:
    approle = root.auth.approle
    await in_thread(root.sys.enable_auth_method, "approle")
    await in_thread(
        approle.create_or_update_approle, "svc", token_policies=["default"], secret_id_ttl="10m"
    )
    await in_thread(approle.update_role_id, "svc", "my-role-id")
    assert (await in_thread(approle.read_role_id, "svc"))["data"]["role_id"] == "my-role-id"
    secret_id = (await in_thread(approle.generate_secret_id, "svc"))["data"]["secret_id"]
    vault_ready.vault.admin.advance_clock(601)
    anonymous = hvac.Client(url=vault_ready.address)
    with pytest.raises(exceptions.InvalidRequest, match="invalid role or secret ID"):
        await in_thread(anonymous.auth.approle.login, "my-role-id", secret_id, use_token=False)
    assert "svc" in (await in_thread(approle.list_roles))["data"]["keys"]
    role = (await in_thread(approle.read_role, "svc"))["data"]
    assert (role["secret_id_ttl"], role["bind_secret_id"]) == (600, True)
