"""One fault each, 50 secrets rotating: no Secret blanked, deleted or sent back, every
rotation delivered, one restart per change, no hot loop, nothing leaked (see conftest.py)."""

from __future__ import annotations

import pytest

from bench.faults.scenarios import BY_NAME
from tests.faults.conftest import REFRESH, Faulted


@pytest.mark.parametrize("name", [
    "vault-5xx",
    "vault-sealed",
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
