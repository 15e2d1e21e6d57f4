"""The ``world`` fixture of the unsealer's end-to-end tests (see world.py)."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from plumbing import telemetry
from testbed.kube import running_kube
from testbed.vault import running_vault
from tests.unsealer.e2e.world import (
    CUSTODY_NS,
    ENV_VARIABLE,
    HOSTS,
    ROOT,
    VAULT_NS,
    World,
    custody_config,
    free_port,
    write_private,
)
from unsealer.settings import Settings

STATEFULSET = {
    "apiVersion": "apps/v1", "kind": "StatefulSet",
    "metadata": {"name": "vault", "namespace": VAULT_NS},
    "spec": {
        "replicas": 3, "serviceName": "vault-internal",
        "selector": {"matchLabels": {"app.kubernetes.io/name": "vault", "component": "server"}},
        "template": {
            "metadata": {"labels": {"app.kubernetes.io/name": "vault", "component": "server"}},
            "spec": {"containers": [{"name": "vault", "image": "hashicorp/vault:1.18.3"}]},
        },
    },
}


@pytest.fixture
async def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    logs, spans, metrics = io.StringIO(), InMemorySpanExporter(), InMemoryMetricReader()
    telemetry.configure(service_name="unsealer", service_version="test", log_level="debug",
                        stream=logs, span_exporter=spans, metric_reader=metrics)
    port = free_port()
    async with running_kube(pod_ready_delay=0.05) as kube, \
            running_vault(nodes=3, hosts=HOSTS, port=port) as vault:
        init = vault.admin.initialize(shares=5, threshold=3)
        keys = list(init.keys)
        for namespace in (VAULT_NS, CUSTODY_NS):
            kube.admin.create_namespace(namespace)
        for index, host in enumerate(HOSTS):
            kube.kubelet.assign_ip(VAULT_NS, f"vault-{index}", host)
        kube.admin.apply(STATEFULSET)
        await kube.wait_for(
            lambda: len([p for p in kube.admin.list("v1", "Pod", VAULT_NS)
                         if (p.get("status") or {}).get("podIP")]) == 3,
            message="three vault pods with IPs",
        )
        kube.admin.apply({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "unseal-shares", "namespace": CUSTODY_NS},
            "data": {f"share-{i + 1}": base64.b64encode(keys[i].hex().encode()).decode()
                     for i in range(2)},
        })
        share_file = tmp_path / "shares"
        write_private(share_file, f"{keys[2].hex()}\n{base64.b64encode(keys[3]).decode()}\n")
        monkeypatch.setenv(ENV_VARIABLE, keys[4].hex())
        config = tmp_path / "custody.yaml"
        config.write_text(yaml.safe_dump(custody_config(share_file=share_file)))
        for manifest in ("rbac.yaml", "custody-rbac.yaml"):
            kube.admin.apply_yaml((ROOT / "manifests" / "unsealer" / manifest).read_text())
        token = kube.admin.mint_token(VAULT_NS, "vault-unsealer")
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig", token=token)
        settings = Settings(
            custody_config=str(config), kubeconfig=str(kubeconfig), namespace=VAULT_NS,
            address_template=f"http://{{ip}}:{port}", poll_seconds=1.0,
            backoff_max_seconds=1.0, grace_seconds=3.0,
        )
        world = World(kube=kube, vault=vault, keys=keys, logs=logs, spans=spans, metrics=metrics,
                      settings=settings, share_file=share_file)
        try:
            yield world
        finally:
            await world.stop_unsealer()
            world.assert_no_share_leaked()
