"""Restarts come back sealed with data intact: in process, over HTTP, and as a new process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import hvac
import pytest
import requests
from hvac import exceptions

from testbed.vault import running_vault

from .conftest import ReadyVault, in_thread

ROOT = Path(__file__).resolve().parents[2]


async def test_admin_restart_reseals_and_keeps_data(
    vault_ready: ReadyVault, root: hvac.Client
) -> None:
    await in_thread(root.secrets.kv.v2.create_or_update_secret, "app/db", secret={"pw": "s3cr3t"})
    keys = vault_ready.init.keys_hex
    await vault_ready.vault.admin.restart(0)
    status = await in_thread(root.sys.read_seal_status)
    assert (status["sealed"], status["progress"]) == (True, 0)
    with pytest.raises(exceptions.VaultDown):
        await in_thread(
            root.secrets.kv.v2.read_secret_version, "app/db", raise_on_deleted_version=True
        )
    await in_thread(root.sys.submit_unseal_keys, keys[2:5])
    secret = await in_thread(
        root.secrets.kv.v2.read_secret_version, "app/db", raise_on_deleted_version=True
    )
    assert secret["data"]["data"] == {"pw": "s3cr3t"}
    # The root token survived too (it is in storage).
    assert (await in_thread(root.auth.token.lookup_self))["data"]["policies"] == ["root"]


async def test_restart_drops_a_partial_unseal(vault_ready: ReadyVault) -> None:
    admin = vault_ready.vault.admin
    client = vault_ready.client()
    await admin.restart(0)
    await in_thread(client.sys.submit_unseal_key, vault_ready.init.keys_hex[0])
    await admin.restart(0)
    assert (await in_thread(client.sys.read_seal_status))["progress"] == 0


async def test_http_restart_endpoint(vault_ready: ReadyVault) -> None:
    address = vault_ready.address
    response = await in_thread(requests.post, f"{address}/_testbed/restart", timeout=5)
    assert response.status_code == 200
    assert response.json()["sealed"] is True
    node = vault_ready.vault.nodes[0]
    assert node.restarts == 1
    await asyncio.wait_for(node.listening.wait(), timeout=5)
    status = await in_thread(requests.get, f"{address}/v1/sys/seal-status", timeout=5)
    assert status.json()["sealed"] is True


async def test_three_nodes_share_storage_and_unseal_separately() -> None:
    hosts = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    async with running_vault(nodes=3, hosts=hosts) as vault:
        assert [a.split("//")[1].split(":")[0] for a in vault.addresses] == hosts
        clients = [hvac.Client(url=a) for a in vault.addresses]
        init = await in_thread(clients[1].sys.initialize, 5, 3)
        for client in clients:  # initialised everywhere (one storage), sealed everywhere
            status = await in_thread(client.sys.read_seal_status)
            assert (status["initialized"], status["sealed"]) == (True, True)
        await in_thread(clients[0].sys.submit_unseal_key, init["keys"][0])
        assert (await in_thread(clients[1].sys.read_seal_status))["progress"] == 0
        await in_thread(clients[0].sys.submit_unseal_keys, init["keys"][1:3])
        assert (await in_thread(clients[0].sys.read_seal_status))["sealed"] is False
        assert (await in_thread(clients[2].sys.read_seal_status))["sealed"] is True
        clients[0].token = init["root_token"]
        await in_thread(
            clients[0].sys.enable_secrets_engine, "kv", path="secret", options={"version": "2"}
        )
        await in_thread(
            clients[0].secrets.kv.v2.create_or_update_secret, "shared", secret={"a": "1"}
        )
        await in_thread(clients[2].sys.submit_unseal_keys, init["keys"][2:5])
        clients[2].token = init["root_token"]
        read = await in_thread(
            clients[2].secrets.kv.v2.read_secret_version, "shared", raise_on_deleted_version=True
        )
        assert read["data"]["data"] == {"a": "1"}
        leader = await in_thread(clients[2].sys.read_leader_status)
        assert (leader["is_self"], leader["leader_address"]) == (False, vault.addresses[0])
        await vault.admin.restart(2)
        assert (await in_thread(clients[2].sys.read_seal_status))["sealed"] is True
        assert (await in_thread(clients[0].sys.read_seal_status))["sealed"] is False


def _start(directory: Path, state: Path) -> subprocess.Popen[bytes]:
    (directory / "ready").unlink(missing_ok=True)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "testbed.vault",
            "--dir",
            str(directory),
            "--vault-state",
            str(state),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stderr=subprocess.DEVNULL,
    )


def _wait_ready(directory: Path, process: subprocess.Popen[bytes], timeout: float = 15) -> str:
    deadline = time.monotonic() + timeout
    while not (directory / "ready").exists():
        assert process.poll() is None, "the emulation exited"
        assert time.monotonic() < deadline, "the emulation did not become ready"
        time.sleep(0.02)
    env = dict(line.split("=", 1) for line in (directory / "vault.env").read_text().split())
    return env["VAULT_ADDR"]


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0


def test_new_process_on_the_same_state_comes_back_sealed(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = _start(tmp_path, state)
    try:
        client = hvac.Client(url=_wait_ready(tmp_path, first))
        init = client.sys.initialize(5, 3)
        client.sys.submit_unseal_keys(init["keys"][:3])
        client.token = init["root_token"]
        client.sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})
        client.secrets.kv.v2.create_or_update_secret("kept", secret={"v": "1"})
        client.secrets.kv.v2.create_or_update_secret("kept", secret={"v": "2"})
        client.sys.create_or_update_policy(
            "reader", 'path "secret/data/*" { capabilities = ["read"] }'
        )
        child = client.auth.token.create(policies=["reader"], ttl="1h")["auth"]["client_token"]
        client.sys.enable_auth_method("approle")
        client.auth.approle.create_or_update_approle("ci", token_policies=["reader"])
    finally:
        _stop(first)
    assert not (tmp_path / "vault.env").exists()
    second = _start(tmp_path, state)
    try:
        client = hvac.Client(url=_wait_ready(tmp_path, second), token=init["root_token"])
        status = client.sys.read_seal_status()
        assert (status["initialized"], status["sealed"], status["t"], status["n"]) == (
            True,
            True,
            3,
            5,
        )
        with pytest.raises(exceptions.VaultDown):
            client.secrets.kv.v2.read_secret_version("kept", raise_on_deleted_version=True)
        client.sys.submit_unseal_keys(init["keys_base64"][2:5])
        read = client.secrets.kv.v2.read_secret_version("kept", raise_on_deleted_version=True)
        assert (read["data"]["data"], read["data"]["metadata"]["version"]) == ({"v": "2"}, 2)
        assert client.auth.approle.read_role("ci")["data"]["token_policies"] == ["reader"]
        assert set(client.sys.list_auth_methods()["data"]) == {"approle/", "token/"}
        reader = hvac.Client(url=client.url, token=child)
        assert reader.secrets.kv.v2.read_secret_version("kept", raise_on_deleted_version=True)
        with pytest.raises(exceptions.Forbidden):
            reader.secrets.kv.v2.create_or_update_secret("kept", secret={"v": "3"})
    finally:
        _stop(second)
