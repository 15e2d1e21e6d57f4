"""Benchmark of instant updates: how fast a Vault write reaches its Secret, per change source.

Run on demand (not by pytest):

    PYTHONPATH=. .venv/bin/python bench/instant_rotation.py --source poll|events|audit \
        [--objects 1000] [--writes-per-second 10] [--seconds 20] [--refresh 60]

The testbed (Kubernetes and Vault emulations) runs in this process; syncd runs as a real
subprocess (``python -m syncd run``), and with ``--source audit`` so does ``syncd audit-relay``,
behind a unix-socket audit device (``write_timeout=250ms``, after a file device, as the README
says). ``objects`` VaultStaticSecrets (``syncConfig.instantUpdates: true``, ``refreshAfter``
``--refresh``), each on its own kv-v2 path, are synced first; then, for ``seconds``, a random
object's secret gets a new value ``writes-per-second`` times a second, and each Secret is
watched until it holds its value. Figures:

- propagation p50/p99 (write sent → the Secret holds the value);
- Vault reads per write (reads of the written paths during the phase / writes; target 1 —
  with ``poll`` it counts the refreshes too);
- with ``audit``, Vault's write latency with the file device alone and with the relay's socket
  device as well (the latency the device adds; target < 1 ms at p99).

Results are printed and written to
bench/results/instant_rotation_<source>_<objects>.json. (This is a
script like the others in bench/; to move into ``python -m bench`` as ``rotation --source``
once that package exists.)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import random
import secrets
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import hvac

from testbed.kube import running_kube
from testbed.vault import running_vault

ROOT = Path(__file__).resolve().parent.parent
GROUP_VERSION = "secrets.vault-syncd.dev/v1beta1"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))] if ordered else 0.0


async def until(predicate: Any, what: str, deadline: float = 600.0) -> float:
    began = time.monotonic()
    while not predicate():
        if time.monotonic() - began > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
    return time.monotonic() - began


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def write_latencies(session: aiohttp.ClientSession, address: str, count: int,
                          ) -> list[float]:
    """Seconds each of ``count`` sequential KV writes takes, from a client in this process."""
    latencies = []
    for i in range(count):
        started = time.perf_counter()
        async with session.post(f"{address}/v1/secret/data/latency/probe",
                                json={"data": {"N": str(i)}}) as reply:
            reply.raise_for_status()
            await reply.read()
        latencies.append(time.perf_counter() - started)
    return latencies


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", choices=("poll", "events", "audit"), required=True)
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--writes-per-second", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--refresh", type=float, default=60.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-instant-", dir="/tmp"))
    token = secrets.token_urlsafe(24)
    (work / "relay-token").write_text(token)
    relay_port = free_port()
    processes: list[asyncio.subprocess.Process] = []
    async with running_kube() as kube, running_vault() as vault:
        init = vault.admin.bootstrap(shares=1, threshold=1, kv_v2_path="secret")
        client = hvac.Client(url=vault.address, token=init.root_token)
        session = aiohttp.ClientSession(headers={"X-Vault-Token": init.root_token})
        for i in range(args.objects):
            await session.post(f"{vault.address}/v1/secret/data/app/{i}",
                               json={"data": {"VALUE": "v0"}})
        for path in sorted((ROOT / "manifests" / "crds").glob("*.yaml")):
            kube.admin.apply_yaml(path.read_text())
        for namespace in ("vault-syncd", "bench"):
            kube.admin.create_namespace(namespace)
        kube.admin.apply_yaml((ROOT / "manifests" / "syncd" / "rbac.yaml").read_text())
        kube.admin.apply({"apiVersion": "v1", "kind": "Secret",
                          "metadata": {"name": "vault-token", "namespace": "bench"},
                          "type": "secrets.vault-syncd.dev/vault-token",
                          "stringData": {"token": init.root_token}})
        kube.admin.apply({"apiVersion": GROUP_VERSION, "kind": "VaultConnection",
                          "metadata": {"name": "default", "namespace": "vault-syncd"},
                          "spec": {"address": vault.address}})
        kube.admin.apply({"apiVersion": GROUP_VERSION, "kind": "VaultAuth",
                          "metadata": {"name": "default", "namespace": "vault-syncd"},
                          "spec": {"method": "token", "token": {"secretRef": {
                              "name": "vault-token", "key": "token"}}}})
        kubeconfig = kube.write_kubeconfig(
            work / "kubeconfig", token=kube.admin.mint_token("vault-syncd", "vault-syncd"))
        source = "none" if args.source == "poll" else args.source
        log = (work / "syncd.log").open("wb")
        env = {**os.environ, "OTEL_TRACES_EXPORTER": "none", "PYTHONPATH": str(ROOT)}
        processes.append(await asyncio.create_subprocess_exec(
            sys.executable, "-m", "syncd", "run", "--kubeconfig", str(kubeconfig),
            "--health-address", "", "--leader-elect=false",
            f"--instant-updates-source={source}", "--instant-updates-safety-interval=10m",
            f"--audit-relay-listen=127.0.0.1:{relay_port}",
            f"--audit-relay-token-file={work / 'relay-token'}",
            stdout=log, stderr=log, env=env, cwd=ROOT,
        ))
        result: dict[str, Any] = {}
        try:
            began = time.monotonic()
            for i in range(args.objects):
                kube.admin.apply({
                    "apiVersion": GROUP_VERSION, "kind": "VaultStaticSecret",
                    "metadata": {"name": f"s{i}", "namespace": "bench"},
                    "spec": {"mount": "secret", "path": f"app/{i}", "type": "kv-v2",
                             "refreshAfter": f"{args.refresh}s",
                             "syncConfig": {"instantUpdates": True},
                             "destination": {"name": f"s{i}", "create": True}},
                })

            def holds(index: int, value: str) -> bool:
                found = kube.admin.get("v1", "Secret", f"s{index}", "bench") or {}
                raw = (found.get("data") or {}).get("VALUE", "")
                return base64.b64decode(raw).decode() == value

            await until(lambda: all(holds(i, "v0") for i in range(args.objects)), "first sync")
            result["first_sync_all_s"] = round(time.monotonic() - began, 2)
            if args.source == "events":
                await until(lambda: vault.core.events.connected >= 1, "the events stream")
            if args.source == "audit":
                await asyncio.to_thread(client.sys.enable_audit_device, "file", path="file",
                                        options={"file_path": str(work / "audit.log")})
                file_only = await write_latencies(session, vault.address, 300)
                relay_log = (work / "relay.log").open("wb")
                processes.append(await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "syncd", "audit-relay",
                    "--listen", str(work / "relay.sock"), "--syncd", f"127.0.0.1:{relay_port}",
                    "--token-file", str(work / "relay-token"), "--vault-address", vault.address,
                    stdout=relay_log, stderr=relay_log, env=env, cwd=ROOT,
                ))
                await until(lambda: b"connected to syncd" in (work / "relay.log").read_bytes(),
                            "the relay", deadline=30)
                await asyncio.to_thread(client.sys.enable_audit_device, "socket", path="relay",
                                        options={"address": str(work / "relay.sock"),
                                                 "socket_type": "unix",
                                                 "write_timeout": "250ms"})
                with_relay = await write_latencies(session, vault.address, 300)
                result["vault_write_ms_file_device_only"] = {
                    "p50": ms(statistics.median(file_only)), "p99": ms(percentile(file_only, .99))}
                result["vault_write_ms_with_relay_device"] = {
                    "p50": ms(statistics.median(with_relay)),
                    "p99": ms(percentile(with_relay, .99))}
                result["audit_device_added_ms"] = {
                    "p50": ms(statistics.median(with_relay) - statistics.median(file_only)),
                    "p99": ms(percentile(with_relay, .99) - percentile(file_only, .99))}

            vault.admin.reset_counters()
            pending: dict[int, tuple[str, float]] = {}
            propagation: list[float] = []
            writes = 0
            interval = 1 / args.writes_per_second
            phase_end = time.monotonic() + args.seconds
            next_write = time.monotonic()
            while time.monotonic() < phase_end or pending:
                now = time.monotonic()
                if now < phase_end and now >= next_write:
                    index = random.randrange(args.objects)
                    value = f"v-{secrets.token_hex(4)}"
                    sent = time.monotonic()
                    async with session.post(f"{vault.address}/v1/secret/data/app/{index}",
                                            json={"data": {"VALUE": value}}) as reply:
                        reply.raise_for_status()
                    pending[index] = (value, sent)  # a newer write of the same object wins
                    writes += 1
                    next_write += interval
                for index, (value, sent) in list(pending.items()):
                    if holds(index, value):
                        propagation.append(time.monotonic() - sent)
                        del pending[index]
                if now > phase_end + max(3 * args.refresh, 30):
                    raise SystemExit(f"{len(pending)} writes never arrived")
                await asyncio.sleep(0.002)
            reads = vault.admin.request_count(method="GET", path="/v1/secret/data/app/*")
            result.update({
                "writes": writes,
                "propagation_ms": {"p50": ms(statistics.median(propagation)),
                                   "p99": ms(percentile(propagation, .99)),
                                   "max": ms(max(propagation))},
                "vault_reads_per_write": round(reads / max(writes, 1), 3),
            })
        finally:
            await session.close()
            for process in reversed(processes):
                process.terminate()
                await process.wait()
    result = {
        "benchmark": "instant_rotation", "source": args.source, "objects": args.objects,
        "writes_per_second": args.writes_per_second, "seconds": args.seconds,
        "refresh_after_s": args.refresh, **result,
        "python": platform.python_version(), "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "PYTHONPATH=. .venv/bin/python bench/instant_rotation.py "
        + " ".join(sys.argv[1:]),
    }
    print(json.dumps(result, indent=2))
    out = ROOT / "bench" / "results" / f"instant_rotation_{args.source}_{args.objects}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
