"""The emulation through kubectl 1.32 (subprocesses, each test with its own --cache-dir)."""

from __future__ import annotations

import asyncio
import base64
import json

from testbed.kube import Kube

CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer, default: 3}
              color: {type: string}
"""
WORKLOADS = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: app, image: "nginx:1.25", ports: [{containerPort: 80}]}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: vault}
spec:
  replicas: 2
  serviceName: vault
  selector: {matchLabels: {app: vault}}
  template:
    metadata: {labels: {app: vault}}
    spec:
      containers: [{name: vault, image: "hashicorp/vault:1.17"}]
"""


async def test_get_tables_all_namespaces_and_selectors(kubectl, kube: Kube) -> None:
    kube.admin.create_namespace("other")
    kube.admin.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "s1",
                "namespace": "default",
                "labels": {"app": "demo", "tier": "x"},
            },
            "stringData": {"a": "1"},
        }
    )
    kube.admin.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "example.com/t",
            "metadata": {
                "name": "s2",
                "namespace": "other",
                "labels": {"app": "demo", "tier": "y"},
            },
        }
    )
    out = (await kubectl("get", "secrets")).check().out
    assert out.split("\n")[0].split() == ["NAME", "TYPE", "DATA", "AGE"]
    assert out.split("\n")[1].split()[:3] == ["s1", "Opaque", "1"]
    out = (
        (
            await kubectl(
                "get",
                "secrets",
                "-A",
                "-l",
                "app=demo,tier in (x,y)",
                "--field-selector",
                "type!=Opaque",
            )
        )
        .check()
        .out
    )
    lines = out.strip().split("\n")
    assert lines[0].split()[:2] == ["NAMESPACE", "NAME"] and len(lines) == 2
    assert lines[1].split()[:2] == ["other", "s2"]
    out = (await kubectl("get", "secret", "s1", "--show-labels")).check().out
    assert "app=demo,tier=x" in out
    out = (await kubectl("get", "secret", "s1", "-o", "jsonpath={.data.a}")).check().out
    assert base64.b64decode(out) == b"1"
    missing = await kubectl("get", "secret", "nope")
    assert missing.rc == 1 and 'secrets "nope" not found' in missing.err


async def test_apply_crd_wait_established_then_custom_resource(kubectl, kube: Kube) -> None:
    (await kubectl("apply", "-f", "-", stdin=CRD)).check()
    (
        await kubectl(
            "wait", "--for", "condition=established", "--timeout=20s", "crd/widgets.example.com"
        )
    ).check()
    cr = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w1}\nspec: {color: red}\n"
    out = (await kubectl("apply", "-f", "-", stdin=cr)).check().out
    assert "widget.example.com/w1 created" in out
    out = (await kubectl("apply", "-f", "-", stdin=cr)).check().out
    assert "widget.example.com/w1 unchanged" in out
    table = (await kubectl("get", "wd")).check().out.split("\n")
    assert table[0].split() == ["NAME", "SIZE"] and table[1].split() == ["w1", "3"]
    unknown = cr.replace("color: red", "color: red, shade: dark")
    strict = await kubectl("apply", "-f", "-", stdin=unknown)
    assert strict.rc != 0 and 'unknown field "spec.shade"' in strict.err


async def test_server_side_apply_and_conflicts(kubectl, kube: Kube) -> None:
    cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {a: '1'}\n"
    out = (await kubectl("apply", "--server-side", "-f", "-", stdin=cm)).check().out
    assert "configmap/cfg serverside-applied" in out
    clash = await kubectl(
        "apply", "--server-side", "--field-manager=other", "-f", "-", stdin=cm.replace("'1'", "'2'")
    )
    assert clash.rc != 0 and 'conflict with "kubectl" using v1: .data.a' in clash.err
    (
        await kubectl(
            "apply",
            "--server-side",
            "--field-manager=other",
            "--force-conflicts",
            "-f",
            "-",
            stdin=cm.replace("'1'", "'2'"),
        )
    ).check()
    assert kube.admin.get("v1", "ConfigMap", "cfg", "default")["data"] == {"a": "2"}


async def test_patch_label_annotate_scale(kubectl, kube: Kube) -> None:
    (await kubectl("apply", "-f", "-", stdin=WORKLOADS)).check()
    (
        await kubectl(
            "patch",
            "deploy",
            "web",
            "-p",
            '{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"nginx:1.26"}]}}}}',
        )
    ).check()
    (
        await kubectl(
            "patch", "deploy", "web", "--type=merge", "-p", '{"metadata":{"labels":{"m":"1"}}}'
        )
    ).check()
    (
        await kubectl(
            "patch",
            "deploy",
            "web",
            "--type=json",
            "-p",
            '[{"op":"add","path":"/metadata/labels/j","value":"2"}]',
        )
    ).check()
    (await kubectl("label", "deploy", "web", "l=3")).check()
    (await kubectl("annotate", "deploy", "web", "a=4")).check()
    (await kubectl("scale", "deploy", "web", "--replicas=3")).check()
    d = kube.admin.get("apps/v1", "Deployment", "web", "default")
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.26"
    assert d["spec"]["template"]["spec"]["containers"][0]["ports"] == [
        {"containerPort": 80, "protocol": "TCP"}
    ]
    assert {"m": "1", "j": "2", "l": "3"}.items() <= d["metadata"]["labels"].items()
    assert d["metadata"]["annotations"]["a"] == "4"
    assert d["spec"]["replicas"] == 3
    managers = {e["manager"] for e in d["metadata"]["managedFields"]}
    assert {
        "kubectl-client-side-apply",
        "kubectl-patch",
        "kubectl-label",
        "kubectl-annotate",
    } <= managers


