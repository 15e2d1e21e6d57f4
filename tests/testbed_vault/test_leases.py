"""Leases through hvac: renew up to the max TTL, revoke, expiry on the clock, ownership, ACL.

The ``database`` fixture's role ``app`` gives 60 s leases renewable up to 300 s from issue.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hvac
import pytest
from hvac import exceptions

from testbed.vault import running_vault

from .conftest import DB_DEFAULT_TTL, DB_MAX_TTL, ReadyVault, in_thread

CREDS_POLICY = 'path "database/creds/app" { capabilities = ["read"] }'


async def _creds(client: hvac.Client) -> dict[str, Any]:
    result: dict[str, Any] = await in_thread(client.secrets.database.generate_credentials, "app")
    return result


async def _token(root: hvac.Client, **kwargs: Any) -> str:
    await in_thread(root.sys.create_or_update_policy, "creds", CREDS_POLICY)
    created = await in_thread(root.auth.token.create, policies=["creds"], **kwargs)
    token: str = created["auth"]["client_token"]
    return token


async def test_renew_answers_with_the_lease_and_extends_it(
    vault_ready: ReadyVault, database: hvac.Client
) -> None:
    creds = await _creds(database)
    lease_id = creds["lease_id"]
    assert lease_id.startswith("database/creds/app/")
    assert (creds["renewable"], creds["lease_duration"]) == (True, DB_DEFAULT_TTL)

    vault_ready.vault.admin.advance_clock(50)
    renewed = await in_thread(database.sys.renew_lease, lease_id, increment=120)
    assert renewed["lease_id"] == lease_id
    assert (renewed["renewable"], renewed["lease_duration"]) == (True, 120)
    assert renewed["data"] is None and renewed["warnings"] is None

    looked_up = (await in_thread(database.sys.read_lease, lease_id))["data"]
    assert looked_up["id"] == lease_id
    assert looked_up["renewable"] is True
    assert 119 <= looked_up["ttl"] <= 120
    assert looked_up["last_renewal"] is not None
    # Still valid past the original 60 s because of the renewal.
    vault_ready.vault.admin.advance_clock(60)
    assert vault_ready.vault.admin.credentials_valid(creds["data"]["username"],
                                                     creds["data"]["password"])


async def test_renew_without_increment_uses_the_role_default_ttl(
    vault_ready: ReadyVault, database: hvac.Client
) -> None:
    creds = await _creds(database)
    vault_ready.vault.admin.advance_clock(30)
    renewed = await in_thread(database.sys.renew_lease, creds["lease_id"])
    assert renewed["lease_duration"] == DB_DEFAULT_TTL


async def test_renewals_stop_at_the_max_ttl_then_the_lease_expires(
    vault_ready: ReadyVault, database: hvac.Client
) -> None:
    admin = vault_ready.vault.admin
    creds = await _creds(database)
    username, password = creds["data"]["username"], creds["data"]["password"]
    lease_id = creds["lease_id"]
    for _ in range(4):  # 4 x 50 s: each renewal gives the full 60 s
        admin.advance_clock(50)
        renewed = await in_thread(database.sys.renew_lease, lease_id)
        assert renewed["lease_duration"] == DB_DEFAULT_TTL
    admin.advance_clock(50)  # 250 s since issue: 50 s left of the 300 s max TTL
    capped = await in_thread(database.sys.renew_lease, lease_id, increment=120)
    assert capped["lease_id"] == lease_id
    assert 49 <= capped["lease_duration"] <= 50
    assert len(capped["warnings"]) == 1
    warning = capped["warnings"][0]
    assert warning.startswith('TTL of "2m0s" exceeded the effective max_ttl of "4')
    assert warning.endswith('s"; TTL value is capped accordingly')
    assert admin.credentials_valid(username, password)

    admin.advance_clock(51)  # past the max TTL: expired, credentials revoked
    assert not admin.credentials_valid(username, password)
    with pytest.raises(exceptions.InvalidRequest, match="lease not found"):
        await in_thread(database.sys.renew_lease, lease_id)
    with pytest.raises(exceptions.InvalidRequest, match="invalid lease"):
        await in_thread(database.sys.read_lease, lease_id)


async def test_an_unrenewed_lease_expires_after_its_ttl(
    vault_ready: ReadyVault, database: hvac.Client
) -> None:
    admin = vault_ready.vault.admin
    creds = await _creds(database)
    username, password = creds["data"]["username"], creds["data"]["password"]
    admin.advance_clock(DB_DEFAULT_TTL - 5)
    assert admin.credentials_valid(username, password)
    admin.advance_clock(6)
    assert not admin.credentials_valid(username, password)
    assert admin.leases("database/") == []


async def test_revoke_is_204_drops_the_credentials_and_is_idempotent(
    vault_ready: ReadyVault, database: hvac.Client
) -> None:
    admin = vault_ready.vault.admin
    creds = await _creds(database)
    other = await _creds(database)
    response = await in_thread(database.sys.revoke_lease, creds["lease_id"])
    assert response.status_code == 204
    assert not admin.credentials_valid(creds["data"]["username"], creds["data"]["password"])
    assert admin.credentials_valid(other["data"]["username"], other["data"]["password"])
    with pytest.raises(exceptions.InvalidRequest, match="lease not found"):
        await in_thread(database.sys.renew_lease, creds["lease_id"])
    again = await in_thread(database.sys.revoke_lease, creds["lease_id"])
    assert again.status_code == 204
    with pytest.raises(exceptions.InvalidRequest, match="lease_id must be specified"):
        await in_thread(database.sys.revoke_lease, "")


async def test_list_and_revoke_prefix(vault_ready: ReadyVault, database: hvac.Client) -> None:
    admin = vault_ready.vault.admin
    first, second = await _creds(database), await _creds(database)
    listed = await in_thread(database.sys.list_leases, "database/creds/app")
    assert sorted(listed["data"]["keys"]) == sorted(
        [first["lease_id"].rsplit("/", 1)[1], second["lease_id"].rsplit("/", 1)[1]]
    )
    assert (await in_thread(database.sys.list_leases, "database/"))["data"]["keys"] == ["creds/"]
    await in_thread(database.sys.revoke_prefix, "database/creds/app")
    for creds in (first, second):
        assert not admin.credentials_valid(creds["data"]["username"], creds["data"]["password"])
    assert admin.leases() == []


async def test_revoking_a_token_revokes_its_leases(
    vault_ready: ReadyVault, database: hvac.Client
) -> None:
    admin = vault_ready.vault.admin
    token = await _token(database)
    mine = await _creds(vault_ready.client(token))
    theirs = await _creds(database)  # the root token's
    await in_thread(database.auth.token.revoke, token)
    assert not admin.credentials_valid(mine["data"]["username"], mine["data"]["password"])
    assert admin.credentials_valid(theirs["data"]["username"], theirs["data"]["password"])


async def test_an_expired_token_takes_its_leases_with_it(
    vault_ready: ReadyVault, database: hvac.Client
) -> None:
    admin = vault_ready.vault.admin
    token = await _token(database, ttl="30s")
    creds = await _creds(vault_ready.client(token))
    assert creds["lease_duration"] == DB_DEFAULT_TTL  # the lease is not capped by the token
    admin.advance_clock(31)
    assert not admin.credentials_valid(creds["data"]["username"], creds["data"]["password"])


async def test_renew_needs_update_on_sys_leases_renew(
    vault_ready: ReadyVault, database: hvac.Client
) -> None:
    # Vault's default policy grants sys/leases/renew and lookup; a token without it may not.
    bare = vault_ready.client(await _token(database, no_default_policy=True))
    creds = await _creds(bare)
    with pytest.raises(exceptions.Forbidden):
        await in_thread(bare.sys.renew_lease, creds["lease_id"])
    with pytest.raises(exceptions.Forbidden):
        await in_thread(bare.sys.read_lease, creds["lease_id"])
    with pytest.raises(exceptions.Forbidden):
        await in_thread(bare.sys.revoke_lease, creds["lease_id"])

    default = vault_ready.client(await _token(database))
    renewed = await in_thread(default.sys.renew_lease, creds["lease_id"])
    assert renewed["lease_id"] == creds["lease_id"]
    with pytest.raises(exceptions.Forbidden):  # revoking is not in the default policy
        await in_thread(default.sys.revoke_lease, creds["lease_id"])
    with pytest.raises(exceptions.Forbidden):  # listing needs sudo
        await in_thread(default.sys.list_leases, "database/")

    await in_thread(
        database.sys.create_or_update_policy,
        "revoker",
        'path "sys/leases/revoke" { capabilities = ["update"] }\n'
        'path "sys/leases/revoke-prefix/*" { capabilities = ["update"] }',
    )
    created = await in_thread(database.auth.token.create, policies=["revoker"])
    revoker = vault_ready.client(created["auth"]["client_token"])
    with pytest.raises(exceptions.Forbidden):  # revoke-prefix needs sudo too
        await in_thread(revoker.sys.revoke_prefix, "database/creds/app")
    await in_thread(revoker.sys.revoke_lease, creds["lease_id"])
    assert vault_ready.vault.admin.leases() == []


async def test_renewal_refused_by_the_database(
    vault_ready: ReadyVault, database: hvac.Client
) -> None:
    admin = vault_ready.vault.admin
    creds = await _creds(database)
    admin.refuse_renewals("app")
    with pytest.raises(exceptions.InvalidRequest, match="failed to renew entry"):
        await in_thread(database.sys.renew_lease, creds["lease_id"])
    # A refused renewal leaves the lease (and the credentials) as they were, until expiry.
    assert admin.credentials_valid(creds["data"]["username"], creds["data"]["password"])
    admin.refuse_renewals("app", refused=False)
    renewed = await in_thread(database.sys.renew_lease, creds["lease_id"])
    assert renewed["lease_duration"] == DB_DEFAULT_TTL


async def test_leases_survive_a_process_restart(tmp_path: Path) -> None:
    state = tmp_path / "state"
    async with running_vault(state_dir=state) as vault:
        init = vault.admin.bootstrap(shares=1, threshold=1)
        root = hvac.Client(url=vault.address, token=init.root_token)
        await in_thread(root.sys.enable_secrets_engine, "database")
        await in_thread(root.secrets.database.configure, "pg", "postgresql-database-plugin",
                        allowed_roles=["app"], verify_connection=False)
        await in_thread(root.secrets.database.create_role, "app", "pg", ["CREATE ROLE x;"],
                        default_ttl=DB_DEFAULT_TTL, max_ttl=DB_MAX_TTL)
        creds = await _creds(root)
    async with running_vault(state_dir=state) as vault:
        vault.admin.unseal(init.keys)
        root = hvac.Client(url=vault.address, token=init.root_token)
        renewed = await in_thread(root.sys.renew_lease, creds["lease_id"], increment=90)
        assert (renewed["lease_id"], renewed["lease_duration"]) == (creds["lease_id"], 90)
        assert vault.admin.credentials_valid(creds["data"]["username"], creds["data"]["password"])
