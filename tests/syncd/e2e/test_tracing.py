"""One trace per reconcile: the Vault read, the Secret write and the restarts it caused are its
children, and the log lines written inside it carry its ids.

(Every test also checks, when its world ends, that no secret value reached a log line, a span,
an Event or a status: see conftest.py.)
"""

from __future__ import annotations

import json
from typing import Any

from tests.syncd.e2e.world import World


def _hex(number: int, width: int) -> str:
    return format(number, f"0{width}x")


async def test_one_trace_per_reconcile(world: World) -> None:
    await world.write_kv("kv-secret/info", {"password": world.value("traced")})
    world.deployment("web", secret="traced")
    world.vss("traced", rolloutRestartTargets=[{"kind": "Deployment", "name": "web"}])
    world.start_syncd()
    await world.synced("traced")
    await world.write_kv("kv-secret/info", {"password": world.value("traced-rotated")})
    await world.wait_condition("traced", "RolloutRestart", status="True")
    await world.stop_syncd()

    spans = world.spans.get_finished_spans()
    reconciles = {s.context.span_id: s for s in spans if s.name == "reconcile"}
    by_trace: dict[int, list[Any]] = {}
    for span in reconciles.values():
        by_trace.setdefault(span.context.trace_id, []).append(span)
        assert span.parent is None, "a reconcile starts its own trace"
    assert all(len(v) == 1 for v in by_trace.values()), "one reconcile per trace"

    children = [s for s in spans if s.name in ("vault.read", "secret.write", "rollout.restart")]
    for span in children:
        assert span.parent is not None, f"{span.name} has no parent"
        parent = reconciles.get(span.parent.span_id)
        assert parent is not None, f"{span.name} is not a child of a reconcile"
        assert span.context.trace_id == parent.context.trace_id

    names = {s.name for s in children}
    assert names == {"vault.read", "secret.write", "rollout.restart"}, names
    # The rotation: one trace holding the read, the write and the restart it asked for.
    restart = next(s for s in spans if s.name == "rollout.restart")
    rotation = [s.name for s in children if s.context.trace_id == restart.context.trace_id]
    assert sorted(rotation) == ["rollout.restart", "secret.write", "vault.read"]
    assert restart.attributes["syncd.rollout.outcome"] == "Restarted"
    assert reconciles[restart.parent.span_id].attributes["syncd.outcome"] == "SecretRotated"

    # Log lines inside a reconcile carry its trace and span ids.
    lines = [json.loads(line) for line in world.logs.getvalue().splitlines() if line.strip()]
    synced = [line for line in lines if line.get("event") == "synced"]
    assert len(synced) == 2
    traces = {_hex(s.context.trace_id, 32) for s in reconciles.values()}
    assert all(line["trace_id"] in traces for line in synced)
    restart_log = next(line for line in lines if line.get("event") == "rollout restart")
    assert restart_log["trace_id"] == _hex(restart.context.trace_id, 32)
    assert restart_log["span_id"] == _hex(restart.context.span_id, 16)
