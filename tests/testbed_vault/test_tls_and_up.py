"""TLS with the emulation's CA, and the ``up`` contract (vault.env) of ``python -m testbed up``."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import ssl
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import aiohttp
import hvac
import pytest
import requests

from testbed.vault import running_vault, up
from testbed.waiting import until

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


# --- per-pod certificates, and Vault as a StatefulSet out of process ---------------------------


async def _seal_status(address: str, *, ca_file: Path, server_name: str) -> dict[str, Any]:
    context = ssl.create_default_context(cafile=str(ca_file))
    # A request caught mid-handshake while a node's listener cycles can stall (see README):
    # bounded, like every client's.
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http, http.get(
        f"{address}/v1/sys/seal-status", ssl=context, server_hostname=server_name
    ) as response:
        body: dict[str, Any] = await response.json()
        return body


async def test_each_node_proves_its_own_pod_names_and_no_other(tmp_path: Path) -> None:
    hosts = ["127.0.0.2", "127.0.0.3"]
    async with running_vault(nodes=2, hosts=hosts, tls=True, tls_dir=tmp_path) as vault:
        assert vault.ca_file is not None
        for name in ("vault-1", "vault-1.vault-internal", "vault-1.vault-internal.vault.svc",
                     "vault-1.vault-internal.vault.svc.cluster.local", "vault", "localhost"):
            status = await _seal_status(vault.addresses[1], ca_file=vault.ca_file,
                                        server_name=name)
            assert status["sealed"] is True
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await _seal_status(vault.addresses[1], ca_file=vault.ca_file,
                               server_name="vault-0.vault-internal.vault.svc")


async def test_up_runs_vault_as_a_statefulset_driven_with_kubectl_and_http(
    tmp_path: Path,
) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    hosts = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    directory = tmp_path / "up"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "testbed", "up", "--dir", str(directory), "--vault-nodes", "3",
        "--vault-hosts", ",".join(hosts), "--vault-port", str(port), "--vault-tls",
        "--vault-bootstrap", "--vault-shares", "5", "--vault-threshold", "3",
        "--vault-statefulset", "--kube-pod-ready-delay", "0.05",
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await until(lambda: (directory / "ready").exists() or process.returncode is not None,
                    deadline=60)
        assert process.returncode is None
        env = dict(line.split("=", 1) for line in (directory / "pods.env").read_text().split())
        admin, ca_file = env["TESTBED_PODS_ADMIN"], directory / "vault-ca.pem"
        assert env["VAULT_SERVICE"] == "vault-internal"

        async def run_kubectl(*args: str) -> Any:
            proc = await asyncio.create_subprocess_exec(
                kubectl, f"--cache-dir={tmp_path / 'kubectl-cache'}", *args,
                env={**os.environ, "KUBECONFIG": str(directory / "kubeconfig"),
                     "HOME": str(tmp_path)},
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode == 0, err.decode()
            return json.loads(out) if out.strip().startswith(b"{") else out.decode()

        async def status(pod: int, host: str | None = None) -> dict[str, Any]:
            return await _seal_status(
                f"https://{host or hosts[pod]}:{port}", ca_file=ca_file,
                server_name=f"vault-{pod}.vault-internal.vault.svc")

        async def post(path: str, body: Any = None) -> Any:
            async with aiohttp.ClientSession() as http, http.post(
                f"{admin}{path}", json=body) as response:
                assert response.status == 200, await response.text()
                return await response.json()

        statefulset = await run_kubectl("get", "statefulset", "vault", "-n", "vault", "-o",
                                        "json")
        pods = (await run_kubectl("get", "pods", "-n", "vault", "-o", "json"))["items"]
        assert sorted(p["metadata"]["name"] for p in pods) == ["vault-0", "vault-1", "vault-2"]
        for pod in pods:
            [owner] = pod["metadata"]["ownerReferences"]
            assert owner["uid"] == statefulset["metadata"]["uid"] and owner["controller"]
            index = int(pod["metadata"]["name"][-1])
            assert pod["status"]["podIP"] == hosts[index]
        assert statefulset["spec"]["serviceName"] == "vault-internal"
        assert [(await status(n))["sealed"] for n in range(3)] == [False, False, False]

        # A container restart (HTTP admin): that pod's Vault is sealed, restartCount 1.
        await post("/pods/vault-1/restart")
        await until(lambda: _sealed(status(1)), deadline=10)
        pod = await run_kubectl("get", "pod", "vault-1", "-n", "vault", "-o", "json")
        assert pod["status"]["containerStatuses"][0]["restartCount"] == 1

        # kubectl delete pod: the StatefulSet recreates it; a new Vault process, sealed.
        await run_kubectl("delete", "pod", "vault-2", "-n", "vault", "--wait=false")
        await until(lambda: _sealed(status(2)), deadline=10)

        # Rescheduled to another IP: vault-0 answers there, sealed, with its own name.
        await post("/pods/vault-0/reschedule", {"ip": "127.0.0.5"})
        await until(lambda: _sealed(status(0, "127.0.0.5")), deadline=10)

        # Power cut: every pod restarts, every Vault is sealed.
        listing = await post("/power-cut")
        assert listing["restarted"] == 3
        assert all(p["sealed"] for p in listing["pods"])
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 30)
    assert process.returncode == 0
    assert not (directory / "pods.env").exists()


async def _sealed(status: Awaitable[dict[str, Any]]) -> bool:
    try:
        return bool((await status)["sealed"])
    except (aiohttp.ClientError, TimeoutError):
        return False  # the listener is cycling
