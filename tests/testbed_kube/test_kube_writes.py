"""Writes: create/update/patch/delete rules, Status error bodies, Secret rules, generation."""

from __future__ import annotations

import base64

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from testbed.kube import Kube

SECRETS = "/api/v1/namespaces/default/secrets"


async def test_create_returns_201_and_defaults(raw, kube: Kube) -> None:
    reply = await raw("POST", SECRETS, body={"metadata": {"name": "s1"}, "stringData": {"a": "b"}})
    assert reply.status == 201
    obj = reply.json
    assert obj["kind"] == "Secret" and obj["apiVersion"] == "v1"
    assert obj["type"] == "Opaque"
    assert obj["data"] == {"a": base64.b64encode(b"b").decode()}
    assert "stringData" not in obj
    md = obj["metadata"]
    assert md["uid"] and md["creationTimestamp"].endswith("Z")
    assert int(md["resourceVersion"]) == kube.admin.resource_version
    assert "generation" not in md
    assert md["managedFields"][0]["operation"] == "Update"


async def test_already_exists_body(raw) -> None:
    await raw("POST", SECRETS, body={"metadata": {"name": "s1"}})
    reply = await raw("POST", SECRETS, body={"metadata": {"name": "s1"}})
    assert reply.status == 409
    assert reply.json == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'secrets "s1" already exists',
        "reason": "AlreadyExists",
        "details": {"name": "s1", "kind": "secrets"},
        "code": 409,
    }


async def test_not_found_bodies(raw) -> None:
    reply = await raw("GET", "/apis/apps/v1/namespaces/default/deployments/web")
    assert reply.status == 404
    assert reply.json["message"] == 'deployments.apps "web" not found'
    assert reply.json["details"] == {"name": "web", "group": "apps", "kind": "deployments"}
    reply = await raw("GET", "/api/v1/namespaces/default/nothings")
    assert (
        reply.status == 404
        and reply.json["message"] == "the server could not find the requested resource"
    )
    reply = await raw("POST", "/api/v1/namespaces/nope/secrets", body={"metadata": {"name": "x"}})
    assert reply.status == 404 and reply.json["message"] == 'namespaces "nope" not found'


async def test_generate_name_and_name_validation(raw) -> None:
    reply = await raw("POST", SECRETS, body={"metadata": {"generateName": "gen-"}})
    assert reply.status == 201
    name = reply.json["metadata"]["name"]
    assert name.startswith("gen-") and len(name) == len("gen-") + 5
    reply = await raw("POST", SECRETS, body={"metadata": {"name": "Bad_Name"}})
    assert reply.status == 422
    body = reply.json
    assert body["reason"] == "Invalid"
    assert body["message"].startswith(
        'Secret "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": '
        "a lowercase RFC 1123 subdomain"
    )
    assert body["details"]["kind"] == "Secret"
    assert body["details"]["causes"][0]["field"] == "metadata.name"
    reply = await raw("POST", "/api/v1/namespaces", body={"metadata": {"name": "a.b"}})
    assert reply.status == 422 and "RFC 1123 label" in reply.json["message"]


