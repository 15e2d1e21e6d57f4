"""The manifests' invariants, on what ``kubectl kustomize`` renders (offline): every directory
with a kustomization renders; each overlay installs both services non-root on a read-only root
filesystem with pinned images, probes, requests and limits; the CRD kustomization lists every
CRD file (a new CRD cannot be left out of an install); the commands they run exist."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
OVERLAYS = sorted(p.name for p in (MANIFESTS / "overlays").iterdir() if p.is_dir())
KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
#: Every directory kustomize can build (components are built inside an overlay, see below).
DIRECTORIES = sorted(
    str(path.parent.relative_to(MANIFESTS))
    for name in KUSTOMIZATION_NAMES for path in MANIFESTS.rglob(name)
    if "kind: Component" not in path.read_text()
)
WORKLOADS = ("Deployment", "DaemonSet", "StatefulSet")

needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not found")


@cache
def render(directory: str) -> tuple[dict[str, Any], ...]:
    """``kubectl kustomize manifests/DIRECTORY``: the documents it prints."""
    done = subprocess.run(["kubectl", "kustomize", str(MANIFESTS / directory)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"{directory}: {done.stderr}"
    return tuple(d for d in yaml.safe_load_all(done.stdout) if d)


def _ours(document: dict[str, Any]) -> bool:
    labels = document["metadata"].get("labels") or {}
    return str(labels.get("app.kubernetes.io/name", "")).startswith("vault-")


def test_overlays_are_the_three_of_the_readme() -> None:
    assert OVERLAYS == ["cluster-wide", "namespaced", "raspberry-pi"]


@needs_kubectl
def test_every_overlay_and_example_is_a_kustomization() -> None:
    # `make lint` renders each of them for checkov: a directory without one breaks CI.
    for directory in [*(MANIFESTS / "overlays").iterdir(), *(MANIFESTS / "examples").iterdir()]:
        if directory.is_dir():
            assert any((directory / name).is_file() for name in KUSTOMIZATION_NAMES), directory


@pytest.mark.parametrize("directory", DIRECTORIES)
def test_every_kustomization_renders_offline(directory: str) -> None:
    assert render(directory)


def test_the_crd_kustomization_lists_every_crd_file() -> None:
    listed = yaml.safe_load((MANIFESTS / "crds" / "Kustomization").read_text())["resources"]
    files = sorted(p.name for p in (MANIFESTS / "crds").glob("*.y*ml"))
    assert sorted(listed) == files, "add the new CRD file to manifests/crds/Kustomization"


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_overlay_installs_both_services_and_every_crd(overlay: str) -> None:
    documents = render(f"overlays/{overlay}")
    commands = {d["spec"]["template"]["spec"]["containers"][0]["command"][0]
                for d in documents if d["kind"] in WORKLOADS}
    assert commands == {"syncd", "unsealer"}
    crds = {d["metadata"]["name"] for d in documents if d["kind"] == "CustomResourceDefinition"}
    shipped = {d["metadata"]["name"] for p in (MANIFESTS / "crds").glob("*.yaml")
               for d in yaml.safe_load_all(p.read_text()) if d}
    assert crds == shipped
    syncd = next(d for d in documents if d["kind"] == "Deployment"
                 and d["metadata"]["name"] == "vault-syncd")
    assert syncd["spec"]["replicas"] == 2
    budget = [d for d in documents if d["kind"] == "PodDisruptionBudget"]
    assert [b["spec"]["selector"]["matchLabels"] for b in budget] == [
        syncd["spec"]["selector"]["matchLabels"]]
    policies = {d["metadata"]["name"] for d in documents if d["kind"] == "NetworkPolicy"}
    assert policies == {"vault-syncd", "vault-unsealer"}


def _workloads() -> list[tuple[str, dict[str, Any]]]:
    if shutil.which("kubectl") is None:
        return []
    return [(f"{overlay}/{d['metadata']['name']}", d) for overlay in OVERLAYS
            for d in render(f"overlays/{overlay}") if d["kind"] in WORKLOADS]


@needs_kubectl
@pytest.mark.parametrize(("name", "workload"), _workloads(), ids=[n for n, _ in _workloads()])
def test_runs_as_non_root_on_a_read_only_root_filesystem(
    name: str, workload: dict[str, Any]
) -> None:
    pod = workload["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    for container in pod["containers"]:
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        image = container["image"]
        assert ":" in image and not image.endswith(":latest")
        assert container["command"][0] in scripts
        mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
        assert "/tmp" in mounts  # the one writable place
        for probe in ("livenessProbe", "readinessProbe"):
            assert container[probe]["httpGet"]["port"] == "health"
        assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"health": 8080}
        for kind in ("requests", "limits"):
            assert set(container["resources"][kind]) == {"cpu", "memory"}


@needs_kubectl
def test_the_raspberry_pi_overlay_runs_on_arm64_with_smaller_limits() -> None:
    def memory_limits(overlay: str) -> dict[str, str]:
        return {d["metadata"]["name"]:
                d["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"]
                for d in render(f"overlays/{overlay}") if d["kind"] in WORKLOADS}

    def mib(quantity: str) -> int:
        assert quantity.endswith("Mi")
        return int(quantity[:-2])

    pi, full = memory_limits("raspberry-pi"), memory_limits("cluster-wide")
    assert all(mib(pi[name]) < mib(full[name]) for name in full)
    for workload in render("overlays/raspberry-pi"):
        if workload["kind"] in WORKLOADS:
            selector = workload["spec"]["template"]["spec"]["nodeSelector"]
            assert selector == {"kubernetes.io/arch": "arm64"}


@needs_kubectl
def test_the_namespaced_overlay_has_no_cluster_role_of_syncd() -> None:
    documents = render("overlays/namespaced")
    bound = {(d["kind"], d["metadata"]["name"]) for d in documents
             if d["kind"] in ("ClusterRoleBinding", "RoleBinding")}
    assert not any(kind == "ClusterRoleBinding" for kind, _ in bound), bound
    syncd = next(d for d in documents if d["metadata"]["name"] == "vault-syncd"
                 and d["kind"] == "Deployment")
    env = {e["name"]: e.get("value") for e in syncd["spec"]["template"]["spec"]["containers"][0]
           ["env"]}
    watched = {d["metadata"]["namespace"] for d in documents if d["kind"] == "Role"
               and d["metadata"]["name"] == "vault-syncd"}
    assert set(env["SYNCD_WATCH_NAMESPACE"].split(",")) == watched == {"app"}
