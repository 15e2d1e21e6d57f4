"""PATCH in all four types, through kubernetes-asyncio and on the wire."""

from __future__ import annotations

from kubernetes_asyncio import client

from testbed.kube import Kube

DEPLOY = "/apis/apps/v1/namespaces/default/deployments/web"
MERGE = "application/merge-patch+json"
SMP = "application/strategic-merge-patch+json"
JSONP = "application/json-patch+json"
APPLY = "application/apply-patch+yaml"


def _deployment() -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "finalizers": ["example.com/a"]},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "nginx:1.25",
                            "env": [{"name": "A", "value": "1"}],
                            "args": ["--one"],
                        },
                        {"name": "side", "image": "busybox:1"},
                    ]
                },
            },
        },
    }


async def _setup(kube: Kube) -> None:
    await kube.controllers.disable("deployment")
    kube.admin.create(_deployment())


async def test_strategic_merge_by_key_and_directives(raw, kube: Kube) -> None:
    await _setup(kube)
    patch = {
        "metadata": {"finalizers": ["example.com/b"]},
        "spec": {
            "template": {
                "metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "now"}},
                "spec": {
                    "$setElementOrder/containers": [{"name": "side"}, {"name": "app"}],
                    "containers": [
                        {
                            "name": "app",
                            "image": "nginx:1.26",
                            "env": [{"name": "B", "value": "2"}],
                            "args": ["--two"],
                        }
                    ],
                },
            }
        },
    }
    reply = await raw("PATCH", DEPLOY, body=patch, content_type=SMP)
    assert reply.status == 200, reply.body
    obj = reply.json
    assert obj["metadata"]["finalizers"] == [
        "example.com/a",
        "example.com/b",
    ]  # merged primitive list
    spec = obj["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["containers"]] == ["side", "app"]
    app = spec["containers"][1]
    assert app["image"] == "nginx:1.26"
    assert [e["name"] for e in app["env"]] == ["A", "B"]  # merged by name
    assert app["args"] == ["--two"]  # no strategy: replaced
    assert obj["spec"]["template"]["metadata"]["annotations"] == {
        "kubectl.kubernetes.io/restartedAt": "now"
    }

    removal = {
        "metadata": {"$deleteFromPrimitiveList/finalizers": ["example.com/a"]},
        "spec": {"template": {"spec": {"containers": [{"name": "side", "$patch": "delete"}]}}},
    }
    obj = (await raw("PATCH", DEPLOY, body=removal, content_type=SMP)).json
    assert obj["metadata"]["finalizers"] == ["example.com/b"]
    assert [c["name"] for c in obj["spec"]["template"]["spec"]["containers"]] == ["app"]

    replace = {
        "spec": {
            "template": {
                "spec": {"containers": [{"$patch": "replace"}, {"name": "only", "image": "x:1"}]}
            }
        }
    }
    obj = (await raw("PATCH", DEPLOY, body=replace, content_type=SMP)).json
    assert [c["name"] for c in obj["spec"]["template"]["spec"]["containers"]] == ["only"]


async def test_merge_patch_replaces_lists_and_null_deletes(raw, kube: Kube) -> None:
    await _setup(kube)
    patch = {
        "metadata": {"labels": {"a": "b"}},
        "spec": {"template": {"spec": {"containers": [{"name": "new", "image": "x:2"}]}}},
    }
    obj = (await raw("PATCH", DEPLOY, body=patch, content_type=MERGE)).json
    assert [c["name"] for c in obj["spec"]["template"]["spec"]["containers"]] == ["new"]
    obj = (
        await raw("PATCH", DEPLOY, body={"metadata": {"labels": {"a": None}}}, content_type=MERGE)
    ).json
    assert "labels" not in obj["metadata"]


async def test_json_patch_and_its_errors(raw, kube: Kube) -> None:
    await _setup(kube)
    ops = [
        {"op": "replace", "path": "/spec/replicas", "value": 3},
        {"op": "add", "path": "/metadata/labels", "value": {"x/y": "z"}},
        {"op": "test", "path": "/spec/replicas", "value": 3},
    ]
    obj = (await raw("PATCH", DEPLOY, body=ops, content_type=JSONP)).json
    assert obj["spec"]["replicas"] == 3 and obj["metadata"]["labels"] == {"x/y": "z"}
    not_array = await raw("PATCH", DEPLOY, body={"spec": {}}, content_type=JSONP)
    assert not_array.status == 400
    assert (
        not_array.json["message"]
        == "json: cannot unmarshal object into Go value of type jsonpatch.Patch"
    )
    failing = await raw(
        "PATCH",
        DEPLOY,
        body=[{"op": "test", "path": "/spec/replicas", "value": 9}],
        content_type=JSONP,
    )
    assert failing.status == 422
    stale = await raw(
        "PATCH",
        DEPLOY,
        content_type=JSONP,
        body=[{"op": "replace", "path": "/metadata/resourceVersion", "value": "1"}],
    )
    assert stale.status == 409 and stale.json["reason"] == "Conflict"


async def test_media_types(raw, kube: Kube) -> None:
    await _setup(kube)
    bad = await raw("PATCH", DEPLOY, body={}, content_type="application/json")
    assert bad.status == 415 and bad.json["reason"] == "UnsupportedMediaType"
    assert "application/strategic-merge-patch+json" in bad.json["message"]
    missing = await raw(
        "PATCH", "/apis/apps/v1/namespaces/default/deployments/none", body={}, content_type=MERGE
    )
    assert missing.status == 404
    no_manager = await raw("PATCH", DEPLOY, body=_deployment(), content_type=APPLY)
    assert no_manager.status == 422 and "fieldManager: Required value" in no_manager.json["message"]
    force = await raw("PATCH", f"{DEPLOY}?force=true", body={}, content_type=MERGE)
    assert force.status == 422


async def test_server_side_apply_conflicts_force_and_removal(raw, kube: Kube) -> None:
    path = "/api/v1/namespaces/default/configmaps/cfg"
    base = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}}
    created = await raw(
        "PATCH",
        f"{path}?fieldManager=alice",
        content_type=APPLY,
        body={**base, "data": {"a": "1", "b": "1"}},
    )
    assert created.status == 201
    managers = {e["manager"]: e for e in created.json["metadata"]["managedFields"]}
    assert managers["alice"]["operation"] == "Apply"
    assert managers["alice"]["fieldsV1"] == {"f:data": {"f:a": {}, "f:b": {}}}

    clash = await raw(
        "PATCH", f"{path}?fieldManager=bob", content_type=APPLY, body={**base, "data": {"a": "2"}}
    )
    assert clash.status == 409
    assert (
        clash.json["message"]
        == 'Apply failed with 1 conflict: conflict with "alice" using v1: .data.a'
    )
    assert clash.json["details"]["causes"] == [
        {
            "reason": "FieldManagerConflict",
            "message": 'conflict with "alice" using v1',
            "field": ".data.a",
        }
    ]

    shared = await raw(
        "PATCH", f"{path}?fieldManager=bob", content_type=APPLY, body={**base, "data": {"a": "1"}}
    )  # same value: co-ownership, no conflict
    assert shared.status == 200

    forced = await raw(
        "PATCH",
        f"{path}?fieldManager=bob&force=true",
        content_type=APPLY,
        body={**base, "data": {"a": "3"}},
    )
    assert forced.json["data"] == {"a": "3", "b": "1"}
    owners = {e["manager"]: e["fieldsV1"] for e in forced.json["metadata"]["managedFields"]}
    assert owners["alice"] == {"f:data": {"f:b": {}}}
    assert owners["bob"] == {"f:data": {"f:a": {}}}

    dropped = await raw(
        "PATCH", f"{path}?fieldManager=alice", content_type=APPLY, body={**base, "data": {}}
    )
    assert dropped.json["data"] == {"a": "3"}  # b was alice's alone and is gone

    updated = await raw(
        "PATCH", f"{path}?fieldManager=carol", content_type=MERGE, body={"data": {"a": "4"}}
    )
    owners = {(e["manager"], e["operation"]) for e in updated.json["metadata"]["managedFields"]}
    assert ("carol", "Update") in owners and ("bob", "Apply") not in owners