async def test_secret_rules(raw) -> None:
    reply = await raw(
        "POST", SECRETS, body={"metadata": {"name": "b"}, "data": {"k": "not base64!"}}
    )
    assert reply.status == 400 and "illegal base64 data at input byte 3" in reply.json["message"]
    reply = await raw(
        "POST", SECRETS, body={"metadata": {"name": "k"}, "stringData": {"bad key": "v"}}
    )
    assert reply.status == 422 and reply.json["details"]["causes"][0]["field"] == "data[bad key]"
    big = base64.b64encode(b"x" * (1024 * 1024 + 1)).decode()
    reply = await raw("POST", SECRETS, body={"metadata": {"name": "big"}, "data": {"k": big}})
    assert reply.status == 422 and "Too long" in reply.json["message"]
    reply = await raw(
        "POST", SECRETS, body={"metadata": {"name": "tls"}, "type": "kubernetes.io/tls"}
    )
    assert reply.status == 422 and "data[tls.crt]: Required value" in reply.json["message"]

    created = (
        await raw("POST", SECRETS, body={"metadata": {"name": "t"}, "stringData": {"a": "1"}})
    ).json
    changed = {**created, "type": "example.com/other"}
    reply = await raw("PUT", f"{SECRETS}/t", body=changed)
    assert reply.status == 422
    assert reply.json["message"] == (
        'Secret "t" is invalid: type: Invalid value: "example.com/other": field is immutable'
    )

    frozen = (await raw("PUT", f"{SECRETS}/t", body={**created, "immutable": True})).json
    reply = await raw("PUT", f"{SECRETS}/t", body={**frozen, "stringData": {"a": "2"}})
    assert reply.status == 422 and reply.json["message"].endswith(
        "data: Forbidden: field is immutable when `immutable` is set"
    )
    reply = await raw("PUT", f"{SECRETS}/t", body={**frozen, "immutable": False})
    assert reply.status == 422 and "immutable: Forbidden" in reply.json["message"]


async def test_string_data_folds_into_data_on_patch(raw) -> None:
    await raw("POST", SECRETS, body={"metadata": {"name": "s"}, "data": {"a": "YQ=="}})
    reply = await raw(
        "PATCH",
        f"{SECRETS}/s",
        body={"stringData": {"a": "override", "b": "new"}},
        content_type="application/merge-patch+json",
    )
    assert reply.status == 200
    assert reply.json["data"] == {"a": base64.b64encode(b"override").decode(), "b": "bmV3"}
    assert "stringData" not in reply.json


async def test_update_conflict_and_unconditional(raw) -> None:
    created = (await raw("POST", SECRETS, body={"metadata": {"name": "c"}})).json
    first = await raw("PUT", f"{SECRETS}/c", body={**created, "stringData": {"a": "1"}})
    assert first.status == 200
    assert int(first.json["metadata"]["resourceVersion"]) > int(
        created["metadata"]["resourceVersion"]
    )
    stale = await raw("PUT", f"{SECRETS}/c", body={**created, "stringData": {"a": "2"}})
    assert stale.status == 409
    assert stale.json["message"] == (
        'Operation cannot be fulfilled on secrets "c": the object has been modified; please apply '
        "your changes to the latest version and try again"
    )
    assert stale.json["reason"] == "Conflict"
    unconditional = {"metadata": {"name": "c"}, "stringData": {"a": "3"}}
    assert (await raw("PUT", f"{SECRETS}/c", body=unconditional)).status == 200
    missing = await raw("PUT", f"{SECRETS}/none", body={"metadata": {"name": "none"}})
    assert missing.status == 404


