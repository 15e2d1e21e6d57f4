"""Fault injection and request counters, through the Python handle and the HTTP admin endpoints."""

from __future__ import annotations

import time

import hvac
import pytest
import requests
from hvac import exceptions

from .conftest import ReadyVault, in_thread


async def test_status_fault_fires_n_times(vault_ready: ReadyVault, root: hvac.Client) -> None:
    admin = vault_ready.vault.admin
    await in_thread(root.secrets.kv.v2.create_or_update_secret, "f", secret={"v": "1"})
    admin.add_fault(method="GET", path="/v1/secret/data/*", status=503, errors=["boom"], times=2)
    for _ in range(2):
        with pytest.raises(exceptions.VaultDown) as caught:
            await in_thread(
                root.secrets.kv.v2.read_secret_version, "f", raise_on_deleted_version=True
            )
        assert caught.value.errors == ["boom"]
    assert await in_thread(
        root.secrets.kv.v2.read_secret_version, "f", raise_on_deleted_version=True
    )
    # Other methods and paths were never affected.
    assert (await in_thread(root.sys.read_seal_status))["sealed"] is False


async def test_probability_fault_is_partial(vault_ready: ReadyVault) -> None:
    vault_ready.vault.admin.add_fault(path="/v1/sys/seal-status", status=500, probability=0.5)
    codes = [
        (
            await in_thread(requests.get, f"{vault_ready.address}/v1/sys/seal-status", timeout=5)
        ).status_code
        for _ in range(40)
    ]
    assert 0 < codes.count(500) < 40
    assert set(codes) == {200, 500}


async def test_latency_fault(vault_ready: ReadyVault) -> None:
    vault_ready.vault.admin.add_fault(path="/v1/sys/health", latency=0.3, times=1)
    start = time.monotonic()
    await in_thread(requests.get, f"{vault_ready.address}/v1/sys/health", timeout=5)
    assert time.monotonic() - start >= 0.3
    start = time.monotonic()
    await in_thread(requests.get, f"{vault_ready.address}/v1/sys/health", timeout=5)
    assert time.monotonic() - start < 0.3


async def test_connection_reset_fault(vault_ready: ReadyVault) -> None:
    vault_ready.vault.admin.add_fault(path="/v1/sys/seal-status", reset=True, times=1)
    with pytest.raises(requests.exceptions.ConnectionError):
        await in_thread(requests.get, f"{vault_ready.address}/v1/sys/seal-status", timeout=5)
    response = await in_thread(requests.get, f"{vault_ready.address}/v1/sys/seal-status", timeout=5)
    assert response.status_code == 200


async def test_request_counters(vault_ready: ReadyVault, root: hvac.Client) -> None:
    admin = vault_ready.vault.admin
    admin.reset_counters()
    await in_thread(root.secrets.kv.v2.create_or_update_secret, "c", secret={"v": "1"})
    for _ in range(3):
        await in_thread(root.secrets.kv.v2.read_secret_version, "c", raise_on_deleted_version=True)
    await in_thread(root.secrets.kv.v2.list_secrets, "")
    assert admin.request_count(method="GET", path="/v1/secret/data/*") == 3
    assert admin.request_count(method="LIST") == 1
    assert admin.request_count(path="/v1/secret/*") == 5
    assert admin.request_counts()["GET /v1/secret/data/c"] == 3
    admin.reset_counters()
    assert admin.request_count() == 0


async def test_http_admin_endpoints(vault_ready: ReadyVault) -> None:
    base = f"{vault_ready.address}/_testbed"
    await in_thread(requests.delete, f"{base}/requests", timeout=5)
    await in_thread(requests.get, f"{vault_ready.address}/v1/sys/seal-status", timeout=5)
    counts = (await in_thread(requests.get, f"{base}/requests", timeout=5)).json()
    assert counts == {
        "total": 1,
        "requests": {"GET /v1/sys/seal-status": 1},
    }  # admin calls not counted
    fault = (
        await in_thread(
            requests.post,
            f"{base}/faults",
            json={"path": "/v1/sys/seal-status", "status": 502},
            timeout=5,
        )
    ).json()
    assert fault["status"] == 502
    assert (
        await in_thread(requests.get, f"{vault_ready.address}/v1/sys/seal-status", timeout=5)
    ).status_code == 502
    listed = (await in_thread(requests.get, f"{base}/faults", timeout=5)).json()["faults"]
    assert [f["fired"] for f in listed] == [1]
    await in_thread(requests.delete, f"{base}/faults/{fault['id']}", timeout=5)
    assert (
        await in_thread(requests.get, f"{vault_ready.address}/v1/sys/seal-status", timeout=5)
    ).status_code == 200
    bad = await in_thread(requests.post, f"{base}/faults", json={"path": "/x"}, timeout=5)
    assert bad.status_code == 400
    status = (
        await in_thread(requests.put, f"{base}/wrong-key-status", json={"status": 500}, timeout=5)
    ).json()
    assert status["wrong_key_status"] == 500
    assert vault_ready.vault.nodes[0].wrong_key_status == 500
    sealed = (await in_thread(requests.post, f"{base}/seal", timeout=5)).json()
    assert sealed["sealed"] is True
    now = (
        await in_thread(requests.post, f"{base}/clock", json={"advance": 3600}, timeout=5)
    ).json()["now"]
    assert now > time.time() + 3500
    info = (await in_thread(requests.get, f"{base}/info", timeout=5)).json()
    assert (info["name"], info["sealed"]) == ("vault-0", True)
    missing = await in_thread(requests.get, f"{base}/nothing", timeout=5)
    assert missing.status_code == 404


async def test_body_fault_answers_raw_bytes(vault_ready: ReadyVault) -> None:
    """``body=``: the answer is exactly these bytes (a malformed Vault answer), with ``status``."""
    admin = vault_ready.vault.admin
    url = f"{vault_ready.address}/v1/secret/data/raw"
    admin.add_fault(method="GET", path="/v1/secret/data/raw", body=b'{"data": [\xff', times=1)
    response = await in_thread(requests.get, url, timeout=5)
    assert (response.status_code, response.content) == (200, b'{"data": [\xff')
    assert response.headers["Content-Type"].startswith("application/json")
    # Over the HTTP admin: any bytes as base64, or a UTF-8 string, with a status.
    added = await in_thread(requests.post, f"{vault_ready.address}/_testbed/faults", timeout=5,
                            json={"path": "/v1/secret/data/raw", "body_base64": "gA==",
                                  "status": 404, "times": 1})
    assert added.json()["body_bytes"] == 1
    response = await in_thread(requests.get, url, timeout=5)
    assert (response.status_code, response.content) == (404, b"\x80")
    await in_thread(requests.post, f"{vault_ready.address}/_testbed/faults", timeout=5,
                    json={"path": "/v1/secret/data/raw", "body": "not json", "times": 1})
    assert (await in_thread(requests.get, url, timeout=5)).content == b"not json"
