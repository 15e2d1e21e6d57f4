"""Renderings of manifests/ (``kubectl kustomize``) and what their RBAC grants a subject."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
OVERLAYS = ("cluster-wide", "namespaced", "raspberry-pi")
BINDINGS = ("RoleBinding", "ClusterRoleBinding")

Document = dict[str, Any]
#: ((API group, resource[/subresource], verb), where): where is a namespace, or "*" for a
#: ClusterRole bound cluster-wide.
Grant = tuple[tuple[str, str, str], str]

needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not found")


def render(directory: Path, *, components: tuple[str, ...] = (),
           scratch: Path | None = None) -> list[Document]:
    """``kubectl kustomize`` of ``directory``; with ``components`` (directories under
    manifests/components), of a kustomization in ``scratch`` that adds them to it, as a person
    adds the optional components to an overlay."""
    if components:
        assert scratch is not None
        scratch.mkdir(parents=True, exist_ok=True)
        (scratch / "kustomization.yaml").write_text(yaml.safe_dump({
            "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
            "resources": [os.path.relpath(directory, scratch)],
            "components": [os.path.relpath(MANIFESTS / "components" / c, scratch)
                           for c in components],
        }))
        directory = scratch
    done = subprocess.run(["kubectl", "kustomize", str(directory)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def bound_to(documents: list[Document], namespace: str, name: str) -> list[Document]:
    """The bindings whose subjects include ServiceAccount ``namespace/name``, and the roles
    they refer to (copies)."""
    def subject(binding: Document) -> bool:
        return any(s.get("kind") == "ServiceAccount" and s.get("name") == name
                   and s.get("namespace") == namespace for s in binding.get("subjects") or [])

    bindings = [d for d in documents if d["kind"] in BINDINGS and subject(d)]
    roles = []
    for binding in bindings:
        ref = binding["roleRef"]
        where = binding["metadata"].get("namespace") if ref["kind"] == "Role" else None
        roles += [d for d in documents if d["kind"] == ref["kind"]
                  and d["metadata"]["name"] == ref["name"]
                  and d["metadata"].get("namespace") == where]
    assert len(roles) == len(bindings), "a binding refers to a role the rendering lacks"
    return copy.deepcopy(roles + bindings)


def grants(documents: list[Document]) -> set[Grant]:
    """What the bindings among ``documents`` grant, from the roles among them."""
    out: set[Grant] = set()
    for binding in (d for d in documents if d["kind"] in BINDINGS):
        ref = binding["roleRef"]
        role = next(d for d in documents if d["kind"] == ref["kind"]
                    and d["metadata"]["name"] == ref["name"])
        where = binding["metadata"].get("namespace", "*")
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        out.add(((group, resource, verb), where))
    return out


def renamed(documents: list[Document], *, namespace: str, name: str) -> list[Document]:
    """``documents`` with every binding's subject made ServiceAccount ``namespace/name``."""
    out = copy.deepcopy(documents)
    for document in out:
        if document["kind"] in BINDINGS:
            document["metadata"]["name"] += f"-{name}"
            document["subjects"] = [{"kind": "ServiceAccount", "name": name,
                                     "namespace": namespace}]
    return out


def covered(used: set[Grant], granted: set[Grant]) -> tuple[set[Grant], set[Grant]]:
    """(requests no grant covers, grants no request used): both empty when RBAC is exact."""
    def covers(grant: Grant, request: Grant) -> bool:
        return grant[0] == request[0] and grant[1] in ("*", request[1])

    missing = {r for r in used if not any(covers(g, r) for g in granted)}
    unused = {g for g in granted if not any(covers(g, r) for r in used)}
    return missing, unused
