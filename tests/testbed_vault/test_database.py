"""The database engine through hvac: connections, roles, dynamic and static credentials."""

from __future__ import annotations

from datetime import datetime

import hvac
import pytest
import requests
from hvac import exceptions

from .conftest import DB_DEFAULT_TTL, DB_MAX_TTL, ReadyVault, in_thread

STATIC_PERIOD = 3600


async def _static_role(client: hvac.Client) -> None:
    await in_thread(
        client.secrets.database.create_static_role,
        "static-app",
        "pg",
        "app-user",
        ["ALTER USER \"{{name}}\" WITH PASSWORD '{{password}}';"],
        rotation_period=STATIC_PERIOD,
    )


def _timestamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def test_mount_connection_and_role_read_back(database: hvac.Client) -> None:
    mounts = await in_thread(database.sys.list_mounted_secrets_engines)
    assert mounts["database/"]["type"] == "database"
    connection = (await in_thread(database.secrets.database.read_connection, "pg"))["data"]
    assert connection["plugin_name"] == "postgresql-database-plugin"
    assert connection["allowed_roles"] == ["app", "static-app"]
    assert connection["connection_details"]["username"] == "vault"
    assert "db-root-password" not in str(connection)  # the root password is never read back
    role = (await in_thread(database.secrets.database.read_role, "app"))["data"]
    assert role["db_name"] == "pg"
    assert (role["default_ttl"], role["max_ttl"]) == (DB_DEFAULT_TTL, DB_MAX_TTL)
    assert role["creation_statements"] == [
        "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}';"
    ]
    assert (await in_thread(database.secrets.database.list_roles))["data"]["keys"] == ["app"]
    assert (await in_thread(database.secrets.database.list_connections))["data"]["keys"] == [
        "pg"
    ]


async def test_role_validation(database: hvac.Client) -> None:
    with pytest.raises(exceptions.InvalidRequest, match="ttl cannot be greater than max_ttl"):
        await in_thread(database.secrets.database.create_role, "bad", "pg", ["CREATE ROLE x;"],
                        default_ttl=600, max_ttl=60)
    with pytest.raises(exceptions.InvalidRequest, match="empty database name"):
        await in_thread(database.secrets.database.create_role, "bad", "", ["CREATE ROLE x;"])


async def test_creds_issue_distinct_users_under_a_renewable_lease(
    vault_ready: ReadyVault, database: hvac.Client
) -> None:
    admin = vault_ready.vault.admin
    first = await in_thread(database.secrets.database.generate_credentials, "app")
    second = await in_thread(database.secrets.database.generate_credentials, "app")
    assert first["lease_id"].startswith("database/creds/app/")
    assert (first["renewable"], first["lease_duration"]) == (True, DB_DEFAULT_TTL)
    assert first["mount_type"] == "database"
    username, password = first["data"]["username"], first["data"]["password"]
    assert username.startswith("v-root-app-") and len(username) <= 63
    assert len(password) == 20
    assert first["data"] != second["data"] and first["lease_id"] != second["lease_id"]
    assert admin.credentials_valid(username, password)
    assert not admin.credentials_valid(username, second["data"]["password"])
    assert not admin.credentials_valid("nobody", password)


async def test_creds_refusals(database: hvac.Client) -> None:
    with pytest.raises(exceptions.InvalidRequest, match="unknown role: nope"):
        await in_thread(database.secrets.database.generate_credentials, "nope")
    await in_thread(database.secrets.database.create_role, "other", "pg", ["CREATE ROLE x;"])
    with pytest.raises(exceptions.InternalServerError, match='"other" is not an allowed role'):
        await in_thread(database.secrets.database.generate_credentials, "other")
    await in_thread(database.secrets.database.create_static_role, "other-static", "pg", "u", [],
                    rotation_period=60)
    with pytest.raises(exceptions.InternalServerError,
                       match='"other-static" is not an allowed role'):
        await in_thread(database.secrets.database.get_static_credentials, "other-static")
    await in_thread(database.secrets.database.create_role, "orphan", "gone", ["CREATE ROLE x;"])
    with pytest.raises(exceptions.InternalServerError,
                       match='failed to find entry for connection with name: "gone"'):
        await in_thread(database.secrets.database.generate_credentials, "orphan")


