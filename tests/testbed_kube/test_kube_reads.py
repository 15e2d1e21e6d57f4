"""Reads: list across namespaces, selectors, resourceVersion semantics, limit/continue."""

from __future__ import annotations

from urllib.parse import quote

from kubernetes_asyncio import client

from testbed.kube import Kube


def _secret(name: str, ns: str, labels: dict[str, str], stype: str = "Opaque") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": stype,
        "metadata": {"name": name, "namespace": ns, "labels": labels},
    }


async def _seed(kube: Kube) -> None:
    kube.admin.create_namespace("other")
    kube.admin.create(_secret("a", "default", {"app": "demo", "tier": "x"}))
    kube.admin.create(_secret("b", "default", {"app": "demo", "tier": "y", "legacy": "1"}))
    kube.admin.create(_secret("c", "other", {"app": "demo", "tier": "z"}, "example.com/t"))
    kube.admin.create(_secret("d", "other", {"app": "else"}))


def _names(reply) -> list[str]:
    return [f"{i['metadata']['namespace']}/{i['metadata']['name']}" for i in reply.json["items"]]


async def test_list_all_namespaces_and_items_shape(raw, kube: Kube) -> None:
    await _seed(kube)
    reply = await raw("GET", "/api/v1/secrets")
    assert reply.json["kind"] == "SecretList" and reply.json["apiVersion"] == "v1"
    assert _names(reply) == ["default/a", "default/b", "other/c", "other/d"]
    assert "kind" not in reply.json["items"][0]  # built-in list items carry no TypeMeta
    assert reply.json["metadata"]["resourceVersion"] == str(kube.admin.resource_version)


async def test_label_selector_operators(raw, kube: Kube) -> None:
    await _seed(kube)

    async def select(expr: str) -> list[str]:
        return _names(await raw("GET", f"/api/v1/secrets?labelSelector={quote(expr)}"))

    assert await select("app=demo,tier in (x,y),!legacy") == ["default/a"]
    assert await select("app==demo") == ["default/a", "default/b", "other/c"]
    assert await select("tier!=x") == ["default/b", "other/c", "other/d"]
    assert await select("tier notin (x,z)") == ["default/b", "other/d"]
    assert await select("legacy") == ["default/b"]
    bad = await raw("GET", "/api/v1/secrets?labelSelector=" + quote("a in x"))
    assert bad.status == 400 and bad.json["reason"] == "BadRequest"


async def test_field_selectors(raw, kube: Kube) -> None:
    await _seed(kube)
    reply = await raw(
        "GET", "/api/v1/secrets?fieldSelector=" + quote("type=Opaque,metadata.name!=a")
    )
    assert _names(reply) == ["default/b", "other/d"]
    reply = await raw("GET", "/api/v1/secrets?fieldSelector=metadata.namespace%3Dother")
    assert _names(reply) == ["other/c", "other/d"]
    bad = await raw("GET", "/api/v1/secrets?fieldSelector=spec.nothing%3Dx")
    assert bad.status == 400
    assert bad.json["message"] == "field label not supported: spec.nothing"


async def test_limit_and_continue_are_consistent(raw, kube: Kube) -> None:
    for i in range(5):
        kube.admin.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"cm{i}"}})
    path = "/api/v1/namespaces/default/configmaps"
    first = (await raw("GET", f"{path}?limit=2")).json
    assert [i["metadata"]["name"] for i in first["items"]] == ["cm0", "cm1"]
    token = first["metadata"]["continue"]
    assert first["metadata"]["remainingItemCount"] == 4  # cm2..cm4 and kube-root-ca.crt
    kube.admin.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm25"}})
    kube.admin.delete("v1", "ConfigMap", "cm3", "default")
    second = (await raw("GET", f"{path}?limit=2&continue={token}")).json
    # Pages are served from the snapshot at the first page's RV.
    assert [i["metadata"]["name"] for i in second["items"]] == ["cm2", "cm3"]
    assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    bad = await raw("GET", f"{path}?limit=2&continue={token}&resourceVersion=5")
    assert bad.status == 400


async def test_resource_version_match_exact_and_expiry(raw, kube: Kube) -> None:
    kube.admin.create(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"v": "1"}}
    )
    rv = kube.admin.resource_version
    kube.admin.patch("v1", "ConfigMap", "x", {"data": {"v": "2"}}, namespace="default")
    exact = (
        await raw(
            "GET",
            f"/api/v1/namespaces/default/configmaps?resourceVersion={rv}"
            "&resourceVersionMatch=Exact",
        )
    ).json
    assert [i["data"] for i in exact["items"] if i["metadata"]["name"] == "x"] == [{"v": "1"}]
    assert exact["metadata"]["resourceVersion"] == str(rv)
    kube.admin.compact()
    gone = await raw(
        "GET",
        f"/api/v1/namespaces/default/configmaps?resourceVersion={rv}&resourceVersionMatch=Exact",
    )
    assert gone.status == 410 and gone.json["reason"] == "Expired"
    future = await raw("GET", "/api/v1/namespaces/default/configmaps?resourceVersion=999999")
    assert future.status == 504 and "Too large resource version" in future.json["message"]
    no_rv = await raw("GET", "/api/v1/namespaces/default/configmaps?resourceVersionMatch=Exact")
    assert no_rv.status == 422


async def test_kubernetes_asyncio_list_and_read(k8s, kube: Kube) -> None:
    await _seed(kube)
    v1 = client.CoreV1Api(k8s)
    listed = await v1.list_secret_for_all_namespaces(label_selector="app=demo")
    assert sorted(s.metadata.name for s in listed.items) == ["a", "b", "c"]
    one = await v1.read_namespaced_secret("c", "other")
    assert one.type == "example.com/t"
    namespaces = await v1.list_namespace(field_selector="status.phase=Active")
    assert {"default", "other", "kube-system"} <= {n.metadata.name for n in namespaces.items}
