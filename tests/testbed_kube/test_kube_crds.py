"""CustomResourceDefinitions and custom resources."""

from __future__ import annotations

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from testbed.kube import Kube

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {
            "plural": "widgets",
            "singular": "widget",
            "kind": "Widget",
            "shortNames": ["wd"],
        },
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {
                    "status": {},
                    "scale": {
                        "specReplicasPath": ".spec.replicas",
                        "statusReplicasPath": ".status.replicas",
                    },
                },
                "additionalPrinterColumns": [
                    {"name": "Color", "type": "string", "jsonPath": ".spec.color"},
                    {
                        "name": "Ready",
                        "type": "string",
                        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
                    },
                ],
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["color"],
                                "properties": {
                                    "color": {"type": "string", "enum": ["red", "blue"]},
                                    "size": {"type": "integer", "default": 3, "minimum": 1},
                                    "replicas": {"type": "integer"},
                                    "items": {
                                        "type": "array",
                                        "x-kubernetes-list-type": "map",
                                        "x-kubernetes-list-map-keys": ["name"],
                                        "items": {
                                            "type": "object",
                                            "properties": {
                                                "name": {"type": "string"},
                                                "v": {"type": "string"},
                                            },
                                        },
                                    },
                                    "free": {
                                        "type": "object",
                                        "x-kubernetes-preserve-unknown-fields": True,
                                    },
                                },
                            },
                            "status": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            },
                        },
                    }
                },
            }
        ],
    },
}
WIDGETS = "/apis/example.com/v1/namespaces/default/widgets"


async def _crd(kube: Kube) -> None:
    kube.admin.create(CRD)
    await kube.wait_for(
        lambda: any(
            c["type"] == "Established" and c["status"] == "True"
            for c in (
                kube.admin.get(
                    "apiextensions.k8s.io/v1", "CustomResourceDefinition", "widgets.example.com"
                )
                or {}
            )
            .get("status", {})
            .get("conditions", [])
        ),
        message="CRD Established",
    )


async def test_crd_established_and_discoverable(raw, kube: Kube) -> None:
    await _crd(kube)
    crd = kube.admin.get(
        "apiextensions.k8s.io/v1", "CustomResourceDefinition", "widgets.example.com"
    )
    assert crd["status"]["acceptedNames"]["kind"] == "Widget"
    assert crd["status"]["storedVersions"] == ["v1"]
    listed = (await raw("GET", "/apis/example.com/v1")).json
    names = {r["name"] for r in listed["resources"]}
    assert {"widgets", "widgets/status", "widgets/scale"} <= names
    bad = dict(CRD, metadata={"name": "wrong.example.com"})
    reply = await raw("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", body=bad)
    assert (
        reply.status == 422 and 'must be spec.names.plural+"."+spec.group' in reply.json["message"]
    )


async def test_defaults_pruning_and_validation(raw, kube: Kube) -> None:
    await _crd(kube)
    body = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": {"color": "red", "unknown": 1, "free": {"any": {"thing": 1}}},
        "status": {"x": 1},
    }
    reply = await raw("POST", WIDGETS, body=body)
    assert reply.status == 201
    obj = reply.json
    assert obj["spec"] == {"color": "red", "size": 3, "free": {"any": {"thing": 1}}}
    assert "status" not in obj  # status is dropped on create when the subresource is on
    assert obj["metadata"]["generation"] == 1
    assert "warning" in {k.lower() for k in reply.headers}
    strict = await raw(
        "POST", f"{WIDGETS}?fieldValidation=Strict", body={**body, "metadata": {"name": "s"}}
    )
    assert (
        strict.status == 400
        and strict.json["message"] == 'strict decoding error: unknown field "spec.unknown"'
    )
    invalid = await raw(
        "POST",
        WIDGETS,
        body={
            "apiVersion": "example.com/v1",
            "kind": "Widget",
            "metadata": {"name": "i"},
            "spec": {"color": "green", "size": 0},
        },
    )
    assert invalid.status == 422
    fields = {c["field"] for c in invalid.json["details"]["causes"]}
    assert fields == {"spec.color", "spec.size"}
    required = await raw(
        "POST",
        WIDGETS,
        body={
            "apiVersion": "example.com/v1",
            "kind": "Widget",
            "metadata": {"name": "r"},
            "spec": {},
        },
    )
    assert required.status == 422 and "spec.color: Required value" in required.json["message"]


