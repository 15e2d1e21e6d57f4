"""syncd's ``/metrics``: Prometheus text format on the health port, parsed by
prometheus-client's parser, with the numbers of what happened; and every syncd metric an alert
or the dashboard uses is in the scrape (so they cannot rot when a metric is renamed)."""

from __future__ import annotations

import dataclasses

from testbed.waiting import until
from tests.deploy.metrics import referenced, scrape, value
from tests.syncd.e2e.conftest import world  # noqa: F401  (the fixture)
from tests.syncd.e2e.world import LEASE_TIMINGS, World


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
