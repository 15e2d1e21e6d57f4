"""Discovery, OpenAPI, Tables, health endpoints and ``python -m testbed up``'s serve()."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml
from kubernetes_asyncio import client, config

from testbed.kube import Kube, up

AGGREGATED = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
)
TABLE = (
    "application/json;as=Table;v=v1;g=meta.k8s.io,"
    "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
)


async def test_version_and_health(raw) -> None:
    version = (await raw("GET", "/version?timeout=5s")).json
    assert version["major"] == "1" and version["minor"] == "32"
    for path in ("/healthz", "/readyz", "/livez"):
        reply = await raw("GET", path)
        assert reply.status == 200 and reply.body == "ok"


async def test_aggregated_discovery(raw) -> None:
    reply = await raw("GET", "/apis?timeout=32s", headers={"Accept": AGGREGATED})
    assert (
        reply.headers["Content-Type"]
        == "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    )
    groups = {g["metadata"]["name"]: g for g in reply.json["items"]}
    assert {
        "apps",
        "coordination.k8s.io",
        "rbac.authorization.k8s.io",
        "apiextensions.k8s.io",
        "authentication.k8s.io",
        "events.k8s.io",
    } <= set(groups)
    deployments = next(
        r for r in groups["apps"]["versions"][0]["resources"] if r["resource"] == "deployments"
    )
    assert deployments["shortNames"] == ["deploy"] and deployments["scope"] == "Namespaced"
    subs = {s["subresource"]: s for s in deployments["subresources"]}
    assert subs["scale"]["responseKind"] == {
        "group": "autoscaling",
        "version": "v1",
        "kind": "Scale",
    }
    core = (await raw("GET", "/api", headers={"Accept": AGGREGATED})).json
    assert len(core["items"]) == 1 and "name" not in core["items"][0]["metadata"]


async def test_legacy_discovery(raw, kube: Kube) -> None:
    versions = (await raw("GET", "/api")).json
    assert versions["kind"] == "APIVersions" and versions["versions"] == ["v1"]
    assert versions["serverAddressByClientCIDRs"][0]["serverAddress"] == f"127.0.0.1:{kube.port}"
    group_list = (await raw("GET", "/apis")).json
    assert group_list["kind"] == "APIGroupList"
    apps = next(g for g in group_list["groups"] if g["name"] == "apps")
    assert apps["preferredVersion"] == {"groupVersion": "apps/v1", "version": "v1"}
    core = (await raw("GET", "/api/v1")).json
    by_name = {r["name"]: r for r in core["resources"]}
    assert by_name["serviceaccounts/token"]["kind"] == "TokenRequest"
    assert by_name["serviceaccounts/token"]["group"] == "authentication.k8s.io"
    assert by_name["secrets"]["namespaced"] is True and by_name["namespaces"]["namespaced"] is False
    assert (await raw("GET", "/apis/apps")).json["kind"] == "APIGroup"
    assert (await raw("GET", "/apis/nothing/v1")).status == 404


async def test_openapi_stub_for_kubectl_validation(raw) -> None:
    index = (await raw("GET", "/openapi/v3")).json
    assert {"api/v1", "apis/apps/v1", "apis/apiextensions.k8s.io/v1"} <= set(index["paths"])
    url = index["paths"]["api/v1"]["serverRelativeURL"]
    assert url.startswith("/openapi/v3/api/v1?hash=")
    doc = (await raw("GET", url + "&timeout=32s")).json
    patch = doc["paths"]["/api/v1/namespaces/{namespace}/secrets/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {
        "group": "",
        "version": "v1",
        "kind": "Secret",
    }
    assert "fieldValidation" in {p["name"] for p in patch["parameters"]}
    assert (await raw("GET", "/openapi/v2")).status == 404


async def test_tables_with_real_columns(raw, kube: Kube) -> None:
    kube.admin.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "s", "labels": {"a": "b"}},
            "stringData": {"x": "1", "y": "2"},
        }
    )
    table = (await raw("GET", "/api/v1/namespaces/default/secrets", headers={"Accept": TABLE})).json
    assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Type", "Data", "Age"]
    assert table["rows"][0]["cells"][:3] == ["s", "Opaque", 2]
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    assert table["rows"][0]["object"]["metadata"]["labels"] == {"a": "b"}
    single = (
        await raw("GET", "/api/v1/namespaces/default/secrets/s", headers={"Accept": TABLE})
    ).json
    assert single["kind"] == "Table" and len(single["rows"]) == 1
    pods = (await raw("GET", "/api/v1/pods", headers={"Accept": TABLE})).json
    names = [c["name"] for c in pods["columnDefinitions"]]
    assert names[:5] == ["Name", "Ready", "Status", "Restarts", "Age"]
    assert [c["priority"] for c in pods["columnDefinitions"]][5:] == [1, 1, 1, 1]
    plain = (
        await raw(
            "GET", "/api/v1/namespaces/default/secrets/s", headers={"Accept": "application/json"}
        )
    ).json
    assert plain["kind"] == "Secret"


async def test_events_are_served_by_both_apis(k8s, kube: Kube) -> None:
    events = client.EventsV1Api(k8s)
    created = await events.create_namespaced_event(
        "default",
        {
            "metadata": {"name": "e1"},
            "eventTime": "2026-01-01T00:00:00.000000Z",
            "reportingController": "syncd",
            "reportingInstance": "syncd-0",
            "action": "Sync",
            "reason": "Synced",
            "note": "hello",
            "type": "Normal",
            "regarding": {"kind": "Secret", "name": "s", "namespace": "default"},
        },
    )
    assert created.note == "hello"
    core = await client.CoreV1Api(k8s).read_namespaced_event("e1", "default")
    assert core.message == "hello" and core.involved_object.name == "s"
    assert core.reporting_component == "syncd"
    listed = await client.CoreV1Api(k8s).list_namespaced_event(
        "default", field_selector="involvedObject.name=s,reason=Synced"
    )
    assert [e.metadata.name for e in listed.items] == ["e1"]


async def test_serve_writes_kubeconfig(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    up.add_arguments(parser)
    args = parser.parse_args(["--kube-token", "tok", "--kube-disable", "kubelet"])
    async with up.serve(args, tmp_path):
        path = tmp_path / "kubeconfig"
        written = yaml.safe_load(path.read_text())
        assert written["users"][0]["user"]["token"] == "tok"
        assert written["contexts"][0]["context"]["namespace"] == "default"
        api = await config.new_client_from_config(config_file=str(path))
        try:
            names = {n.metadata.name for n in (await client.CoreV1Api(api).list_namespace()).items}
        finally:
            await api.close()
        assert "kube-system" in names
    assert not path.exists()


async def test_event_tables_for_both_versions(raw, kube: Kube) -> None:
    kube.admin.create(
        {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "e", "namespace": "default"},
            "involvedObject": {"kind": "Secret", "name": "s"},
            "reason": "Synced",
            "message": "copied",
            "type": "Normal",
            "count": 2,
        }
    )
    for path in (
        "/api/v1/namespaces/default/events",
        "/apis/events.k8s.io/v1/namespaces/default/events",
    ):
        table = (await raw("GET", path, headers={"Accept": TABLE})).json
        cells = table["rows"][0]["cells"]
        assert cells[1:4] == ["Normal", "Synced", "secret/s"] and cells[6] == "copied", path
