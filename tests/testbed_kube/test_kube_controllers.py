"""Workload controllers and the emulated kubelet."""

from __future__ import annotations

from typing import Any

from kubernetes_asyncio import client

from testbed.kube import Kube
from testbed.kube.store import ADDED


def _template(app: str, image: str) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": app}},
        "spec": {"containers": [{"name": app, "image": image}]},
    }


def _sts(replicas: int = 3) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "vault", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "serviceName": "vault",
            "selector": {"matchLabels": {"app": "vault"}},
            "template": _template("vault", "hashicorp/vault:1.17"),
        },
    }


def _deploy(replicas: int = 2, image: str = "nginx:1.25") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": _template("web", image),
        },
    }


def _pod(kube: Kube, name: str) -> dict[str, Any] | None:
    return kube.admin.get("v1", "Pod", name, "default")


def _ready(pod: dict[str, Any] | None) -> bool:
    return bool(pod) and any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in pod.get("status", {}).get("conditions", [])
    )


def _sts_done(kube: Kube, replicas: int) -> bool:
    sts = kube.admin.get("apps/v1", "StatefulSet", "vault", "default")
    status = sts.get("status", {})
    return (
        status.get("observedGeneration") == sts["metadata"]["generation"]
        and status.get("readyReplicas") == replicas
        and status.get("updatedReplicas") == replicas
        and status.get("currentRevision") == status.get("updateRevision")
    )


def _deploy_done(kube: Kube) -> bool:
    d = kube.admin.get("apps/v1", "Deployment", "web", "default")
    s = d.get("status", {})
    replicas = d["spec"]["replicas"]
    return (
        s.get("observedGeneration") == d["metadata"]["generation"]
        and s.get("updatedReplicas") == replicas
        and s.get("availableReplicas") == replicas
        and s.get("replicas") == replicas
    )


async def test_deployment_rollout_replaces_replicaset(kube: Kube) -> None:
    kube.admin.create(_deploy())
    await kube.wait_for(lambda: _deploy_done(kube), message="first rollout")
    first = kube.admin.list("apps/v1", "ReplicaSet", "default")
    assert (
        len(first) == 1
        and first[0]["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    )
    old_pods = {p["metadata"]["name"] for p in kube.admin.list("v1", "Pod", "default")}
    kube.admin.patch(
        "apps/v1",
        "Deployment",
        "web",
        {
            "spec": {
                "template": {
                    "metadata": {
                        "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z"}
                    }
                }
            }
        },
        namespace="default",
        content_type="application/strategic-merge-patch+json",
    )
    await kube.wait_for(
        lambda: (
            _deploy_done(kube)
            and len(kube.admin.list("v1", "Pod", "default")) == 2
            and not old_pods
            & {p["metadata"]["name"] for p in kube.admin.list("v1", "Pod", "default")}
        ),
        message="second rollout",
    )
    sets = {
        rs["metadata"]["name"]: rs for rs in kube.admin.list("apps/v1", "ReplicaSet", "default")
    }
    assert len(sets) == 2
    assert sorted(rs["spec"]["replicas"] for rs in sets.values()) == [0, 2]
    d = kube.admin.get("apps/v1", "Deployment", "web", "default")
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    conditions = {c["type"]: c for c in d["status"]["conditions"]}
    assert conditions["Available"]["status"] == "True"
    assert conditions["Progressing"]["reason"] == "NewReplicaSetAvailable"


async def test_statefulset_ordered_stable_pods_and_rolling_update(kube: Kube) -> None:
    created: list[str] = []
    kube.cluster.store.subscribe(
        "/pods",
        lambda _s, c: created.append(c.obj["metadata"]["name"]) if c.type == ADDED else None,
    )
    kube.admin.create(_sts())
    await kube.wait_for(lambda: _sts_done(kube, 3), message="statefulset ready")
    assert created == ["vault-0", "vault-1", "vault-2"]  # OrderedReady: one after another
    pod = _pod(kube, "vault-1")
    assert pod["spec"]["hostname"] == "vault-1" and pod["spec"]["subdomain"] == "vault"
    assert pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] == "vault-1"
    created.clear()
    kube.admin.patch(
        "apps/v1",
        "StatefulSet",
        "vault",
        {
            "spec": {
                "template": {
                    "spec": {"containers": [{"name": "vault", "image": "hashicorp/vault:1.18"}]}
                }
            }
        },
        namespace="default",
        content_type="application/strategic-merge-patch+json",
    )
    await kube.wait_for(lambda: _sts_done(kube, 3) and len(created) == 3, message="rolling update")
    assert created == ["vault-2", "vault-1", "vault-0"]  # highest ordinal first
    assert _pod(kube, "vault-0")["spec"]["containers"][0]["image"] == "hashicorp/vault:1.18"