async def test_noop_update_keeps_resource_version(raw, kube: Kube) -> None:
    created = (
        await raw("POST", SECRETS, body={"metadata": {"name": "n"}, "stringData": {"a": "1"}})
    ).json
    before = kube.admin.resource_version
    again = await raw("PUT", f"{SECRETS}/n", body=created)
    assert again.status == 200
    assert again.json["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    same = await raw(
        "PATCH",
        f"{SECRETS}/n",
        body={"data": {"a": "MQ=="}},
        content_type="application/merge-patch+json",
    )
    assert same.json["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert kube.admin.resource_version == before


async def test_dry_run_does_not_store(raw, kube: Kube) -> None:
    before = kube.admin.resource_version
    reply = await raw("POST", f"{SECRETS}?dryRun=All", body={"metadata": {"name": "dry"}})
    assert reply.status == 201 and reply.json["metadata"]["name"] == "dry"
    assert (await raw("GET", f"{SECRETS}/dry")).status == 404
    assert kube.admin.resource_version == before


async def test_generation_rules(raw, kube: Kube) -> None:
    await kube.controllers.disable("deployment")  # nothing else writes its status here
    deploy = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]},
            },
        },
    }
    path = "/apis/apps/v1/namespaces/default/deployments"
    created = (await raw("POST", path, body=deploy)).json
    assert created["metadata"]["generation"] == 1
    assert created["spec"]["strategy"]["rollingUpdate"] == {
        "maxUnavailable": "25%",
        "maxSurge": "25%",
    }
    assert created["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    labelled = await raw(
        "PATCH",
        f"{path}/web",
        body={"metadata": {"labels": {"x": "y"}}},
        content_type="application/merge-patch+json",
    )
    assert labelled.json["metadata"]["generation"] == 1
    annotated = await raw(
        "PATCH",
        f"{path}/web",
        body={"metadata": {"annotations": {"a": "b"}}},
        content_type="application/merge-patch+json",
    )
    assert annotated.json["metadata"]["generation"] == 2  # Deployments count annotations too
    status = {**annotated.json, "status": {"observedGeneration": 2, "replicas": 5}}
    after_status = await raw("PUT", f"{path}/web/status", body=status)
    assert after_status.json["metadata"]["generation"] == 2
    assert after_status.json["status"]["replicas"] == 5
    # Status written through the main resource is ignored.
    main = await raw("PUT", f"{path}/web", body={**after_status.json, "status": {"replicas": 9}})
    assert main.json["status"]["replicas"] == 5


async def test_finalizers_and_deletion(raw) -> None:
    path = "/api/v1/namespaces/default/configmaps"
    await raw("POST", path, body={"metadata": {"name": "f", "finalizers": ["example.com/hold"]}})
    deleting = await raw("DELETE", f"{path}/f")
    assert deleting.status == 200
    md = deleting.json["metadata"]
    assert md["deletionTimestamp"] and md["deletionGracePeriodSeconds"] == 0
    add = await raw(
        "PATCH",
        f"{path}/f",
        body={"metadata": {"finalizers": ["example.com/hold", "example.com/more"]}},
        content_type="application/merge-patch+json",
    )
    assert add.status == 422 and "no new finalizers can be added" in add.json["message"]
    assert (await raw("GET", f"{path}/f")).status == 200
    released = await raw(
        "PATCH",
        f"{path}/f",
        body={"metadata": {"finalizers": None}},
        content_type="application/merge-patch+json",
    )
    assert released.status == 200
    assert (await raw("GET", f"{path}/f")).status == 404


async def test_delete_bodies_and_preconditions(raw) -> None:
    created = (await raw("POST", SECRETS, body={"metadata": {"name": "d"}})).json
    wrong = await raw("DELETE", f"{SECRETS}/d", body={"preconditions": {"uid": "nope"}})
    assert (
        wrong.status == 409
        and "Precondition failed: UID in precondition: nope" in wrong.json["message"]
    )
    done = await raw("DELETE", f"{SECRETS}/d", body={"propagationPolicy": "Background"})
    assert done.json == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": "d", "kind": "secrets", "uid": created["metadata"]["uid"]},
    }
    sa = "/api/v1/namespaces/default/serviceaccounts"
    await raw("POST", sa, body={"metadata": {"name": "robot"}})
    gone = await raw("DELETE", f"{sa}/robot")
    assert gone.json["kind"] == "ServiceAccount"  # ReturnDeletedObject kinds answer the object


async def test_kubernetes_asyncio_conflict_and_errors(k8s) -> None:
    v1 = client.CoreV1Api(k8s)
    cm = await v1.create_namespaced_config_map(
        "default", {"metadata": {"name": "cm"}, "data": {"a": "1"}}
    )
    cm.data = {"a": "2"}
    await v1.replace_namespaced_config_map("cm", "default", cm)
    with pytest.raises(ApiException) as caught:
        await v1.replace_namespaced_config_map("cm", "default", cm)  # stale resourceVersion
    assert caught.value.status == 409
    with pytest.raises(ApiException) as caught:
        await v1.read_namespaced_config_map("nope", "default")
    assert caught.value.status == 404


