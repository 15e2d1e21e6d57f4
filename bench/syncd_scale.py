"""Benchmark of syncd: many VaultStaticSecrets, what each refresh costs, and syncd's footprint.

Run on demand (not by pytest):

    PYTHONPATH=. .venv/bin/python bench/syncd_scale.py [--objects 200] [--refresh 10] \
        [--window 30]

The testbed (Kubernetes and Vault emulations) runs in this process; syncd runs as a real
subprocess (``python -m syncd run``) so its CPU time and memory can be read from /proc. Phases:

1. ``first_sync``: create ``objects`` VaultStaticSecrets (each its own kv-v2 path) and time
   until every destination Secret exists.
2. ``steady``: for ``window`` seconds nothing changes. Count Vault reads per reconcile (the
   design says exactly 1; reconciles are counted from syncd's debug log), the effective refresh
   interval (``refreshAfter`` plus up to 10 % jitter), Kubernetes requests made by syncd (the
   design says none but the leader's Lease renewals), and syncd's CPU and resident memory.
   Objects created together refresh nearly in phase, so a count of reads alone over a short
   window depends on where the window falls; reads per reconcile does not.
3. ``rotation``: write a new version of every secret and time until every Secret holds it.

Results are printed and written to bench/results/syncd_scale.json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import itertools
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import hvac

from testbed.kube import Kube, running_kube
from testbed.vault import running_vault

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "syncd_scale.json"
GROUP_VERSION = "secrets.vault-syncd.dev/v1beta1"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def unchanged_reconciles(log: Path, began: float, ended: float) -> tuple[int, float]:
    """Reconciles that found nothing to do in [began, ended], from syncd's debug log, and the
    mean interval between two of them for one object (the effective refresh interval)."""
    count = 0
    seen: dict[str, list[float]] = {}
    for line in log.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") != "unchanged":
            continue
        stamp = dt.datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00")).timestamp()
        if began <= stamp <= ended:
            count += 1
            seen.setdefault(f"{entry.get('namespace')}/{entry.get('name')}", []).append(stamp)
    gaps = [b - a for stamps in seen.values() for a, b in itertools.pairwise(stamps)]
    return count, (sum(gaps) / len(gaps) if gaps else 0.0)


async def until(predicate: Any, what: str, deadline: float = 300.0) -> float:
    began = time.monotonic()
    while not predicate():
        if time.monotonic() - began > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
    return time.monotonic() - began


def synced(kube: Kube, objects: int, value: str) -> bool:
    secrets = kube.admin.list("v1", "Secret", "bench",
                              label_selector="app.kubernetes.io/managed-by=vault-syncd")
    good = [s for s in secrets
            if base64.b64decode((s.get("data") or {}).get("VALUE", "")).decode() == value]
    return len(good) == objects


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", type=int, default=200)
    parser.add_argument("--refresh", type=float, default=10.0)
    parser.add_argument("--window", type=float, default=30.0)
    args = parser.parse_args()
    work = ROOT / ".bench"
    work.mkdir(exist_ok=True)
    async with running_kube() as kube, running_vault() as vault:
        init = vault.admin.bootstrap(shares=1, threshold=1, kv_v2_path="secret")
        client = hvac.Client(url=vault.address, token=init.root_token)
        for i in range(args.objects):
            await asyncio.to_thread(client.secrets.kv.v2.create_or_update_secret,
                                    path=f"app/{i}", secret={"VALUE": "v1"})
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
        log = (work / "syncd.log").open("wb")
        syncd = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "syncd", "run", "--kubeconfig", str(kubeconfig),
            "--log-level", "debug", "--health-address", "", stdout=log, stderr=log,
            env={**os.environ, "OTEL_TRACES_EXPORTER": "none"},
        )
        try:
            began = time.monotonic()
            for i in range(args.objects):
                kube.admin.apply({
                    "apiVersion": GROUP_VERSION, "kind": "VaultStaticSecret",
                    "metadata": {"name": f"s{i}", "namespace": "bench"},
                    "spec": {"mount": "secret", "path": f"app/{i}", "type": "kv-v2",
                             "refreshAfter": f"{args.refresh}s",
                             "destination": {"name": f"s{i}", "create": True}},
                })
            await until(lambda: synced(kube, args.objects, "v1"), "the first sync")
            first_sync = time.monotonic() - began

            # Let the first writes' echoes and status patches settle, then measure quiet.
            await asyncio.sleep(args.refresh)
            kube.requests.reset()
            vault.admin.reset_counters()
            cpu_before, window_began = cpu_seconds(syncd.pid), time.monotonic()
            wall_began = time.time()
            await asyncio.sleep(args.window)
            elapsed = time.monotonic() - window_began
            reconciles, interval = unchanged_reconciles(
                work / "syncd.log", wall_began, time.time()
            )
            cpu = cpu_seconds(syncd.pid) - cpu_before
            vault_reads = vault.admin.request_count(method="GET")
            refreshes_expected = args.objects * elapsed / args.refresh
            kube_requests = kube.requests.snapshot()
            rss = rss_mib(syncd.pid)

            began = time.monotonic()
            for i in range(args.objects):
                await asyncio.to_thread(client.secrets.kv.v2.create_or_update_secret,
                                        path=f"app/{i}", secret={"VALUE": "v2"})
            written = time.monotonic() - began
            await until(lambda: synced(kube, args.objects, "v2"), "the rotation")
            rotation = time.monotonic() - began
        finally:
            syncd.terminate()
            await syncd.wait()
    result = {
        "benchmark": "syncd_scale",
        "objects": args.objects,
        "refresh_after_s": args.refresh,
        "first_sync_all_s": round(first_sync, 2),
        "steady_window_s": round(elapsed, 1),
        "vault_reads_in_window": vault_reads,
        "reconciles_in_window": reconciles,
        "vault_reads_per_reconcile": round(vault_reads / max(reconciles, 1), 3),
        "effective_refresh_s": round(interval, 2),
        "nominal_refreshes_in_window": round(refreshes_expected),
        "kube_requests_in_window": kube_requests,
        "syncd_cpu_percent_steady": round(100 * cpu / elapsed, 2),
        "syncd_rss_mib": round(rss, 1),
        "rotation_all_s": round(rotation, 2),
        "rotation_vault_writes_s": round(written, 2),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "PYTHONPATH=. .venv/bin/python bench/syncd_scale.py " + " ".join(sys.argv[1:]),
    }
    print(json.dumps(result, indent=2))
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
