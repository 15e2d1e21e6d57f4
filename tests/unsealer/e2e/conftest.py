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

from bench.unsealer_faults import install_unsealer, write_private
from plumbing import telemetry
from testbed.kube import running_kube
from testbed.statefulset import vault_pods
from testbed.vault import running_vault
from tests.unsealer.e2e.world import (
    ENV_VARIABLE,
    HOSTS,
    VAULT_NS,
    World,
    custody_config,
    free_port,
)
from unsealer.settings import Settings


@pytest.fixture
async def world(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> AsyncIterator[World]:
    """TLS by default; ``@pytest.mark.parametrize("world", ["plain-http"], indirect=True)``
    gives a Vault that speaks plain http and an unsealer run with ``allow_plain_http``."""
    tls = getattr(request, "param", "tls") != "plain-http"
    logs, spans, metrics = io.StringIO(), InMemorySpanExporter(), InMemoryMetricReader()
    telemetry.configure(service_name="unsealer", service_version="test", log_level="debug",
                        stream=logs, span_exporter=spans, metric_reader=metrics)
    port = free_port()
    async with running_kube(pod_ready_delay=0.05) as kube, \
            running_vault(nodes=3, hosts=HOSTS, port=port, tls=tls,
                          tls_dir=tmp_path / "vault-tls") as vault, \
            vault_pods(kube, vault, namespace=VAULT_NS) as pods:
        init = vault.admin.initialize(shares=5, threshold=3)
        keys = list(init.keys)
        kubeconfig = install_unsealer(kube, keys, tmp_path / "kubeconfig")
        share_file = tmp_path / "shares"
        write_private(share_file, f"{keys[2].hex()}\n{base64.b64encode(keys[3]).decode()}\n")
        monkeypatch.setenv(ENV_VARIABLE, keys[4].hex())
        config = tmp_path / "custody.yaml"
        config.write_text(yaml.safe_dump(custody_config(share_file=share_file)))
        settings = Settings(
            custody_config=str(config), kubeconfig=str(kubeconfig), namespace=VAULT_NS,
            address_template=f"{'https' if tls else 'http'}://{{ip}}:{port}",
            ca_file=str(vault.ca_file) if tls else None, allow_plain_http=not tls,
            poll_seconds=1.0, backoff_max_seconds=1.0, grace_seconds=3.0,
        )
        world = World(kube=kube, vault=vault, pods=pods, keys=keys, logs=logs, spans=spans,
                      metrics=metrics, settings=settings, share_file=share_file, port=port,
                      directory=tmp_path, root_token=init.root_token)
        try:
            yield world
        finally:
            await world.stop_unsealer()
            world.assert_no_share_leaked()
