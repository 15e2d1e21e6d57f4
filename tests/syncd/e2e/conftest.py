"""The ``world`` fixture: both emulations and syncd with its real RBAC (see world.py)."""

from __future__ import annotations

import io
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from plumbing import telemetry
from syncd.operator import Settings
from testbed.kube import running_kube
from testbed.vault import running_vault
from tests.syncd.e2e.world import (
    APP_NS,
    GROUP_VERSION,
    OPERATOR_NS,
    ROOT,
    World,
    _bootstrap_vault,
    _child_token,
    _establish_crds,
)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    logs, spans, metrics = io.StringIO(), InMemorySpanExporter(), InMemoryMetricReader()
    telemetry.configure(
        service_name="syncd", service_version="test", log_level="debug", stream=logs,
        span_exporter=spans, metric_reader=metrics,
    )
    async with running_kube(bookmark_interval=0.5) as kube, running_vault() as vault:
        root_token, unseal_keys = await _bootstrap_vault(vault)
        _establish_crds(kube)
        for namespace in (OPERATOR_NS, APP_NS):
            kube.admin.apply({"apiVersion": "v1", "kind": "Namespace",
                              "metadata": {"name": namespace}})
        kube.admin.apply_yaml((ROOT / "manifests" / "syncd" / "rbac.yaml").read_text())
        token = kube.admin.mint_token(OPERATOR_NS, "vault-syncd")
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig", token=token)
        vault_token = await _child_token(vault, root_token)
        kube.admin.apply({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "vault-token", "namespace": APP_NS},
            "type": "secrets.vault-syncd.dev/vault-token",
            "stringData": {"token": vault_token},
        })
        kube.admin.apply({
            "apiVersion": GROUP_VERSION, "kind": "VaultConnection",
            "metadata": {"name": "default", "namespace": OPERATOR_NS},
            "spec": {"address": vault.address},
        })
        kube.admin.apply({
            "apiVersion": GROUP_VERSION, "kind": "VaultAuth",
            "metadata": {"name": "default", "namespace": OPERATOR_NS},
            "spec": {"method": "token", "token": {"secretRef": {"name": "vault-token",
                                                               "key": "token"}}},
        })
        # One replica without leader election (--leader-elect=false): the Lease renewal every
        # retry period would be noise in the tests that count syncd's requests. The tests of
        # leader election (test_leadership.py), of the probes and metrics, and of RBAC turn it
        # on, with short timings (world.LEASE_TIMINGS).
        settings = Settings(
            kubeconfig=str(kubeconfig), namespace=OPERATOR_NS, debounce_seconds=0.3,
            grace_seconds=3, backoff_max_seconds=1.0, default_refresh_seconds=1.0,
            leader_elect=False,
        )
        world = World(
            kube=kube, vault=vault, root_token=root_token, logs=logs, spans=spans,
            kubeconfig=kubeconfig, settings=settings, unseal_keys=unseal_keys, metrics=metrics,
        )
        try:
            yield world
        finally:
            await world.stop_syncd()
            if os.environ.get("E2E_DUMP_LOGS"):  # debugging aid: keep what syncd said
                Path(os.environ["E2E_DUMP_LOGS"]).write_text(world.captured())
        # No secret value may leave Vault and the destination Secret: not in a log line, a
        # span, an Event or a status (the values every test wrote are registered in world).
        leaked = world.leaks([
            world.captured(),
            json.dumps(world.all_events()),
            json.dumps([v.get("status") for v in world.all_vss()]),
        ])
        assert not leaked, f"secret values leaked into logs, spans, Events or status: {leaked}"