async def test_rollout_restart_and_status(kubectl, kube: Kube) -> None:
    (await kubectl("apply", "-f", "-", stdin=WORKLOADS)).check()
    for target, kind, name in (
        ("deployment/web", "Deployment", "web"),
        ("statefulset/vault", "StatefulSet", "vault"),
    ):
        (await kubectl("rollout", "status", target, "--timeout=30s")).check()
        generation = kube.admin.get("apps/v1", kind, name, "default")["metadata"]["generation"]
        (await kubectl("rollout", "restart", target)).check()
        out = (await kubectl("rollout", "status", target, "--timeout=30s")).check().out
        assert "successfully rolled out" in out or "roll out complete" in out
        after = kube.admin.get("apps/v1", kind, name, "default")
        assert after["metadata"]["generation"] == generation + 1
        assert after["status"]["observedGeneration"] == generation + 1
        assert (
            "kubectl.kubernetes.io/restartedAt"
            in after["spec"]["template"]["metadata"]["annotations"]
        )


async def test_delete_waits_for_finalizers(kubectl, kube: Kube) -> None:
    kube.admin.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "fin", "namespace": "default", "finalizers": ["example.com/x"]},
        }
    )
    deletion = asyncio.create_task(kubectl("delete", "cm", "fin", "--timeout=20s"))
    await kube.wait_for(
        lambda: (
            (kube.admin.get("v1", "ConfigMap", "fin", "default") or {})
            .get("metadata", {})
            .get("deletionTimestamp")
        ),
        message="deletion started",
    )
    await kube.wait_for(
        lambda: kube.requests.count("watch", "configmaps") >= 1, message="kubectl watching"
    )
    assert not deletion.done()
    kube.admin.patch(
        "v1", "ConfigMap", "fin", {"metadata": {"finalizers": None}}, namespace="default"
    )
    result = (await deletion).check()
    assert 'configmap "fin" deleted' in result.out


async def test_get_pods_watch_sees_restart(kubectl, kube: Kube) -> None:
    kube.admin.create(
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "db", "namespace": "default"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "db"}},
                "template": {
                    "metadata": {"labels": {"app": "db"}},
                    "spec": {"containers": [{"name": "db", "image": "db:1"}]},
                },
            },
        }
    )
    await kube.wait_for(
        lambda: (
            (kube.admin.get("apps/v1", "StatefulSet", "db", "default").get("status") or {}).get(
                "readyReplicas"
            )
            == 1
        ),
        message="db ready",
    )
    watching = asyncio.create_task(kubectl("get", "pods", "-w", "--request-timeout=4s"))
    await kube.wait_for(
        lambda: kube.requests.count("watch", "pods") >= 1, message="kubectl -w connected"
    )
    kube.kubelet.restart("default", "db-0")
    result = await watching
    rows = [line.split() for line in result.out.strip().split("\n")]
    assert rows[0][:4] == ["NAME", "READY", "STATUS", "RESTARTS"]
    restarts = [r for r in rows[1:] if r[0] == "db-0" and r[3] == "1"]
    assert restarts and restarts[0][1] == "0/1"


async def test_protobuf_creates_token_and_can_i(kubectl, kube: Kube) -> None:
    (await kubectl("create", "namespace", "pb")).check()
    (
        await kubectl("create", "secret", "generic", "s9", "-n", "pb", "--from-literal=user=admin")
    ).check()
    (await kubectl("create", "configmap", "c9", "-n", "pb", "--from-literal=k=v")).check()
    (await kubectl("create", "serviceaccount", "robot", "-n", "pb")).check()
    secret = kube.admin.get("v1", "Secret", "s9", "pb")
    assert (
        secret["data"] == {"user": base64.b64encode(b"admin").decode()}
        and secret["type"] == "Opaque"
    )
    assert kube.admin.get("v1", "ConfigMap", "c9", "pb")["data"] == {"k": "v"}
    token = (
        (await kubectl("create", "token", "robot", "-n", "pb", "--audience=vault"))
        .check()
        .out.strip()
    )
    payload = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert payload["sub"] == "system:serviceaccount:pb:robot" and payload["aud"] == ["vault"]
    no = await kubectl(
        "auth", "can-i", "list", "secrets", "-n", "pb", "--as=system:serviceaccount:pb:robot"
    )
    assert no.out.strip() == "no"
    yes = await kubectl("auth", "can-i", "list", "secrets", "-n", "pb")
    assert yes.out.strip() == "yes"
    denied = await kubectl("get", "secrets", "-n", "pb", "--as=system:serviceaccount:pb:robot")
    assert (
        denied.rc == 1
        and (
            'User "system:serviceaccount:pb:robot" cannot list resource "secrets" '
            'in API group "" in the namespace "pb"'
        )
        in denied.err
    )
