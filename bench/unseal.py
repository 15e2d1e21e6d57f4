"""``unseal``: from a Vault pod sealed to unsealed, with local custodians (a Kubernetes Secret
and two files on the node, as the demo has them), or with a peer.

The testbed runs as ``python -m testbed up --vault-statefulset`` (3 Vault nodes over TLS as
the pods of StatefulSet ``vault``, restarts and power cuts through its pods admin endpoints);
``unsealer init`` runs once, then ``unsealer run`` as a real process under its own
ServiceAccount (the manifests' RBAC, applied with kubectl). Then ``--restarts`` pod restarts,
one at a time in turn, and ``--power-losses`` power cuts (every pod at once). Each is timed from
the admin call that seals the pod to the first reading, every 10 ms, of it unsealed (for a
power cut: of every pod unsealed). ``--peer``: two of the shares come from a second unsealer
(``--peer-only``, as on another node) over mutual TLS. A peer server rate-limits each peer (10
requests, then one per 6 s), so with ``--peer`` the events are ``--pause`` apart (6 s, and
three times that before a power cut: one release per pod), as they would be in a cluster;
``--pause 0`` measures the rate limit instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from bench.harness import ROOT, free_port, percentile
from testbed.pki import Authority

TARGETS = {"p99_s": "≤ 1 s local, ≤ 2 s with a peer"}
HOSTS = "127.0.0.2,127.0.0.3,127.0.0.4"


async def _run(*args: str, cwd: Path) -> str:
    process = await asyncio.create_subprocess_exec(
        *args, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    out, err = await process.communicate()
    if process.returncode:
        raise SystemExit(f"unseal: {' '.join(args[:3])} failed: {err.decode()[-2000:]}")
    return out.decode()


@contextlib.asynccontextmanager
async def _testbed(directory: Path, port: int) -> AsyncIterator[dict[str, str]]:
    with (directory / "testbed.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "testbed", "up", "--dir", str(directory),
            "--vault-nodes", "3", "--vault-hosts", HOSTS, "--vault-port", str(port),
            "--vault-tls", "--vault-statefulset", cwd=ROOT, stdout=log, stderr=log,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        async with asyncio.timeout(60):
            while not (directory / "ready").exists():
                if process.returncode is not None:
                    raise SystemExit(f"unseal: the testbed exited; see {directory}/testbed.log")
                await asyncio.sleep(0.05)
        found: dict[str, str] = {}
        for name in ("vault.env", "pods.env"):
            found |= dict(line.split("=", 1)
                          for line in (directory / name).read_text().split())
        yield found
    finally:
        process.send_signal(signal.SIGTERM)
        await process.wait()


def custody_configs(directory: Path, *, peer_port: int | None) -> tuple[Path, Path, Path | None]:
    """The custody configs: for ``init``, for ``unsealer run``, and for the peer (if any).

    Local: a Secret (2 shares) and two files (2 and 1). With a peer: unsealer A has a Secret
    (2) and unsealer B (2), which holds them in a file of its own (written by ``init``, which
    cannot write to a peer) and releases them over mutual TLS; the fifth is an offline backup.
    A reaches the threshold (3) only with B's shares.
    """
    secret = {"name": "kube-secret", "kind": "kubernetesSecret", "namespace": "vault-custody",
              "secretName": "unseal-shares", "shares": 2}

    def write(name: str, config: dict[str, Any]) -> Path:
        path = directory / name
        path.write_text(yaml.safe_dump({"threshold": 3, "shares": 5, **config}))
        return path

    if peer_port is None:
        local = write("custody.yaml", {"custodians": [
            secret,
            {"name": "disk-a", "kind": "file", "path": str(directory / "disk-a"), "shares": 2},
            {"name": "disk-b", "kind": "file", "path": str(directory / "disk-b"), "shares": 1,
             "place": "usb-key"},
        ]})
        return local, local, None
    authority = Authority.create("peer", directory)
    server_cert, server_key = authority.issue("unsealer-b", server=True, ips=("127.0.0.1",))
    client_cert, client_key = authority.issue("unsealer-a")
    # The fifth share goes to an offline backup unsealer A cannot read: A needs B's two.
    backup = {"name": "backup", "kind": "file", "path": str(directory / "backup"), "shares": 1,
              "place": "offline"}
    disk_b = {"name": "disk-b", "kind": "file", "path": str(directory / "disk-b"), "shares": 2,
              "place": "node-b"}
    initial = write("custody-init.yaml", {"custodians": [secret, backup, disk_b]})
    a = write("custody-a.yaml", {"custodians": [secret, {
        "name": "node-b", "kind": "peer", "url": f"https://127.0.0.1:{peer_port}",
        "caFile": str(authority.ca_file), "certFile": str(client_cert),
        "keyFile": str(client_key), "serverName": "unsealer-b", "timeoutSeconds": 5,
        "shares": 2}]})
    b = write("custody-b.yaml", {"custodians": [disk_b], "peerServer": {
        "host": "127.0.0.1", "port": peer_port, "caFile": str(authority.ca_file),
        "certFile": str(server_cert), "keyFile": str(server_key),
        "allowedPeers": ["unsealer-a"], "releases": ["disk-b"]}})
    return initial, a, b


async def _sealed(session: aiohttp.ClientSession, admin: str) -> dict[str, bool]:
    async with session.get(f"{admin}/pods") as response:
        return {p["pod"]: bool(p["sealed"]) for p in (await response.json())["pods"]}


def _check_sealed(answer: dict[str, Any], pods: list[str]) -> None:
    """The admin call answers once the pods are down: else the time would measure nothing."""
    sealed = {p["pod"]: p["sealed"] for p in answer["pods"]}
    if not all(sealed[p] for p in pods):
        raise SystemExit(f"unseal: {pods} not sealed by the admin call: {sealed}")


async def _until_unsealed(session: aiohttp.ClientSession, admin: str, pods: list[str],
                          *, deadline: float = 60.0) -> float:
    began = time.monotonic()
    async with asyncio.timeout(deadline):
        while True:
            sealed = await _sealed(session, admin)
            if not any(sealed[p] for p in pods):
                return time.monotonic() - began
            await asyncio.sleep(0.01)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(prefix="bench-unseal-"))
    port = free_port()
    try:
        async with _testbed(directory, port) as env, aiohttp.ClientSession() as session:
            admin = env["TESTBED_PODS_ADMIN"].rstrip("/")
            kubeconfig = str(directory / "kubeconfig")
            kubectl = ("kubectl", "--kubeconfig", kubeconfig, "--cache-dir",
                       str(directory / "kubectl-cache"))
            await _run(*kubectl, "create", "namespace", "vault-custody", cwd=ROOT)
            for manifest in ("rbac.yaml", "custody-rbac.yaml"):
                await _run(*kubectl, "apply", "-f", str(ROOT / "manifests" / "unsealer" /
                                                        manifest), cwd=ROOT)
            token = (await _run(*kubectl, "create", "token", "vault-unsealer", "-n", "vault",
                                "--duration", "24h", cwd=ROOT)).strip()
            identity = yaml.safe_load(Path(kubeconfig).read_text())
            identity["users"][0]["user"] = {"token": token}
            unsealer_config = directory / "unsealer.kubeconfig"
            unsealer_config.write_text(yaml.safe_dump(identity))
            initial, custody, peer = custody_configs(
                directory, peer_port=free_port() if args.peer else None)
            common = ["--namespace", "vault", "--address-template", f"https://{{ip}}:{port}",
                      "--ca-file", env["VAULT_CACERT"]]
            await _run(sys.executable, "-m", "unsealer", "init", "--kubeconfig", kubeconfig,
                       *common, "--custody-config", str(initial), "--shares", "5",
                       "--threshold", "3", "--root-token-file", str(directory / "root-token"),
                       "--fallback-dir", str(directory), cwd=ROOT)
            services = []
            for name, config, extra in (("b", peer, ("--peer-only",)), ("a", custody, ())):
                if config is None:
                    continue
                with (directory / f"unsealer-{name}.log").open("wb") as log:
                    services.append(await asyncio.create_subprocess_exec(
                        sys.executable, "-m", "unsealer", "run", "--kubeconfig",
                        str(unsealer_config), *common, "--custody-config", str(config), *extra,
                        "--health-address", "",  # two of them, on a shared machine
                        cwd=ROOT, stdout=log, stderr=log,
                        env={**os.environ, "PYTHONPATH": str(ROOT),
                             "OTEL_TRACES_EXPORTER": "none"}))
            try:
                pods = sorted(await _sealed(session, admin))
                first = await _until_unsealed(session, admin, pods)
                # A peer releases at most 10 requests at once, then one every 6 s per peer
                # (unsealer/custody/peer.py): events back to back would measure that limit.
                pause = args.pause if args.pause is not None else (6.0 if args.peer else 0.0)
                restarts: list[float] = []
                for number in range(args.restarts):
                    await asyncio.sleep(pause)
                    pod = pods[number % len(pods)]
                    async with session.post(f"{admin}/pods/{pod}/restart") as response:
                        _check_sealed(await response.json(), [pod])
                    restarts.append(await _until_unsealed(session, admin, [pod]))
                power: list[float] = []
                for _ in range(args.power_losses):
                    await asyncio.sleep(pause * len(pods))  # one release per pod
                    async with session.post(f"{admin}/power-cut") as response:
                        _check_sealed(await response.json(), pods)
                    power.append(await _until_unsealed(session, admin, pods))
            finally:
                for service in services:
                    if service.returncode is None:  # one may have failed at start
                        service.send_signal(signal.SIGTERM)
                    await service.wait()
    finally:
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(directory, ignore_errors=True)
    every = restarts + power
    return {
        "custodians": "a Secret and a peer unsealer over mutual TLS" if args.peer
        else "local: a Secret and two files",
        "first_unseal_s": round(first, 2),
        "restarts": len(restarts),
        "restart_p50_s": round(percentile(restarts, 0.5), 3),
        "restart_max_s": round(max(restarts, default=float("nan")), 3),
        "power_losses": len(power),
        "power_loss_p50_s": round(percentile(power, 0.5), 3),
        "power_loss_max_s": round(max(power, default=float("nan")), 3),
        "p99_s": round(percentile(every, 0.99), 3),
        "pause_between_s": pause,
    }
