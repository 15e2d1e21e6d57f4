"""CRD validation ratcheting (Kubernetes 1.30+): found missing while testing syncd.

An object stored before its CRD's schema was tightened can still have its status written or its
metadata changed; an update that changes the invalid value itself is refused.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from testbed.kube import Kube
from testbed.kube.errors import ApiError

CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com", "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [{
            "name": "v1", "served": True, "storage": True,
            "subresources": {"status": {}},
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                "spec": {"type": "object", "properties": {
                    "size": {"type": "string", "enum": ["small", "large"]},
                    "colour": {"type": "string"}}},
                "status": {"type": "object", "properties": {"note": {"type": "string"}}},
            }}},
        }],
    },
}


async def test_unchanged_invalid_values_ratchet(kube: Kube) -> None:
    loose = copy.deepcopy(CRD)
    del loose["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"]["size"]["enum"]
    kube.admin.apply(loose)
    await kube.wait_for(lambda: kube.admin.get("apiextensions.k8s.io/v1",
                                               "CustomResourceDefinition", CRD["metadata"]["name"]))
    widget = {"apiVersion": "example.com/v1", "kind": "Widget",
              "metadata": {"name": "w", "namespace": "default"},
              "spec": {"size": "huge", "colour": "red"}}
    kube.admin.apply(widget)
    kube.admin.apply(CRD)  # tightened: "huge" is no longer allowed

    with pytest.raises(ApiError):  # a new object with the invalid value is refused
        kube.admin.apply({**widget, "metadata": {"name": "w2", "namespace": "default"}})
    kube.admin.patch("example.com/v1", "Widget", "w", {"status": {"note": "seen"}},
                     namespace="default", subresource="status")
    kube.admin.patch("example.com/v1", "Widget", "w", {"spec": {"colour": "blue"}},
                     namespace="default")
    stored = kube.admin.get("example.com/v1", "Widget", "w", "default") or {}
    assert stored["status"]["note"] == "seen" and stored["spec"]["colour"] == "blue"
    with pytest.raises(ApiError) as refused:  # changing the invalid value is validated
        kube.admin.patch("example.com/v1", "Widget", "w", {"spec": {"size": "enormous"}},
                         namespace="default")
    assert refused.value.code == 422 and "spec.size" in refused.value.message
