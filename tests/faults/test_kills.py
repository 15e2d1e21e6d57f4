"""The process-kill scenarios, fast: syncd as two real replicas with leader election under the
bench's supervisor (``bench/faults/runner.py``), 50 secrets rotating, the bench's checker.

``syncd-sigkill`` holds syncd's Secret writes at the API server and SIGKILLs the leader while
one of its own is held (its client port is the leader's): the kill is confirmed mid-write, not
made likely. ``leader-killed`` SIGKILLs the leader and the standby takes over. Short leases
(3 s) keep each case near 30 s.
"""

from __future__ import annotations

import argparse
import base64

from bench.faults.leaks import count
from bench.faults.report import Row
from bench.faults.runner import Run, running
from bench.faults.scenarios import BY_NAME, Scenario
from bench.faults.suite import run_scenario
from bench.kube_server import NAMESPACE

ARGS = argparse.Namespace(secrets=50, rate=20.0, refresh=2.0, fault_seconds=3.0, settle=20.0,
                          replicas=2)
LEASE = ("--lease-duration", "3s", "--renew-deadline", "2s", "--retry-period", "0.5s")


def _clean(row: Row, run: Run) -> None:
    assert row.rotations_written > 0, row
    assert row.violations == [], row
    assert row.rotations_delivered == row.rotations_written
    assert run.replicas.unexpected_exits == []


async def test_syncd_sigkill_mid_write() -> None:
    async with running(ARGS, replica_args=LEASE) as run:
        row = await run_scenario(run.suite, BY_NAME["syncd-sigkill"])
        _clean(row, run)
        assert (run.kills.done, run.kills.mid_write) == (1, 1), row.notes
        assert "killed during update secrets/" in row.notes or \
            "killed during patch secrets/" in row.notes, row.notes
        assert count(await run.leaks()) == 0


async def test_leader_killed_standby_takes_over() -> None:
    async with running(ARGS, replica_args=LEASE) as run:
        first = run.replicas.leader()
        row = await run_scenario(run.suite, BY_NAME["leader-killed"])
        _clean(row, run)
        assert first is not None and first.pid in run.replicas.killed
        leader = run.replicas.leader()
        assert leader is not None and leader is not first
        assert count(await run.leaks()) == 0


async def test_a_secret_sent_back_during_the_kill_is_a_violation() -> None:
    """While the leader is dead, a hostile admin writes a Secret's older value back: the
    row must show it (the new leader repairing it later does not hide it)."""
    async with running(ARGS, replica_args=LEASE) as run:
        suite, bench = run.suite, run.bench
        kill = suite.process_fault
        assert kill is not None
        name = "s9"
        older = next(v for v, (n, generation) in suite.ledger.values.items()
                     if n == name and generation == 1)
        await suite.rotator.write(name)
        assert await suite.checker.wait(
            lambda: suite.checker.held[name].generation >= 2, deadline=10)

        async def kill_and_tamper(scenario: Scenario) -> str:
            note = await kill(scenario)
            async with bench.session.patch(
                    f"{bench.kube_url}/api/v1/namespaces/{NAMESPACE}/secrets/{name}",
                    json={"data": {"VALUE": base64.b64encode(older.encode()).decode()}},
                    headers={"Content-Type": "application/merge-patch+json"}) as response:
                assert response.status == 200, await response.text()
            return note

        suite.process_fault = kill_and_tamper
        row = await run_scenario(suite, BY_NAME["leader-killed"])
        assert [v for v in row.violations
                if v.startswith(f"{name}: went back from generation") and v.endswith(" to 1")
                ], row