async def test_delete_collection(raw) -> None:
    for name, tier in (("a", "x"), ("b", "x"), ("c", "y")):
        await raw("POST", SECRETS, body={"metadata": {"name": name, "labels": {"tier": tier}}})
    reply = await raw("DELETE", f"{SECRETS}?labelSelector=tier%3Dx")
    assert reply.status == 200 and reply.json["kind"] == "SecretList"
    assert sorted(i["metadata"]["name"] for i in reply.json["items"]) == ["a", "b"]
    left = (await raw("GET", SECRETS)).json["items"]
    assert [i["metadata"]["name"] for i in left] == ["c"]


async def test_create_in_terminating_namespace_is_forbidden(raw, kube: Kube) -> None:
    await kube.controllers.disable("namespace")
    kube.admin.create_namespace("doomed")
    await raw("DELETE", "/api/v1/namespaces/doomed")
    reply = await raw("POST", "/api/v1/namespaces/doomed/secrets", body={"metadata": {"name": "x"}})
    assert reply.status == 403
    assert reply.json["message"] == (
        'secrets "x" is forbidden: unable to create new content in '
        "namespace doomed because it is being terminated"
    )


async def test_times_are_reencoded_like_the_apiserver(k8s) -> None:
    import datetime as dt

    coordination = client.CoordinationV1Api(k8s)
    when = dt.datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=dt.UTC)
    body = client.V1Lease(
        metadata=client.V1ObjectMeta(name="leader"),
        spec=client.V1LeaseSpec(
            holder_identity="a", lease_duration_seconds=15, acquire_time=when, renew_time=when
        ),
    )
    created = await coordination.create_namespaced_lease("default", body)
    with pytest.raises(ApiException) as caught:
        await coordination.create_namespaced_lease("default", body)
    assert caught.value.status == 409  # leader election: someone else created it first
    raw_lease = await coordination.read_namespaced_lease(
        "leader", "default", _preload_content=False
    )
    data = await raw_lease.json()
    assert data["spec"]["renewTime"] == "2026-01-02T03:04:05.123456Z"  # MicroTime
    created.spec.holder_identity = "b"
    replaced = await coordination.replace_namespaced_lease("leader", "default", created)
    assert replaced.spec.holder_identity == "b"
    with pytest.raises(ApiException) as caught:
        await coordination.replace_namespaced_lease("leader", "default", created)  # lost the race
    assert caught.value.status == 409

    v1 = client.CoreV1Api(k8s)
    cm = await v1.create_namespaced_config_map("default", {"metadata": {"name": "t"}})
    event = await v1.create_namespaced_event(
        "default",
        {
            "metadata": {"name": "e"},
            "involvedObject": {"kind": "ConfigMap", "name": "t"},
            "firstTimestamp": "2026-01-02T03:04:05.999+00:00",
            "reason": "R",
            "message": "m",
        },
    )
    assert cm.metadata.name == "t" and event.first_timestamp == dt.datetime(
        2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC
    )


async def test_service_cluster_ip_and_pod_logs(raw, kube: Kube) -> None:
    svc = await raw(
        "POST",
        "/api/v1/namespaces/default/services",
        body={
            "metadata": {"name": "vault"},
            "spec": {"selector": {"app": "vault"}, "ports": [{"port": 8200}]},
        },
    )
    assert svc.status == 201
    spec = svc.json["spec"]
    assert spec["clusterIP"].startswith("10.96.") and spec["clusterIPs"] == [spec["clusterIP"]]
    assert spec["ports"] == [{"port": 8200, "protocol": "TCP", "targetPort": 8200}]
    await kube.controllers.disable("kubelet")
    kube.admin.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "x:1"}]},
        }
    )
    logs = await raw("GET", "/api/v1/namespaces/default/pods/p/log")
    assert logs.status == 200 and logs.body == ""
    assert (await raw("GET", "/api/v1/namespaces/default/pods/none/log")).status == 404
