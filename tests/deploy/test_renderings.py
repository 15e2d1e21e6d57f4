"""Each rendering applied as a person applies it: ``kubectl apply`` (the server validates, our
custom resources against their CRD's schema) to the Kubernetes emulation, CRDs first and
Established before the rest; the Deployments roll out; applying again changes nothing. And the
seed example: its resources are accepted, and its custody config is one the unsealer runs with
(three places, none reaching the threshold)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.rendering import MANIFESTS, OVERLAYS, Document, needs_kubectl, render
from tests.testbed_kube.conftest import Kubectl, kube, kubeconfig, kubectl  # noqa: F401
from unsealer.custody.config import load_config
from unsealer.custody.invariant import require_configured

pytestmark = needs_kubectl

#: The Prometheus Operator's two kinds the component uses, as stand-ins for its CRDs (which a
#: cluster with kube-prometheus-stack has): group, names and scope as theirs, schema open.
MONITORING_CRDS = [
    {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
     "metadata": {"name": f"{plural}.monitoring.coreos.com"},
     "spec": {"group": "monitoring.coreos.com", "scope": "Namespaced",
              "names": {"kind": kind, "listKind": f"{kind}List", "plural": plural,
                        "singular": kind.lower()},
              "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                  "openAPIV3Schema": {"type": "object",
                                      "x-kubernetes-preserve-unknown-fields": True}}}]}}
    for kind, plural in (("ServiceMonitor", "servicemonitors"),
                         ("PrometheusRule", "prometheusrules"))
]


def _yaml(documents: list[Document]) -> str:
    return yaml.safe_dump_all(documents)


async def _install(kubectl: Kubectl, documents: list[Document]) -> str:  # noqa: F811
    """CRDs, wait until Established, then the rest; kubectl's output of the second apply."""
    crds = [d for d in documents if d["kind"] == "CustomResourceDefinition"]
    rest = [d for d in documents if d["kind"] != "CustomResourceDefinition"]
    if crds:
        (await kubectl("apply", "-f", "-", stdin=_yaml(crds))).check()
        (await kubectl("wait", "--for=condition=Established", "crd", "--all",
                       "--timeout=30s")).check()
    if not rest:
        return ""
    return (await kubectl("apply", "-f", "-", stdin=_yaml(rest))).check().out


async def _versions(kubectl: Kubectl, documents: list[Document]) -> dict[str, str]:  # noqa: F811
    """kind/namespace/name -> resourceVersion of every object of ``documents``."""
    kinds = sorted({d["kind"].lower() for d in documents})
    listed = json.loads((await kubectl("get", ",".join(kinds), "-A", "-o", "json")).check().out)
    wanted = {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"])
              for d in documents}
    return {f"{kind}/{ns}/{name}": item["metadata"]["resourceVersion"]
            for item in listed["items"]
            for kind, ns, name in [(item["kind"], item["metadata"].get("namespace", ""),
                                    item["metadata"]["name"])] if (kind, ns, name) in wanted}


async def _cluster(kubectl: Kubectl, *namespaces: str) -> None:  # noqa: F811
    """What the cluster has before us: Vault's namespace (the Helm chart's), the apps'."""
    for namespace in ("vault", *namespaces):
        (await kubectl("create", "namespace", namespace)).check()


@pytest.mark.parametrize("components", [(), ("prometheus",)], ids=["plain", "prometheus"])
@pytest.mark.parametrize("overlay", OVERLAYS)
async def test_each_overlay_applies_and_rolls_out(
    kubectl: Kubectl, overlay: str, components: tuple[str, ...], tmp_path: Path,  # noqa: F811
) -> None:
    documents = render(MANIFESTS / "overlays" / overlay, components=components,
                       scratch=tmp_path / "with-components")
    await _cluster(kubectl, "app")
    if components:
        await _install(kubectl, MONITORING_CRDS)
    out = await _install(kubectl, documents)
    for document in documents:
        if document["kind"] != "CustomResourceDefinition":
            assert f"/{document['metadata']['name']} created" in out, (document, out)
    for namespace, name in (("vault-syncd", "vault-syncd"), ("vault", "vault-unsealer")):
        (await kubectl("rollout", "status", f"deployment/{name}", "-n", namespace,
                       "--timeout=60s")).check()
    before = await _versions(kubectl, documents)
    again = await _install(kubectl, documents)
    assert "created" not in again, again
    # Nothing changed. (kubectl says "configured" for the PodDisruptionBudget each time: its
    # built-in type's selector is patchStrategy "replace", so the patch always carries it.)
    assert await _versions(kubectl, documents) == before


async def test_the_seed_example_applies_over_an_overlay(kubectl: Kubectl) -> None:  # noqa: F811
    await _cluster(kubectl)
    await _install(kubectl, render(MANIFESTS / "overlays" / "raspberry-pi"))
    seed = render(MANIFESTS / "examples" / "seed")
    out = await _install(kubectl, seed)
    for created in ("vaultstaticsecret.secrets.vault-syncd.dev/info created",
                    "vaultauth.secrets.vault-syncd.dev/app created",
                    "vaultconnection.secrets.vault-syncd.dev/default created",
                    "deployment.apps/app created", "serviceaccount/app created"):
        assert created in out, out
    # The seed's custody config is the one the base ships (the example's three places).
    assert "configmap/vault-unsealer-custody unchanged" in out, out
    (await kubectl("rollout", "status", "deployment/app", "--timeout=60s")).check()
    vss = next(d for d in seed if d["kind"] == "VaultStaticSecret")
    assert (vss["spec"]["mount"], vss["spec"]["path"], vss["spec"]["destination"]["name"]) == (
        "kv-secret", "info", "info")
    assert vss["spec"]["rolloutRestartTargets"] == [{"kind": "Deployment", "name": "app"}]
    auth = next(d for d in seed if d["kind"] == "VaultAuth")
    assert auth["spec"]["kubernetes"]["role"] == "kubernetes-role"
    assert auth["spec"]["kubernetes"]["serviceAccount"] == "app"
    assert auth["metadata"]["namespace"] == vss["metadata"]["namespace"] == "default"


def test_the_seed_custody_config_keeps_the_invariant_with_three_places(tmp_path: Path) -> None:
    seed = render(MANIFESTS / "examples" / "seed")
    configmap: dict[str, Any] = next(d for d in seed if d["kind"] == "ConfigMap")
    path = tmp_path / "custody.yaml"
    path.write_text(configmap["data"]["custody.yaml"])
    config = load_config(path, vault_namespace="vault", require_files=False, node="pi-1",
                         local_files=False)  # the peer TLS files are in the pod, not here
    require_configured(config)  # raises when one place (or one and its key's) reaches 3
    assert (config.threshold, config.shares) == (3, 5)
    assert len(config.custodians) == 3
    # The custody Role of the renderings lets the unsealer read the Secret custodian's Secret.
    rbac = [d for d in render(MANIFESTS / "overlays" / "raspberry-pi")
            if d["kind"] == "Role" and d["metadata"]["name"] == "vault-unsealer-custody"]
    secrets = {(c["namespace"], c["secretName"]) for c in
               yaml.safe_load(configmap["data"]["custody.yaml"])["custodians"]
               if c["kind"] == "kubernetesSecret"}
    assert secrets == {(r["metadata"]["namespace"], name) for r in rbac
                       for rule in r["rules"] for name in rule["resourceNames"]}
