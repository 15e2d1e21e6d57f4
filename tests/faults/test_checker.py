"""The checker catches what it must: a Secret blanked, deleted or sent back (seen through the
API server as any client sees it), a workload restarted twice, a hot loop."""

from __future__ import annotations

import base64

from bench.faults.checker import peak_rates, restart_violations
from tests.faults.conftest import Faulted
from tests.syncd.e2e.world import APP_NS


async def test_a_tampered_secret_is_a_violation(faulted: Faulted) -> None:
    checker, admin = faulted.suite.checker, faulted.world.kube.admin
    await faulted.suite.rotator.stop()
    seen = len(checker.violations)
    older = next(value for value, (name, generation) in faulted.suite.ledger.values.items()
                 if name == "f7" and generation == 1)
    await faulted.suite.rotator.write("f7")  # generation 2, then sent back to 1 below
    assert await checker.wait(lambda: checker.held["f7"].generation == 2, deadline=10)
    admin.patch("v1", "Secret", "f5", {"data": {"VALUE": None}}, namespace=APP_NS)
    admin.delete("v1", "Secret", "f6", APP_NS)
    admin.patch("v1", "Secret", "f7",
                {"data": {"VALUE": base64.b64encode(older.encode()).decode()}},
                namespace=APP_NS)
    assert await checker.wait(lambda: len(checker.violations) >= seen + 3, deadline=10)
    assert sorted(text for _, text in checker.violations[seen:]) == [
        "f5: Secret blanked (no VALUE)",
        "f6: Secret deleted",
        "f7: went back from generation 2 to 1",
    ]


def test_restarts_counted_against_changes() -> None:
    assert restart_violations(before={"d0": 1, "d1": 1, "d2": 1}, after={"d0": 3, "d1": 1,
                              "d2": 2}, changes={"s0": 1, "s1": 1, "s2": 1},
                              secret_of={"d0": "s0", "d1": "s1", "d2": "s2"}) == [
        "d0: 2 restarts for 1 change(s) of s0",
        "d1: not restarted after 1 change(s) of s1",
    ]


def test_peak_rate_is_the_highest_mean_over_the_window() -> None:
    # A burst of 100 requests in one second, then calm: over a 5 s window, 20/s.
    samples = [(0.0, 0, 0), (1.0, 100, 0), (2.0, 100, 1), (5.0, 100, 2), (6.0, 100, 3)]
    assert peak_rates(samples, window=5.0) == {"kube": 20.0, "vault": 0.6}
    assert peak_rates(samples[:2], window=5.0) == {"kube": 100.0, "vault": 0.0}  # short
