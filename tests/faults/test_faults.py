"""One fault each, 50 secrets rotating: no Secret blanked, deleted or sent back, every
rotation delivered, one restart per change, no hot loop, nothing leaked (see conftest.py)."""

from __future__ import annotations

import pytest

from bench.faults.checker import vault_syncd_requests
from bench.faults.scenarios import BY_NAME
from testbed.waiting import until
from tests.faults.conftest import REFRESH, SECRETS, Faulted
from tests.syncd.e2e.world import GROUP_VERSION, OPERATOR_NS


@pytest.mark.parametrize("name", [
    "vault-5xx",
    "vault-sealed",
    "vault-slow",
    "kube-409",
    "kube-410",
    "kube-429",
    "kube-dropped-watches",
    "kube-restart",
])
async def test_one_fault(faulted: Faulted, name: str) -> None:
    row = await faulted.run(BY_NAME[name])
    assert row.rotations_written > 0
    assert row.violations == [], row
    assert row.rotations_delivered == row.rotations_written
    assert row.recovery_s is not None
    assert faulted.leaks() == []


async def test_calm_outage_and_prompt_resume(faulted: Faulted) -> None:
    """Issue 16, item 2: while Vault is sealed, syncd probes it once per connection (not once
    per object: 50 here); once it answers again, every object of that connection resumes
    within refreshAfter (target: 1 s), whatever backoff the outage built up."""
    faulted.suite.fault_seconds = 8.0
    row = await faulted.run(BY_NAME["vault-sealed"])
    assert row.violations == [], row
    rates = row.max_request_rate
    assert isinstance(rates, dict) and rates["vault"] <= 10, row
    assert row.recovery_s is not None and row.recovery_s <= 1.0 + REFRESH, row


async def test_reads_failing_without_an_answer_park_behind_one_canary(faulted: Faulted) -> None:
    """Issue 16: KV reads reset while sys/health answers. The objects of the connection park
    behind one object's read (the canary) instead of each retrying alone (50 objects, each
    failing read sent twice by aiohttp: about 100 requests/s before), and resume within
    refreshAfter + 1 s of the reads answering again."""
    faulted.suite.fault_seconds = 6.0
    row = await faulted.run(BY_NAME["vault-resets"])
    assert row.violations == [], row
    assert row.rotations_delivered == row.rotations_written
    rates = row.max_request_rate
    # The steady load is 50 reads/s (50 objects, refreshAfter 1 s); the window holding the
    # fault's start still counts some of it.
    assert isinstance(rates, dict) and rates["vault"] <= 20, row
    assert row.recovery_s is not None and row.recovery_s <= 1.0 + REFRESH, row
    assert faulted.leaks() == []


async def test_reads_timing_out_resume_within_the_client_timeout(faulted: Faulted) -> None:
    """KV reads unanswered: each read in flight waits out the VaultConnection's timeout (2 s
    here; 10 s by default), so recovery is bounded by it, not by any backoff."""
    world = faulted.world
    world.apply({"apiVersion": GROUP_VERSION, "kind": "VaultConnection",
                 "metadata": {"name": "default", "namespace": OPERATOR_NS},
                 "spec": {"address": world.vault.address, "timeout": "2s"}})

    def reads() -> int:
        return vault_syncd_requests(world.vault.admin.request_counts())

    # Two passes over every object: each has read through the new connection since.
    start = reads()
    await until(lambda: reads() >= start + 2 * SECRETS, deadline=10)
    faulted.suite.fault_seconds = 4.0
    row = await faulted.run(BY_NAME["vault-timeouts"])
    assert row.violations == [], row
    assert row.rotations_delivered == row.rotations_written > 0
    assert row.recovery_s is not None and row.recovery_s <= 2.0 + REFRESH + 1.0, row
