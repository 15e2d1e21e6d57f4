"""The project's own manifests, applied the way a person applies them: kubectl with default
(server-side, strict) validation against the emulation, then the workloads roll out."""

from __future__ import annotations

from pathlib import Path

from tests.testbed_kube.conftest import Kubectl

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"


async def test_crds_then_everything_else_apply_and_roll_out(kubectl: Kubectl) -> None:
    (await kubectl("apply", "-f", str(MANIFESTS / "crds"))).check()
    (await kubectl("wait", "--for=condition=Established", "crd", "--all",
                   "--timeout=30s")).check()
    for namespace in ("vault", "vault-custody"):
        (await kubectl("create", "namespace", namespace)).check()
    applied = (await kubectl("apply", "-f", str(MANIFESTS / "syncd"),
                             "-f", str(MANIFESTS / "unsealer"))).check()
    for created in ("deployment.apps/vault-syncd created", "clusterrole.rbac.authorization.k8s.io"
                    "/vault-syncd created", "deployment.apps/vault-unsealer created",
                    "role.rbac.authorization.k8s.io/vault-unsealer-custody created"):
        assert created in applied.out, applied.out
    for namespace, name in (("vault-syncd", "vault-syncd"), ("vault", "vault-unsealer")):
        (await kubectl("rollout", "status", f"deployment/{name}", "-n", namespace,
                       "--timeout=60s")).check()
    again = (await kubectl("apply", "-f", str(MANIFESTS / "syncd"),
                           "-f", str(MANIFESTS / "unsealer"))).check()
    assert "created" not in again.out and "configured" not in again.out  # all unchanged


async def test_the_namespaced_install_applies_without_cluster_wide_rights(
    kubectl: Kubectl,
) -> None:
    """The namespaced mode: deployment.yaml, namespaced/rbac.yaml and the watched-namespace
    template (its example namespace "app") apply as they are; they hold no ClusterRole."""
    (await kubectl("apply", "-f", str(MANIFESTS / "crds"))).check()
    (await kubectl("create", "namespace", "app")).check()
    applied = (await kubectl("apply", "-f", str(MANIFESTS / "syncd" / "deployment.yaml"),
                             "-f", str(MANIFESTS / "syncd" / "namespaced"))).check()
    for created in ("role.rbac.authorization.k8s.io/vault-syncd-own-namespace created",
                    "role.rbac.authorization.k8s.io/vault-syncd created",
                    "rolebinding.rbac.authorization.k8s.io/vault-syncd created",
                    "serviceaccount/vault-syncd created"):
        assert created in applied.out, applied.out
    assert "clusterrole" not in applied.out
    (await kubectl("rollout", "status", "deployment/vault-syncd", "-n", "vault-syncd",
                   "--timeout=60s")).check()
