"""KV v1: read/write/delete/list, and ttl as the advisory lease_duration."""

from __future__ import annotations

import hvac
import pytest
import requests
from hvac import exceptions

from .conftest import ReadyVault, in_thread


async def test_kv_v1_round_trip(vault_ready: ReadyVault, root: hvac.Client) -> None:
    await in_thread(root.sys.enable_secrets_engine, "kv", path="kv1", options={"version": "1"})
    kv = root.secrets.kv.v1
    response = await in_thread(
        kv.create_or_update_secret, "app/db", {"user": "u", "ttl": "1h"}, mount_point="kv1"
    )
    assert response.status_code == 204
    await in_thread(kv.create_or_update_secret, "app/cache", {"k": "v"}, mount_point="kv1")
    read = await in_thread(kv.read_secret, "app/db", mount_point="kv1")
    assert read["data"] == {"user": "u", "ttl": "1h"}
    assert read["lease_duration"] == 3600
    assert read["mount_type"] == "kv"
    default = await in_thread(kv.read_secret, "app/cache", mount_point="kv1")
    assert default["lease_duration"] == 2764800
    assert (await in_thread(kv.list_secrets, "app", mount_point="kv1"))["data"]["keys"] == [
        "cache",
        "db",
    ]
    listed = await in_thread(
        requests.get,
        f"{vault_ready.address}/v1/kv1/?list=true",
        headers={"X-Vault-Token": vault_ready.root_token},
        timeout=5,
    )
    assert listed.json()["data"]["keys"] == ["app/"]
    await in_thread(kv.delete_secret, "app/db", mount_point="kv1")
    with pytest.raises(exceptions.InvalidPath):
        await in_thread(kv.read_secret, "app/db", mount_point="kv1")
    with pytest.raises(exceptions.InvalidRequest, match="error converting input"):
        await in_thread(kv.create_or_update_secret, "bad", {"ttl": "soon"}, mount_point="kv1")
