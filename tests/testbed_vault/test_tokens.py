"""Tokens: child tokens, TTL and expiry on the injected clock, renewal, uses, revocation."""

from __future__ import annotations

import hvac
import pytest
import requests
from hvac import exceptions

from .conftest import ReadyVault, in_thread


async def test_child_token_lookup_fields(vault_ready: ReadyVault, root: hvac.Client) -> None:
    created = await in_thread(
        root.auth.token.create, policies=["reader"], ttl="1h", meta={"app": "x"}
    )
    auth = created["auth"]
    assert auth["client_token"].startswith("hvs.")
    assert auth["policies"] == ["default", "reader"]
    assert (auth["lease_duration"], auth["renewable"], auth["orphan"]) == (3600, True, False)
    user = vault_ready.client(auth["client_token"])
    data = (await in_thread(user.auth.token.lookup_self))["data"]
    for field in (
        "accessor",
        "creation_time",
        "creation_ttl",
        "display_name",
        "entity_id",
        "expire_time",
        "explicit_max_ttl",
        "id",
        "issue_time",
        "meta",
        "num_uses",
        "orphan",
        "path",
        "policies",
        "renewable",
        "ttl",
        "type",
    ):
        assert field in data
    assert (data["creation_ttl"], data["meta"], data["path"]) == (
        3600,
        {"app": "x"},
        "auth/token/create",
    )
    by_root = (await in_thread(root.auth.token.lookup, auth["client_token"]))["data"]
    assert by_root["accessor"] == auth["accessor"] == data["accessor"]


async def test_expiry_on_the_injected_clock(vault_ready: ReadyVault, root: hvac.Client) -> None:
    created = await in_thread(root.auth.token.create, policies=["default"], ttl="10m")
    user = vault_ready.client(created["auth"]["client_token"])
    vault_ready.vault.admin.advance_clock(599)
    assert (await in_thread(user.auth.token.lookup_self))["data"]["ttl"] <= 1
    vault_ready.vault.admin.advance_clock(2)
    with pytest.raises(exceptions.Forbidden) as caught:
        await in_thread(user.auth.token.lookup_self)
    assert "permission denied" in caught.value.errors


async def test_renewal_and_explicit_max_ttl(vault_ready: ReadyVault, root: hvac.Client) -> None:
    created = await in_thread(
        root.auth.token.create, policies=["default"], ttl="10m", explicit_max_ttl="15m"
    )
    user = vault_ready.client(created["auth"]["client_token"])
    vault_ready.vault.admin.advance_clock(300)
    renewed = await in_thread(user.auth.token.renew_self, increment="10m")
    assert renewed["auth"]["lease_duration"] == 600
    vault_ready.vault.admin.advance_clock(500)
    renewed = await in_thread(user.auth.token.renew_self, increment="1h")
    assert renewed["auth"]["lease_duration"] <= 100  # capped at creation + 15m
    vault_ready.vault.admin.advance_clock(101)
    with pytest.raises(exceptions.Forbidden):
        await in_thread(user.auth.token.lookup_self)


async def test_non_renewable(vault_ready: ReadyVault, root: hvac.Client) -> None:
    created = await in_thread(
        root.auth.token.create, policies=["default"], ttl="1h", renewable=False
    )
    user = vault_ready.client(created["auth"]["client_token"])
    with pytest.raises(exceptions.InvalidRequest, match="lease is not renewable"):
        await in_thread(user.auth.token.renew_self)


async def test_num_uses(vault_ready: ReadyVault, root: hvac.Client) -> None:
    created = await in_thread(root.auth.token.create, policies=["default"], num_uses=2)
    user = vault_ready.client(created["auth"]["client_token"])
    assert (await in_thread(user.auth.token.lookup_self))["data"]["num_uses"] == 1
    await in_thread(user.auth.token.lookup_self)
    with pytest.raises(exceptions.Forbidden):
        await in_thread(user.auth.token.lookup_self)


async def test_revocation_cascades_to_children_not_orphans(
    vault_ready: ReadyVault, root: hvac.Client
) -> None:
    await in_thread(
        root.sys.create_or_update_policy,
        "creator",
        'path "auth/token/create*" { capabilities = ["update"] }',
    )
    parent = (await in_thread(root.auth.token.create, policies=["creator"]))["auth"]["client_token"]
    parent_client = vault_ready.client(parent)
    child = (await in_thread(parent_client.auth.token.create, policies=["default"]))["auth"][
        "client_token"
    ]
    orphan = (await in_thread(parent_client.auth.token.create_orphan, policies=["default"]))[
        "auth"
    ]["client_token"]
    with pytest.raises(exceptions.InvalidRequest, match="child policies must be subset of parent"):
        await in_thread(parent_client.auth.token.create, policies=["root"])
    await in_thread(parent_client.auth.token.revoke_self)
    for token in (parent, child):
        with pytest.raises(exceptions.Forbidden):
            await in_thread(vault_ready.client(token).auth.token.lookup_self)
    assert (await in_thread(vault_ready.client(orphan).auth.token.lookup_self))["data"][
        "orphan"
    ] is True
    await in_thread(root.auth.token.revoke, orphan)
    with pytest.raises(exceptions.Forbidden):
        await in_thread(vault_ready.client(orphan).auth.token.lookup_self)
    with pytest.raises(exceptions.Forbidden, match="bad token"):
        await in_thread(root.auth.token.lookup, orphan)


async def test_bearer_header_is_accepted(vault_ready: ReadyVault) -> None:
    response = await in_thread(
        requests.get,
        f"{vault_ready.address}/v1/auth/token/lookup-self",
        headers={"Authorization": f"Bearer {vault_ready.root_token}"},
        timeout=5,
    )
    assert response.json()["data"]["policies"] == ["root"]
