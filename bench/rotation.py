"""``rotation``: N synced objects; ``--writes`` of them get a new value in Vault at a fixed
rate, in random order; for each, the time from the Vault write being answered to the Secret
holding the new value (seen through a watch). One Deployment uses the first rotated Secret (a
rolloutRestartTarget): its pod template must be restarted exactly once.

``--source`` says how syncd learns of a write:

- ``poll`` (the default): it does not; every object is read every ``refreshAfter``, which is the
  bound to meet (p99 ≤ refreshAfter + 250 ms).
- ``events``: every object has ``syncConfig.instantUpdates`` and syncd subscribes to Vault's
  event notifications (``--instant-updates-source events``).
- ``audit``: the same through ``syncd audit-relay`` behind a unix-socket audit device
  (``write_timeout=250ms``, after a ``file`` device, as the README sets it up). Before the
  writes, Vault's write latency is measured with the relay's device and without it, in
  alternating blocks (the device is disabled and enabled again between them), so drift in the
  machine's load lands on both. ``--late``: the relay starts only after the cold sync, as when
  it is deployed after syncd (every object polls at ``refreshAfter`` until it connects).

Vault reads per write: the reads of the written paths during the writes and until the last
Secret holds its value, divided by the writes (target 1 with a source); the reads of every
other path in that time are the polling underneath (``refreshAfter`` for ``poll``, the safety
interval for the others), reported apart.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import time
from typing import Any

from bench.harness import (
    Bench,
    Syncd,
    cold_sync,
    free_port,
    percentile,
    prepare,
    running_bench,
    spread,
)
from bench.kube_server import NAMESPACE, static_secret

DEPLOYMENT = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/web"
#: Sequential writes per block of the audit device's latency measurement.
LATENCY_BLOCK = 100

TARGETS = {"p99_s": "≤ refreshAfter + 0.25 s", "not_rotated": "0", "deployment_restarts": "1"}
INSTANT_TARGETS = {"p99_s": "≤ 0.25 s", "not_rotated": "0", "deployment_restarts": "1",
                   "vault_reads_per_write": "1", "audit_device_added_ms": "p99 < 1 ms"}


def targets(args: argparse.Namespace) -> dict[str, str]:
    return TARGETS if args.source == "poll" else INSTANT_TARGETS


def suffix(args: argparse.Namespace) -> str:
    """``-<N>`` for ``poll`` (as before sources existed), ``-<source>[-late]-<N>`` otherwise."""
    if args.source == "poll":
        return f"-{args.secrets}"
    return f"-{args.source}{'-late' if args.late else ''}-{args.secrets}"


async def _with_workload(bench: Bench, index: int, refresh: float, *, instant: bool) -> None:
    """Deployment ``web`` uses Secret ``s<index>``, whose VaultStaticSecret restarts it."""
    await bench.apply({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": NAMESPACE},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                     {"name": "web", "image": "web:1",
                      "envFrom": [{"secretRef": {"name": f"s{index}"}}]}]}}},
    })
    owner = static_secret(index, refresh=refresh, instant=instant)
    owner["spec"]["rolloutRestartTargets"] = [{"kind": "Deployment", "name": "web"}]
    await bench.apply(owner)


async def _generation(bench: Bench) -> int:
    async with bench.session.get(bench.kube_url + DEPLOYMENT) as response:
        return int((await response.json())["metadata"]["generation"])


class _Audit:
    """The audit source's parts: a file device, the relay and its socket device."""

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.port = free_port()
        self.token_file = bench.directory / "relay-token"
        self.token_file.write_text(secrets.token_urlsafe(24))
        self.socket = bench.directory / "relay.sock"
        self.relay: Syncd | None = None

    def syncd_args(self) -> list[str]:
        return ["--audit-relay-listen", f"127.0.0.1:{self.port}",
                "--audit-relay-token-file", str(self.token_file)]

    async def file_device(self) -> None:
        await self.bench.vault("POST", "sys/audit/file", {"type": "file", "options": {
            "file_path": str(self.bench.directory / "audit.log")}})

    async def start_relay(self) -> None:
        self.relay = await self.bench.start_relay(
            listen=self.socket, syncd=f"127.0.0.1:{self.port}", token_file=self.token_file)
        await self.bench.wait_log(self.relay, b"audit relay listening")
        await self.socket_device(enabled=True)

    async def socket_device(self, *, enabled: bool) -> None:
        if not enabled:
            await self.bench.vault("DELETE", "sys/audit/relay")
            return
        await self.bench.vault("POST", "sys/audit/relay", {"type": "socket", "options": {
            "address": str(self.socket), "socket_type": "unix", "write_timeout": "250ms"}})

    async def added_latency(self, blocks: int) -> dict[str, Any]:
        """Vault write latency without and with the relay's device, in alternating blocks."""
        without: list[float] = []
        with_relay: list[float] = []
        #: CPU seconds of the Vault emulation in each mode: what the device costs Vault
        #: itself, which the machine's load does not blur as it does wall-clock percentiles.
        vault_cpu = {"without": 0.0, "with": 0.0}
        await self.bench.write_latencies(20)  # warm the connection and the path
        for _ in range(blocks):
            for mode, into in (("without", without), ("with", with_relay)):
                await self.socket_device(enabled=mode == "with")
                cpu = self.bench.testbed_cpu()["vault"]
                into.extend(await self.bench.write_latencies(LATENCY_BLOCK))
                vault_cpu[mode] += self.bench.testbed_cpu()["vault"] - cpu

        def ms(values: list[float], share: float) -> float:
            return round(1000 * percentile(values, share), 3)

        return {
            "vault_write_ms_file_device_only": {"p50": ms(without, .5), "p99": ms(without, .99)},
            "vault_write_ms_with_relay_device": {"p50": ms(with_relay, .5),
                                                 "p99": ms(with_relay, .99)},
            "audit_device_added_ms": {
                "p50": round(ms(with_relay, .5) - ms(without, .5), 3),
                "p99": round(ms(with_relay, .99) - ms(without, .99), 3)},
            "latency_writes_each": len(without),
            "vault_cpu_ms_per_write": {
                mode: round(1000 * seconds / max(len(without), 1), 3)
                for mode, seconds in vault_cpu.items()},
        }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    chosen = spread(args.secrets, args.writes)
    instant = args.source != "poll"
    figures: dict[str, Any] = {"source": args.source}
    async with running_bench() as bench:
        await prepare(bench, secrets=args.secrets, refresh=args.refresh, instant=instant)
        await _with_workload(bench, chosen[0], args.refresh, instant=instant)
        syncd_args = ["--rollout-debounce", f"{args.debounce}s"]
        audit = _Audit(bench) if args.source == "audit" else None
        if instant:
            syncd_args += ["--instant-updates-source", args.source,
                           "--instant-updates-safety-interval", f"{args.safety:g}s"]
        if audit is not None:
            syncd_args += audit.syncd_args()
            await audit.file_device()
            if not args.late:  # the sidecar runs with Vault, before syncd
                await audit.start_relay()
        synced = await cold_sync(bench, secrets=args.secrets, syncd_args=syncd_args)
        syncd = synced.syncd
        if audit is not None:
            if args.late:
                await audit.start_relay()
            figures["source_connected_after_cold_sync_s"] = round(
                await bench.wait_log(syncd, b"audit relay connected"), 2)
            figures |= await audit.added_latency(args.latency_blocks)
        elif args.source == "events":
            figures["source_connected_after_cold_sync_s"] = round(
                await bench.wait_log(syncd, b"events stream open"), 2)
        await asyncio.sleep(min(args.refresh, 5.0))
        generation = await _generation(bench)
        await bench.vault_requests(reset=True)
        relay_cpu = audit.relay.cpu() if audit is not None and audit.relay else 0.0
        written: dict[int, float] = {}
        began = time.monotonic()
        for number, index in enumerate(chosen):
            # A fixed rate: write number k is sent at k / rate, however long the last took.
            await asyncio.sleep(max(0.0, began + number / args.rate - time.monotonic()))
            written.update(await bench.write_secrets([index], "v2", concurrency=1))
        names = {f"s{i}": i for i in chosen}
        deadline = args.refresh * 2 + 30
        with contextlib.suppress(TimeoutError):  # those not rotated are counted below
            await bench.secrets.wait_count("v2", len(chosen), deadline=deadline)
        phase = time.monotonic() - began
        requests = await bench.vault_requests()
        latencies = [bench.secrets.changed[name] - written[index]
                     for name, index in names.items() if bench.secrets.values.get(name) == "v2"]
        if audit is not None and audit.relay is not None:
            relay_cpu = audit.relay.cpu() - relay_cpu
        # The restart comes after the debounce; wait well past it to see there is no second.
        await asyncio.sleep(2.5 * args.debounce + 0.5)
        restarts = await _generation(bench) - generation
        cpu = syncd.cpu()
    wanted = {f"GET /v1/secret/data/app/{index}" for index in chosen}
    reads_written = sum(n for key, n in requests.items() if key in wanted)
    reads_other = sum(n for key, n in requests.items()
                      if key.startswith("GET /v1/secret/data/") and key not in wanted)
    vault_requests = sum(requests.values())
    figures |= {
        "writes": len(chosen),
        "rate_per_s": args.rate,
        "rotated": len(latencies),
        "not_rotated": len(chosen) - len(latencies),
        "p50_s": round(percentile(latencies, 0.50), 4),
        "p95_s": round(percentile(latencies, 0.95), 4),
        "p99_s": round(percentile(latencies, 0.99), 4),
        "max_s": round(max(latencies, default=float("nan")), 4),
        "bound_s": args.refresh + 0.25 if args.source == "poll" else 0.25,
        "vault_reads_per_write": round(reads_written / max(len(chosen), 1), 3),
        "vault_reads_other_paths": reads_other,
        "phase_s": round(phase, 1),
        "deployment_restarts": restarts,
        "syncd_cpu_s_total": round(cpu, 2),
    }
    if audit is not None:
        figures["relay_cpu_ms_per_vault_request"] = round(
            1000 * relay_cpu / max(vault_requests, 1), 3)
    return figures
