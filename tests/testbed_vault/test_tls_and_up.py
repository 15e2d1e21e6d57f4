"""TLS with the emulation's CA, and the ``up`` contract (vault.env) of ``python -m testbed up``."""

from __future__ import annotations

import argparse
from pathlib import Path

import hvac
import pytest
import requests

from testbed.vault import running_vault, up

from .conftest import in_thread


async def test_tls_with_the_written_ca(tmp_path: Path) -> None:
    async with running_vault(tls=True, tls_dir=tmp_path) as vault:
        assert vault.address.startswith("https://127.0.0.1:")
        assert vault.ca_file == tmp_path / "vault-ca.pem"
        client = hvac.Client(url=vault.address, verify=str(vault.ca_file))
        assert (await in_thread(client.sys.read_seal_status))["initialized"] is False
        with pytest.raises(requests.exceptions.SSLError):
            await in_thread(requests.get, f"{vault.address}/v1/sys/seal-status", timeout=5)


async def test_serve_writes_vault_env_and_removes_it(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    up.add_arguments(parser)
    args = parser.parse_args(
        [
            "--vault-tls",
            "--vault-nodes",
            "2",
            "--vault-bootstrap",
            "--vault-state",
            str(tmp_path / "state"),
        ]
    )
    async with up.serve(args, tmp_path) as vault:
        env = dict(line.split("=", 1) for line in (tmp_path / "vault.env").read_text().split())
        assert env["VAULT_ADDR"] == vault.address
        assert env["VAULT_ADDRS"] == ",".join(vault.addresses)
        assert env["VAULT_CACERT"] == str(tmp_path / "vault-ca.pem")
        client = hvac.Client(
            url=env["VAULT_ADDR"], token=env["VAULT_TOKEN"], verify=env["VAULT_CACERT"]
        )
        await in_thread(client.secrets.kv.v2.create_or_update_secret, "boot", secret={"v": "1"})
        second = hvac.Client(
            url=vault.addresses[1], token=env["VAULT_TOKEN"], verify=env["VAULT_CACERT"]
        )
        assert (await in_thread(second.sys.read_seal_status))["sealed"] is False
    assert not (tmp_path / "vault.env").exists()
    # Bootstrapping again on the kept state unseals with the saved keys: same data, same token.
    async with up.serve(args, tmp_path) as vault:
        client = hvac.Client(url=vault.address, token=env["VAULT_TOKEN"], verify=str(vault.ca_file))
        read = await in_thread(
            client.secrets.kv.v2.read_secret_version, "boot", raise_on_deleted_version=True
        )
        assert read["data"]["data"] == {"v": "1"}
