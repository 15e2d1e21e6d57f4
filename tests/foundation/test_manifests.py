"""The manifests' invariants: non-root, read-only root filesystem, pinned images, and the
commands they run exist."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOYMENTS = [
    document
    for path in sorted((ROOT / "manifests").rglob("*.yaml"))
    for document in yaml.safe_load_all(path.read_text())
    if document and document.get("kind") in ("Deployment", "DaemonSet", "StatefulSet")
]


def _name(document: dict[str, Any]) -> str:
    return str(document["metadata"]["name"])


def test_there_is_a_workload_for_each_service() -> None:
    commands = {d["spec"]["template"]["spec"]["containers"][0]["command"][0] for d in DEPLOYMENTS}
    assert commands == {"syncd", "unsealer"}


@pytest.mark.parametrize("workload", DEPLOYMENTS, ids=_name)
def test_runs_as_non_root_on_a_read_only_root_filesystem(workload: dict[str, Any]) -> None:
    pod = workload["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
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