async def test_static_creds_rotate_with_the_period(
    vault_ready: ReadyVault, database: hvac.Client
) -> None:
    admin = vault_ready.vault.admin
    await _static_role(database)
    creds = (await in_thread(database.secrets.database.get_static_credentials, "static-app"))
    assert creds["lease_id"] == "" and creds["lease_duration"] == 0
    data = creds["data"]
    assert data["username"] == "app-user"
    assert data["rotation_period"] == STATIC_PERIOD
    assert STATIC_PERIOD - 2 <= data["ttl"] <= STATIC_PERIOD
    first_rotation = _timestamp(data["last_vault_rotation"])
    assert admin.credentials_valid("app-user", data["password"])

    admin.advance_clock(STATIC_PERIOD - 100)
    same = (await in_thread(database.secrets.database.get_static_credentials, "static-app"))
    assert same["data"]["password"] == data["password"]
    assert 98 <= same["data"]["ttl"] <= 100

    admin.advance_clock(150)  # the rotation was due 50 s ago
    assert not admin.credentials_valid("app-user", data["password"])
    rotated = (await in_thread(database.secrets.database.get_static_credentials, "static-app"))
    assert rotated["data"]["password"] != data["password"]
    assert admin.credentials_valid("app-user", rotated["data"]["password"])
    # Rotated at the scheduled moment, so the next one is a period after that.
    assert _timestamp(rotated["data"]["last_vault_rotation"]) == pytest.approx(
        first_rotation + STATIC_PERIOD, abs=1
    )
    assert STATIC_PERIOD - 52 <= rotated["data"]["ttl"] <= STATIC_PERIOD - 49

    role = (await in_thread(database.secrets.database.read_static_role, "static-app"))["data"]
    assert (role["username"], role["rotation_period"]) == ("app-user", STATIC_PERIOD)
    assert "password" not in role


async def test_rotate_role_rotates_now(vault_ready: ReadyVault, database: hvac.Client) -> None:
    await _static_role(database)
    before = (await in_thread(database.secrets.database.get_static_credentials, "static-app"))
    vault_ready.vault.admin.advance_clock(600)
    response = await in_thread(
        database.secrets.database.rotate_static_role_credentials, "static-app"
    )
    assert response.status_code == 204
    after = (await in_thread(database.secrets.database.get_static_credentials, "static-app"))
    assert after["data"]["password"] != before["data"]["password"]
    assert STATIC_PERIOD - 2 <= after["data"]["ttl"] <= STATIC_PERIOD
    with pytest.raises(exceptions.InvalidRequest):
        await in_thread(database.secrets.database.rotate_static_role_credentials, "nope")


async def test_static_role_validation(database: hvac.Client) -> None:
    with pytest.raises(exceptions.InvalidRequest, match="rotation_period must be 5 seconds"):
        await in_thread(database.secrets.database.create_static_role, "s", "pg", "u", [],
                        rotation_period=2)


async def test_http_admin_refuses_renewals_and_checks_credentials(
    vault_ready: ReadyVault, database: hvac.Client
) -> None:
    address = vault_ready.address
    creds = await in_thread(database.secrets.database.generate_credentials, "app")
    body = {"username": creds["data"]["username"], "password": creds["data"]["password"]}
    valid = await in_thread(requests.post, f"{address}/_testbed/database/valid", json=body,
                            timeout=5)
    assert valid.json() == {"valid": True}
    refused = await in_thread(requests.put, f"{address}/_testbed/database/refuse-renewals",
                              json={"role": "app"}, timeout=5)
    assert refused.status_code == 204
    with pytest.raises(exceptions.InvalidRequest, match="failed to renew entry"):
        await in_thread(database.sys.renew_lease, creds["lease_id"])
    leases = await in_thread(requests.get, f"{address}/_testbed/leases", timeout=5)
    assert [lease["id"] for lease in leases.json()["leases"]] == [creds["lease_id"]]
    await in_thread(database.sys.revoke_lease, creds["lease_id"])
    valid = await in_thread(requests.post, f"{address}/_testbed/database/valid", json=body,
                            timeout=5)
    assert valid.json() == {"valid": False}