async def test_kubelet_restart_crash_loop_and_recover(k8s, kube: Kube) -> None:
    kube.admin.create(_sts(1))
    await kube.wait_for(lambda: _ready(_pod(kube, "vault-0")), message="pod ready")
    kube.kubelet.restart("default", "vault-0")
    restarted = _pod(kube, "vault-0")
    assert not _ready(restarted)
    assert restarted["status"]["containerStatuses"][0]["restartCount"] == 1
    assert restarted["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"] == 137
    await kube.wait_for(lambda: _ready(_pod(kube, "vault-0")), message="ready after restart")

    kube.kubelet.crash_loop("default", "vault-0")
    await kube.wait_for(
        lambda: _pod(kube, "vault-0")["status"]["containerStatuses"][0]["restartCount"] >= 3,
        message="crash loop restarts",
    )
    state = _pod(kube, "vault-0")["status"]["containerStatuses"][0]["state"]
    assert state["waiting"]["reason"] == "CrashLoopBackOff"
    assert not _ready(_pod(kube, "vault-0"))
    kube.kubelet.recover("default", "vault-0")
    await kube.wait_for(lambda: _ready(_pod(kube, "vault-0")), message="recovered")
    typed = await client.CoreV1Api(k8s).read_namespaced_pod("vault-0", "default")
    assert typed.status.container_statuses[0].restart_count >= 3  # deserialises with the client


async def test_delete_pod_gets_new_ip_and_pinned_ips(kube: Kube) -> None:
    kube.kubelet.assign_ip("default", "vault-0", "127.0.0.77")
    kube.admin.create(_sts(2))
    await kube.wait_for(lambda: _sts_done(kube, 2), message="ready")
    assert kube.kubelet.pod_ip("default", "vault-0") == "127.0.0.77"
    before = kube.kubelet.pod_ip("default", "vault-1")
    uid = _pod(kube, "vault-1")["metadata"]["uid"]
    kube.kubelet.delete_pod("default", "vault-1")
    await kube.wait_for(
        lambda: _ready(_pod(kube, "vault-1")) and _pod(kube, "vault-1")["metadata"]["uid"] != uid,
        message="recreated",
    )
    after = kube.kubelet.pod_ip("default", "vault-1")
    assert after and after != before and after.startswith("127.0.0.")
    kube.kubelet.delete_pod("default", "vault-0", new_ip="127.0.0.78")
    await kube.wait_for(
        lambda: kube.kubelet.pod_ip("default", "vault-0") == "127.0.0.78", message="pinned"
    )


async def test_power_loss_restarts_everything(kube: Kube) -> None:
    kube.admin.create(_sts(3))
    kube.admin.create(_deploy(2))
    await kube.wait_for(lambda: _sts_done(kube, 3) and _deploy_done(kube), message="all ready")
    assert kube.kubelet.power_loss() == 5
    pods = kube.admin.list("v1", "Pod", "default")
    assert all(not _ready(p) for p in pods)
    assert all(p["status"]["containerStatuses"][0]["restartCount"] == 1 for p in pods)
    await kube.wait_for(
        lambda: all(_ready(p) for p in kube.admin.list("v1", "Pod", "default")),
        message="all ready again",
    )


async def test_daemonset_status(kube: Kube) -> None:
    kube.admin.create(
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": "default"},
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "template": _template("agent", "a:1"),
            },
        }
    )

    def done() -> bool:
        s = kube.admin.get("apps/v1", "DaemonSet", "agent", "default").get("status", {})
        return s.get("numberReady") == 1 and s.get("desiredNumberScheduled") == 1

    await kube.wait_for(done, message="daemonset ready")
    pods = kube.admin.list("v1", "Pod", "default", label_selector="app=agent")
    assert len(pods) == 1 and pods[0]["spec"]["nodeName"] == "testbed-node"


async def test_controllers_can_be_switched_off(kube: Kube) -> None:
    await kube.controllers.disable("statefulset")
    kube.admin.create(_sts(1))
    assert kube.admin.list("v1", "Pod", "default") == []
    kube.controllers.enable("statefulset")
    await kube.wait_for(lambda: _sts_done(kube, 1), message="caught up after enable")