async def test_apply_list_map_items(raw, kube: Kube) -> None:
    await kube.controllers.disable("deployment")
    path = "/apis/apps/v1/namespaces/default/deployments/api"
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "api"},
        "spec": {
            "selector": {"matchLabels": {"app": "api"}},
            "template": {
                "metadata": {"labels": {"app": "api"}},
                "spec": {
                    "containers": [{"name": "a", "image": "a:1", "ports": [{"containerPort": 80}]}]
                },
            },
        },
    }
    first = (await raw("PATCH", f"{path}?fieldManager=one", content_type=APPLY, body=body)).json
    again = (await raw("PATCH", f"{path}?fieldManager=one", content_type=APPLY, body=body)).json
    assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]  # no-op
    ports = again["spec"]["template"]["spec"]["containers"][0]["ports"]
    assert ports == [{"containerPort": 80, "protocol": "TCP"}]
    entry = next(e for e in again["metadata"]["managedFields"] if e["manager"] == "one")
    containers = entry["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]
    assert 'k:{"name":"a"}' in containers


async def test_kubernetes_asyncio_patch_defaults(k8s, kube: Kube) -> None:
    await _setup(kube)
    apps = client.AppsV1Api(k8s)
    # A dict body on a typed API goes out as strategic merge patch.
    patched = await apps.patch_namespaced_deployment(
        "web", "default", {"spec": {"template": {"metadata": {"annotations": {"x": "1"}}}}}
    )
    assert patched.spec.template.metadata.annotations == {"x": "1"}
    assert [c.name for c in patched.spec.template.spec.containers] == ["app", "side"]
    scaled = await apps.patch_namespaced_deployment_scale(
        "web", "default", {"spec": {"replicas": 4}}
    )
    assert scaled.kind == "Scale" and scaled.spec.replicas == 4
    assert (await apps.read_namespaced_deployment("web", "default")).spec.replicas == 4
