"""RBAC: manifests/syncd/rbac.yaml grants what syncd uses, and nothing more.

Sufficiency is shown by every end-to-end test: syncd runs with a token of the ``vault-syncd``
ServiceAccount bound by rbac.yaml, so a missing grant fails them (the testbed enforces RBAC).

Minimality is shown here. One world takes syncd through every kind of Kubernetes request it can
make — informers of its three kinds and of its Secrets, status writes, Events, the fingerprint
key and token Secrets, a TokenRequest (a VaultAuth with ``method: kubernetes``), Secret
creation, update (drift), deletion (a type change), a missing ``create: false`` destination,
and restarts of every workload kind by name, by selector and by ``auto`` (with an Argo Rollout
CRD installed), and leader election (the Lease taken, renewed, released) — and the testbed's
request log then yields the exact set of (API group, resource, verb) syncd asked for. The
ClusterRole and the leader-election Role, expanded into the same triples, must equal that set:
a granted verb syncd never used fails the test, and so does a request they do not cover. The
Role's grants hold in its namespace only, so a request they cover made elsewhere fails too. The
log records every request, allowed or not, so the comparison does not depend on what RBAC let
through.
"""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

import yaml

from tests.syncd.e2e.world import APP_NS, LEASE_TIMINGS, OPERATOR_NS, ROOT, SYNCD_USER, World

Triple = tuple[str, str, str]  # (API group, resource[/subresource], verb)

ARGO_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "rollouts.argoproj.io"},
    "spec": {
        "group": "argoproj.io", "scope": "Namespaced",
        "names": {"kind": "Rollout", "listKind": "RolloutList", "plural": "rollouts",
                  "singular": "rollout"},
        "versions": [{"name": "v1alpha1", "served": True, "storage": True, "schema": {
            "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}],
    },
}


def _granted() -> dict[Triple, str]:
    """Each granted triple -> where it holds: "*" (the ClusterRole) or the Role's namespace."""
    docs = [d for d in yaml.safe_load_all((ROOT / "manifests" / "syncd" / "rbac.yaml").read_text())
            if d]
    roles = [d for d in docs if d["kind"] in ("ClusterRole", "Role")]
    assert [r["kind"] for r in roles] == ["ClusterRole", "Role"]
    out: dict[Triple, str] = {}
    for role in roles:
        where = role["metadata"].get("namespace", "*") if role["kind"] == "Role" else "*"
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        assert (group, resource, verb) not in out, "granted twice"
                        out[(group, resource, verb)] = where
    return out


def _used(world: World) -> dict[Triple, set[str]]:
    """Each triple syncd used -> the namespaces it used it in."""
    out: dict[Triple, set[str]] = {}
    for record in world.syncd_requests():
        if record.resource.startswith("/"):  # discovery and other non-resource paths
            continue
        qualified, _, subresource = record.resource.partition("/")
        plural, _, group = qualified.partition(".")
        triple = (group, plural + (f"/{subresource}" if subresource else ""), record.verb)
        out.setdefault(triple, set()).add(record.namespace)
    return out


def _argo_rollout(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "metadata": {"name": name, "namespace": APP_NS, "labels": labels},
            "spec": {"replicas": 1}}


async def prepare_every_request(world: World) -> None:
    """What makes syncd use every kind of request: workloads of every kind, an Argo Rollout,
    a VaultStaticSecret restarting them all, a missing ``create: false`` destination and a
    VaultAuth of method kubernetes, all in namespace ``app``."""
    world.apply(ARGO_CRD)
    await world.eventually(lambda: _try_apply(world, _argo_rollout("canary", {"tier": "web"})),
                           message="the Argo Rollout CRD served")
    await world.write_kv("kv-secret/info", {"password": world.value("rbac")})
    for kind in ("Deployment", "StatefulSet", "DaemonSet"):
        world.workload(kind, f"by-name-{kind.lower()}")
        world.workload(kind, f"by-auto-{kind.lower()}", secret="everything")
    world.workload("Deployment", "by-selector", labels={"tier": "web"})
    world.vss("everything", rolloutRestartTargets=[
        {"kind": "Deployment", "name": "by-name-deployment"},
        {"kind": "StatefulSet", "name": "by-name-statefulset"},
        {"kind": "DaemonSet", "name": "by-name-daemonset"},
        {"kind": "argo.Rollout", "name": "canary"},
        {"kind": "Deployment", "selector": {"matchLabels": {"tier": "web"}}},
        {"kind": "argo.Rollout", "selector": {"matchLabels": {"tier": "web"}}},
        {"auto": True},
    ])
    world.vss("missing", destination={"name": "missing", "create": False})
    await world.kubernetes_auth()
    world.vss("via-kubernetes-auth", vaultAuthRef="k8s")


async def exercise_every_request(world: World, *, user: str) -> None:
    """With syncd started (as ``user``, leader election on) after :func:`prepare_every_request`:
    the first syncs, a rotation (every kind of restart), drift (an update), a type change (a
    delete), a Lease renewal, and a clean stop (the Lease released)."""
    await world.synced("everything")
    await world.synced("via-kubernetes-auth")
    await world.wait_condition("missing", "Ready", status="False", reason="DestinationError")

    await world.write_kv("kv-secret/info", {"password": world.value("rbac-rotated")})
    await world.wait_condition("everything", "RolloutRestart", status="True")
    world.kube.admin.patch("v1", "Secret", "everything",
                           {"data": {"password": base64.b64encode(b"edited").decode()}},
                           namespace=APP_NS)
    await world.eventually(lambda: world.events("SecretRestored", about="everything"))
    world.vss("everything", destination={"name": "everything", "create": True,
                                         "type": "kubernetes.io/basic-auth"})
    await world.eventually(
        lambda: (world.secret("everything") or {}).get("type") == "kubernetes.io/basic-auth")
    await world.wait_condition("everything", "Ready", status="True")

    argo = world.kube.admin.get("argoproj.io/v1alpha1", "Rollout", "canary", APP_NS) or {}
    assert argo["spec"].get("restartAt"), "the Argo Rollout was restarted"
    assert "Forbidden" not in world.logs.getvalue()

    def renewals() -> int:
        return len([r for r in world.requests_of(user, leases=True)
                    if r.verb == "update" and r.resource.startswith("leases.")])

    seen = renewals()
    await world.eventually(lambda: renewals() > seen, message="a Lease renewal")
    await world.stop_syncd()  # releases the Lease
    assert world.lease_holder() == ""


async def test_cluster_role_grants_exactly_what_syncd_uses(world: World) -> None:
    await prepare_every_request(world)
    # With leader election, as deployed: the Lease is created, renewed and (at the stop) released.
    world.start_syncd(dataclasses.replace(world.settings, leader_elect=True, **LEASE_TIMINGS))
    await exercise_every_request(world, user=SYNCD_USER)

    used, granted = _used(world), _granted()
    assert set(used) - set(granted) == set(), "syncd needs more than rbac.yaml grants"
    assert set(granted) - set(used) == set(), "rbac.yaml grants what syncd never uses"
    for triple, where in granted.items():
        if where != "*":
            assert used[triple] == {where}, f"{triple} used outside {where}: {used[triple]}"
    assert {t for t, where in granted.items() if where != "*"} == {
        ("coordination.k8s.io", "leases", verb) for verb in ("get", "create", "update")
    }
    assert granted[("coordination.k8s.io", "leases", "get")] == OPERATOR_NS


def _try_apply(world: World, obj: dict[str, Any]) -> bool:
    try:
        world.apply(obj)
    except Exception:  # the CRD is not served yet
        return False
    return True
