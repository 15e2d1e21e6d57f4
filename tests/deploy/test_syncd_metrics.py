"""syncd's ``/metrics``: Prometheus text format on the health port, parsed by
prometheus-client's parser, with the numbers of what happened; and every syncd metric an alert
or the dashboard uses is in the scrape (so they cannot rot when a metric is renamed)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import aiohttp

from testbed.waiting import until
from tests.deploy.metrics import referenced, scrape, value
from tests.syncd.e2e.conftest import world  # noqa: F401  (the fixture)
from tests.syncd.e2e.test_template_bounds import _syncd_process
from tests.syncd.e2e.world import LEASE_TIMINGS, World
from tests.unsealer.e2e.world import free_port


async def test_metrics_are_served_in_prometheus_format_and_cover_the_alerts(
    world: World,  # noqa: F811
) -> None:
    world.settings = dataclasses.replace(world.settings, leader_elect=True,
                                         health_address="127.0.0.1:0", **LEASE_TIMINGS)
    await world.write_kv("kv-secret/info", {"SECRET_KEY": world.value("v1")})
    world.deployment("app", secret="info")
    world.vss("info", rolloutRestartTargets=[{"kind": "Deployment", "name": "app"}])
    world.vss("gone", path="kv-secret/does-not-exist")
    world.start_syncd()
    await world.synced("info")
    await world.wait_condition("gone", "Synced", status="False", reason="SecretNotFound")
    await world.write_kv("kv-secret/info", {"SECRET_KEY": world.value("v2")})
    await world.eventually(lambda: world.restarts("app") == 1, message="the rotation restart")
    await world.eventually(lambda: world.probes, message="the health server")

    port = world.probes[0].port

    async def restart_counted() -> bool:  # the span that counts it ends after the patch
        _, _, now = await scrape(port)
        return value(now, "syncd_rollout_restarts_total", result="Restarted") == 1

    await until(restart_counted, deadline=10, every=0.05)
    content_type, text, samples = await scrape(port)
    assert content_type.startswith("text/plain; version=0.0.4")
    assert value(samples, "syncd_syncs_total", outcome="SecretSynced") == 1
    assert value(samples, "syncd_syncs_total", outcome="SecretRotated") == 1
    assert (value(samples, "syncd_syncs_total", outcome="SecretNotFound") or 0) >= 1
    assert value(samples, "syncd_rollout_restarts_total", result="Restarted",
                 kind="Deployment") == 1
    assert (value(samples, "syncd_vault_reads_total", result="ok") or 0) >= 2
    assert (value(samples, "syncd_reconcile_duration_seconds_count") or 0) >= 3
    assert value(samples, "syncd_reconcile_duration_seconds_bucket", le="+Inf") == value(
        samples, "syncd_reconcile_duration_seconds_count")
    assert value(samples, "syncd_leader") == 1
    assert value(samples, "syncd_queue_depth", state="waiting") is not None

    names = {name for name, _ in samples}
    missing = referenced("syncd_") - names
    assert referenced("syncd_"), "the alerts and dashboard use syncd's metrics"
    assert not missing, f"alerts or dashboard use metrics syncd does not export: {missing}"
    assert not world.leaks([text])


async def test_a_syncd_process_serves_metrics_by_default(
    world: World, tmp_path: Path,  # noqa: F811
) -> None:
    """``syncd run`` as a process (OTLP off: ``OTEL_METRICS_EXPORTER=none``): /metrics is there
    anyway, with the sync it made."""
    await world.write_kv("kv-secret/info", {"SECRET_KEY": world.value("process")})
    world.vss("info")
    port = free_port()
    async with _syncd_process(world, tmp_path, port=port) as (process, log):
        async def synced() -> bool:
            assert process.returncode is None, log.read_text()
            try:
                _, _, now = await scrape(port)
            except aiohttp.ClientError:
                return False  # not listening yet
            return value(now, "syncd_syncs_total", outcome="SecretSynced") == 1

        await until(synced, deadline=30, every=0.1)
        _, text, samples = await scrape(port)
        assert value(samples, "syncd_leader") == 1
        assert value(samples, "target_info", service_name="syncd") == 1
        assert not world.leaks([text, log.read_text()])
