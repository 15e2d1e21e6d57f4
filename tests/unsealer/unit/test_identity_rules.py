"""Who counts as Vault (StatefulSet membership), what it must report, how often it gets shares."""

from __future__ import annotations

from typing import Any

import pytest

from unsealer.discovery import StatefulSet, VaultPod
from unsealer.unsealing import ShareBudget, VaultShape
from unsealer.vault_sys import SealStatus

STATEFULSET = StatefulSet(namespace="vault", name="vault", uid="u-1", replicas=3,
                          service="vault-internal")


def _pod(name: str, *owners: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "vault", "uid": f"p-{name}",
                         "ownerReferences": list(owners)},
            "status": {"podIP": "10.0.0.7"}}


def _owner(uid: str = "u-1", *, kind: str = "StatefulSet", controller: bool = True) -> Any:
    return {"apiVersion": "apps/v1", "kind": kind, "name": "vault", "uid": uid,
            "controller": controller}


def test_only_the_statefulsets_own_pods_are_members() -> None:
    assert STATEFULSET.why_not_member(_pod("vault-2", _owner())) is None
    refusals = {
        "no owner": _pod("vault-0"),
        "an owner that is not the controller": _pod("vault-0", _owner(controller=False)),
        "an old StatefulSet's uid": _pod("vault-0", _owner("u-0")),
        "a ReplicaSet": _pod("vault-0", _owner(kind="ReplicaSet")),
        "another name": _pod("vault-debug", _owner()),
        "an ordinal at replicas": _pod("vault-3", _owner()),
        "a leading zero": _pod("vault-01", _owner()),
        "another StatefulSet's prefix": _pod("vaultx-0", _owner()),
    }
    reasons = {case: STATEFULSET.why_not_member(pod) for case, pod in refusals.items()}
    assert all(reasons.values()), reasons
    assert "ordinal 3 is not below the StatefulSet's 3 replicas" in str(reasons[
        "an ordinal at replicas"])
    assert "not StatefulSet 'vault' (uid u-1)" in str(reasons["an old StatefulSet's uid"])


def test_the_server_name_is_the_pods_stable_dns_name() -> None:
    pod = VaultPod.from_object(_pod("vault-1", _owner()))
    assert pod.server_name("{pod}.{service}.{namespace}.svc", service="vault-internal") == (
        "vault-1.vault-internal.vault.svc")


def _status(t: int, n: int) -> SealStatus:
    return SealStatus(initialized=True, sealed=True, threshold=t, shares=n, progress=0,
                      nonce="", version="1.18.3")


@pytest.mark.parametrize(("t", "n", "refused"), [
    (3, 5, False), (2, 5, True), (5, 5, True), (3, 6, True),
])
def test_vault_must_report_the_recorded_threshold_and_shares(t: int, n: int, refused: bool
                                                             ) -> None:
    problem = VaultShape(threshold=3, shares=5).mismatch("vault-0", _status(t, n))
    assert (problem is not None) == refused
    if problem:
        assert problem == (f"vault-0 reports threshold {t} of {n} shares, but the custody"
                           " config records 3 of 5: no share is sent to it")
    # Without a recorded share count only the threshold is checked.
    assert (VaultShape(threshold=3).mismatch("vault-0", _status(t, n)) is None) == (t == 3)


def test_the_budget_counts_per_pod_instance() -> None:
    budget = ShareBudget(attempts=2, seconds=3600)
    for _ in range(2):
        assert budget.exhausted("vault-0", "uid-a") is None
        budget.spend("vault-0", "uid-a")
    assert "2 attempts sent shares without unsealing it" in str(
        budget.exhausted("vault-0", "uid-a"))
    assert budget.exhausted("vault-1", "uid-b") is None  # another pod: its own budget
    assert budget.exhausted("vault-0", "uid-c") is None  # the pod was replaced: afresh
    budget.spend("vault-0", "uid-c")
    budget.clear("vault-0")  # unsealed
    assert budget.exhausted("vault-0", "uid-c") is None
