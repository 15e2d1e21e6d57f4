"""The unsealer's end-to-end world: a 3-node Vault (vault-0..2), its pods, split custody.

Each Vault node of the emulation is bound to its own loopback address on one port, and the
StatefulSet's pods in the Kubernetes emulation are given those addresses
(:class:`testbed.statefulset.VaultPods`), so the unsealer finds ``vault-1`` by watching pods
and talks to 127.0.0.3 exactly as it would to a pod IP, over TLS: each node presents a
certificate from the emulation's CA for its own pod's names (``vault-1.vault-internal.vault.svc``),
which is what the unsealer checks by default. Custody is
5 shares, threshold 3: two in a Kubernetes Secret in another namespace, two in a 0600 file, one
in an environment variable. The unsealer runs in the test's event loop with the token of the
``vault-unsealer`` ServiceAccount bound by ``manifests/unsealer/rbac.yaml``.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hvac
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from testbed.kube import Kube
from testbed.statefulset import VaultPods
from testbed.vault import RunningVault
from unsealer.service import run
from unsealer.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
VAULT_NS = "vault"
CUSTODY_NS = "vault-custody"
HOSTS = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
ENV_VARIABLE = "UNSEALER_E2E_SHARES"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class World:
    kube: Kube
    vault: RunningVault
    pods: VaultPods
    keys: list[bytes]
    logs: io.StringIO
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader
    settings: Settings
    share_file: Path
    port: int
    directory: Path
    root_token: str = ""
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    stops: list[asyncio.Event] = field(default_factory=list)

    # --- the unsealer -------------------------------------------------------------------

    def start_unsealer(self, settings: Settings | None = None) -> asyncio.Task[None]:
        stop = asyncio.Event()
        self.stops.append(stop)
        task = asyncio.create_task(run(settings or self.settings, stop))
        self.tasks.append(task)
        return task

    async def stop_unsealer(self) -> None:
        for stop in self.stops:
            stop.set()
        await asyncio.wait_for(asyncio.gather(*self.tasks, return_exceptions=True), 15)
        self.tasks.clear()
        self.stops.clear()

    # --- Vault and pods -----------------------------------------------------------------

    def sealed(self, node: int) -> bool:
        return bool(self.vault.admin.node(node).sealed)

    async def restart_vault(self, node: int) -> None:
        """vault-N's container restarts: the process comes back sealed, restartCount+1."""
        self.pods.restart(f"vault-{node}")

    def vault_client(self, node: int = 0) -> hvac.Client:
        """An hvac client of vault-N (verifying its certificate with the emulation's CA)."""
        return hvac.Client(url=self.vault.addresses[node], verify=self.vault.verify)

    def events(self, reason: str) -> list[dict[str, Any]]:
        return [e for e in self.kube.admin.list("v1", "Event", VAULT_NS)
                if e.get("reason") == reason]

    async def eventually(
        self, predicate: Callable[[], Any], *, deadline: float = 15.0, message: str = "condition"
    ) -> Any:
        return await self.kube.wait_for(predicate, timeout=deadline, message=message)

    def log_records(self, event: str) -> list[dict[str, Any]]:
        """The JSON log lines (both services, if two run) whose ``event`` is ``event``."""
        found = []
        for line in self.logs.getvalue().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("event") == event:
                found.append(record)
        return found

    def metric_points(self, name: str) -> list[Any]:
        data = self.metrics.get_metrics_data()
        points: list[Any] = []
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        points += list(metric.data.data_points)
        return points

    # --- secrecy ------------------------------------------------------------------------

    def share_forms(self) -> list[str]:
        """Every share (hex, base64) and the root token: what no captured output may hold."""
        forms = [self.root_token] if self.root_token else []
        for key in self.keys:
            forms += [key.hex(), base64.b64encode(key).decode()]
        return forms

    def captured(self) -> str:
        spans = "\n".join(
            json.dumps({"name": s.name, "attributes": dict(s.attributes or {}),
                        "status": str(s.status.description)})
            for s in self.spans.get_finished_spans()
        )
        events = json.dumps(self.kube.admin.list("v1", "Event", VAULT_NS))
        return self.logs.getvalue() + "\n" + spans + "\n" + events

    def assert_no_share_leaked(self) -> None:
        text = self.captured()
        for form in self.share_forms():
            assert form not in text


def custody_config(*, share_file: Path, threshold: int = 3) -> dict[str, Any]:
    return {
        "threshold": threshold,
        "shares": 5,
        "custodians": [
            {"name": "kube-a", "kind": "kubernetesSecret", "namespace": CUSTODY_NS,
             "secretName": "unseal-shares", "shares": 2},
            {"name": "disk", "kind": "file", "path": str(share_file), "shares": 2},
            {"name": "dev", "kind": "env", "variable": ENV_VARIABLE, "shares": 1},
        ],
    }