async def test_status_subresource_generation_and_updates(raw, kube: Kube) -> None:
    await _crd(kube)
    obj = (
        await raw(
            "POST",
            WIDGETS,
            body={
                "apiVersion": "example.com/v1",
                "kind": "Widget",
                "metadata": {"name": "w"},
                "spec": {"color": "red"},
            },
        )
    ).json
    unconditional = {k: v for k, v in obj.items() if k != "metadata"} | {"metadata": {"name": "w"}}
    reply = await raw("PUT", f"{WIDGETS}/w", body=unconditional)
    assert reply.status == 422 and "metadata.resourceVersion" in reply.json["message"]
    status = await raw(
        "PUT",
        f"{WIDGETS}/w/status",
        body={**obj, "spec": {"color": "blue"}, "status": {"replicas": 2}},
    )
    assert status.json["status"] == {"replicas": 2} and status.json["spec"]["color"] == "red"
    assert status.json["metadata"]["generation"] == 1
    label = await raw(
        "PATCH",
        f"{WIDGETS}/w",
        body={"metadata": {"labels": {"a": "b"}}},
        content_type="application/merge-patch+json",
    )
    assert label.json["metadata"]["generation"] == 1
    spec = await raw(
        "PATCH",
        f"{WIDGETS}/w",
        body={"spec": {"color": "blue"}},
        content_type="application/merge-patch+json",
    )
    assert spec.json["metadata"]["generation"] == 2
    smp = await raw(
        "PATCH",
        f"{WIDGETS}/w",
        body={"spec": {}},
        content_type="application/strategic-merge-patch+json",
    )
    assert smp.status == 415 and "strategic" not in smp.json["message"]
    scale = await raw("GET", f"{WIDGETS}/w/scale")
    assert scale.json["kind"] == "Scale" and scale.json["status"]["replicas"] == 2


async def test_list_map_merge_for_custom_resources(raw, kube: Kube) -> None:
    await _crd(kube)
    base = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    await raw(
        "PATCH",
        f"{WIDGETS}/w?fieldManager=a",
        content_type="application/apply-patch+yaml",
        body={**base, "spec": {"color": "red", "items": [{"name": "x", "v": "1"}]}},
    )
    reply = await raw(
        "PATCH",
        f"{WIDGETS}/w?fieldManager=b",
        content_type="application/apply-patch+yaml",
        body={**base, "spec": {"color": "red", "items": [{"name": "y", "v": "2"}]}},
    )
    assert [i["name"] for i in reply.json["spec"]["items"]] == ["x", "y"]


async def test_table_with_printer_columns(raw, kube: Kube) -> None:
    await _crd(kube)
    await raw(
        "POST",
        WIDGETS,
        body={
            "apiVersion": "example.com/v1",
            "kind": "Widget",
            "metadata": {"name": "w"},
            "spec": {"color": "blue"},
        },
    )
    table = (
        await raw(
            "GET",
            WIDGETS,
            headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"},
        )
    ).json
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Color", "Ready"]
    assert table["rows"][0]["cells"] == ["w", "blue", None]
    listed = (await raw("GET", WIDGETS)).json
    assert listed["items"][0]["kind"] == "Widget"  # custom resource list items keep TypeMeta


async def test_custom_objects_api_and_crd_deletion(k8s, kube: Kube) -> None:
    await _crd(kube)
    api = client.CustomObjectsApi(k8s)
    await api.create_namespaced_custom_object(
        "example.com",
        "v1",
        "default",
        "widgets",
        {
            "apiVersion": "example.com/v1",
            "kind": "Widget",
            "metadata": {"name": "w"},
            "spec": {"color": "red"},
        },
    )
    try:  # a dict body goes out as json-patch+json, which the real server refuses too
        await api.patch_namespaced_custom_object(
            "example.com", "v1", "default", "widgets", "w", {"spec": {"color": "blue"}}
        )
        raise AssertionError("expected 400")
    except ApiException as exc:
        assert exc.status == 400
    patched = await api.patch_namespaced_custom_object(
        "example.com",
        "v1",
        "default",
        "widgets",
        "w",
        {"spec": {"color": "blue"}},
        _content_type="application/merge-patch+json",
    )
    assert patched["spec"]["color"] == "blue"
    kube.admin.delete("apiextensions.k8s.io/v1", "CustomResourceDefinition", "widgets.example.com")
    await kube.wait_for(
        lambda: (
            kube.admin.get(
                "apiextensions.k8s.io/v1", "CustomResourceDefinition", "widgets.example.com"
            )
            is None
        ),
        message="CRD gone",
    )
    assert kube.cluster.store.count("example.com/widgets") == 0
    assert kube.cluster.catalog.lookup("example.com", "v1", "widgets") is None
