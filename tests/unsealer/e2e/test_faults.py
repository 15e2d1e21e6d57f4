"""Issue 16's unsealer faults, one each, with the real ``unsealer run`` process.

The scenarios and their checker are :mod:`bench.unsealer_faults` (the long runs are
``python -m bench unsealer-faults``); here each runs once with short timings (poll and
backoff cap 1 s) and every invariant must hold: every pod unsealed, no share sent before
the threshold can be met, no connection to an impostor pod, a bounded request rate, no share
or token in the processes' output or in Events. Two run while 50 secrets rotate under syncd
(``under_load``: the fault suite's checker judges the rotations, as ``--secrets`` does).
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bench.unsealer_faults import (
    OUTAGES,
    THRESHOLD,
    Rig,
    custodian_down,
    killed_mid_unseal,
    power_loss,
    rig,
    under_load,
)


@pytest.fixture
async def bed(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    peer = getattr(request, "param", "local") == "peer"
    async with rig(tmp_path, peer=peer, poll="1s", backoff_max="1s") as found:
        yield found


async def test_power_loss_with_the_unsealer_and_syncd_killed_too(bed: Rig) -> None:
    row = await power_loss(bed, cycles=1, deadline=30, syncd=True)
    assert row.violations == []  # the Secret was never deleted or blanked, among the rest
    assert row.unseals_done == row.unseals_expected == 3
    assert bed.starts == 2  # the unsealer came back as a new process, with no memory
    assert len(row.facts["syncd_resumed_s"]) == 1  # a write made after the unseal, delivered
    assert bed.synced_value() == "v1"


async def test_killed_between_two_shares_then_restarted(bed: Rig) -> None:
    row = await killed_mid_unseal(bed, cycles=1, latency=0.5, deadline=30)
    assert row.violations == []
    # Vault was left half-way by the killed process, with a nonce the new one never saw...
    [left] = row.facts["progress_left"]
    assert 0 < left < THRESHOLD
    # ...and the new process unsealed it all the same.
    assert row.unseals_done == 1 and not any(bed.sealed())


async def test_custodians_down_then_back(bed: Rig) -> None:
    # The Secret custodian refused (403) and a file gone: 2 shares of the 3 needed.
    row = await custodian_down(bed, OUTAGES["secret-forbidden"], seconds=4, deadline=30)
    assert row.facts["partial_unseals"] == 0  # no share left while the set was short
    assert row.violations == []
    assert row.unseals_done == 3
    # It kept trying meanwhile (a seal-status per pod per backoff), just calmly.
    assert 0 < row.max_request_rate["vault"] <= 10


async def test_power_loss_while_secrets_rotate(bed: Rig) -> None:
    """50 secrets rotating under syncd through a power cut that kills the unsealer and syncd:
    writes refused while Vault is sealed are no rotations; every rotation written is
    delivered, no Secret blanked, deleted or sent back, one restart per change, bounded
    rates, no value in syncd's output (the fault suite's checker)."""
    row = await under_load(bed, functools.partial(power_loss, bed, cycles=1, deadline=30,
                                                  syncd=True),
                           secrets=50, rate=20.0, refresh=1.0, settle=30.0)
    assert row.violations == [], row
    assert row.unseals_done == 3
    load = row.load
    assert load["rotations_written"] > 0
    assert load["rotations_delivered"] == load["rotations_written"]
    assert load["writes_refused"] > 0  # the cut sealed Vault while the writes went on


async def test_api_server_failing_while_secrets_rotate(bed: Rig) -> None:
    """The API server answers 503 to everything for longer than syncd's renew deadline (10 s)
    while Vault is sealed: syncd gives up its Lease and exits, and comes back (as the kubelet
    restarts it); once the custodians are back and Vault unsealed, every rotation arrives."""
    row = await under_load(bed, functools.partial(
        custodian_down, bed, OUTAGES["api-server-failing"], seconds=12, deadline=30),
        secrets=50, rate=20.0, refresh=1.0, settle=30.0)
    assert row.violations == [], row
    assert row.load["rotations_delivered"] == row.load["rotations_written"] > 0
    assert row.load["syncd_restarted_after_exiting"] >= 1  # it lost its Lease: exited
