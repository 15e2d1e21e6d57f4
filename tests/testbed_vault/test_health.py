"""sys/health: the status-code table, every *code override, HEAD, and standby nodes."""

from __future__ import annotations

import hvac
import pytest
import requests

from testbed.vault import running_vault
from testbed.vault.cluster import RunningVault

from .conftest import in_thread


def _health(address: str, method: str = "GET", **params: str) -> requests.Response:
    return requests.request(method, f"{address}/v1/sys/health", params=params, timeout=5)


async def test_uninitialised_501_and_override(vault: RunningVault) -> None:
    response = await in_thread(_health, vault.address)
    assert response.status_code == 501
    body = response.json()
    assert (body["initialized"], body["sealed"], body["standby"]) == (False, True, True)
    assert "cluster_id" not in body
    assert (await in_thread(_health, vault.address, uninitcode="299")).status_code == 299


async def test_sealed_503_and_override(vault: RunningVault, client: hvac.Client) -> None:
    await in_thread(client.sys.initialize, 5, 3)
    response = await in_thread(_health, vault.address)
    assert response.status_code == 503
    body = response.json()  # the body comes with non-200 codes too
    assert (body["initialized"], body["sealed"]) == (True, True)
    assert body["replication_dr_mode"] == body["replication_performance_mode"] == "disabled"
    assert (await in_thread(_health, vault.address, sealedcode="204")).status_code == 204


async def test_active_200_and_override(vault_ready: object, vault: RunningVault) -> None:
    response = await in_thread(_health, vault.address)
    assert response.status_code == 200
    body = response.json()
    assert (body["sealed"], body["standby"], body["performance_standby"]) == (False, False, False)
    assert body["cluster_name"].startswith("vault-cluster-")
    assert isinstance(body["server_time_utc"], int)
    assert body["version"]
    assert (await in_thread(_health, vault.address, activecode="218")).status_code == 218
    # Codes that do not apply to an active node change nothing.
    for name in (
        "standbycode",
        "sealedcode",
        "uninitcode",
        "drsecondarycode",
        "performancestandbycode",
    ):
        assert (await in_thread(_health, vault.address, **{name: "299"})).status_code == 200


async def test_standby_429_standbyok_and_override() -> None:
    async with running_vault(nodes=2) as vault:
        init = vault.admin.initialize(shares=1, threshold=1)
        vault.admin.unseal(init.keys)
        standby = vault.addresses[1]
        response = await in_thread(_health, standby)
        assert response.status_code == 429
        assert response.json()["standby"] is True
        assert (await in_thread(_health, standby, standbycode="288")).status_code == 288
        assert (await in_thread(_health, standby, standbyok="true")).status_code == 200
        assert (await in_thread(_health, vault.addresses[0])).status_code == 200
        # vault-0 goes down: vault-1 takes over as active.
        vault.admin.seal(0)
        assert (await in_thread(_health, standby)).status_code == 200
        assert (await in_thread(_health, vault.addresses[0])).status_code == 503


async def test_head_has_status_only_and_hvac_defaults_to_head(
    vault: RunningVault, client: hvac.Client
) -> None:
    response = await in_thread(_health, vault.address, "HEAD")
    assert (response.status_code, response.content) == (501, b"")
    response = await in_thread(_health, vault.address, "HEAD", uninitcode="200")
    assert response.status_code == 200
    hvac_response = await in_thread(client.sys.read_health_status)
    assert hvac_response.status_code == 501


@pytest.mark.parametrize("params", [{"activecode": "abc"}, {"sealedcode": "1.5"}])
async def test_bad_code_is_400_with_empty_errors(
    vault: RunningVault, params: dict[str, str]
) -> None:
    response = await in_thread(_health, vault.address, **params)
    assert (response.status_code, response.json()) == (400, {"errors": []})


async def test_bad_bool_is_400(vault: RunningVault) -> None:
    response = await in_thread(_health, vault.address, standbyok="maybe")
    assert response.status_code == 400
    assert "standbyok" in response.json()["errors"][0]


async def test_post_is_405(vault: RunningVault) -> None:
    assert (await in_thread(_health, vault.address, "POST")).status_code == 405
