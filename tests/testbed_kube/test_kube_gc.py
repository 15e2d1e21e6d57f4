"""Garbage collection (background, foreground, orphan), namespace teardown, default SAs."""

from __future__ import annotations

from kubernetes_asyncio import client

from testbed.kube import Kube


def _cm(name: str, owner: dict | None = None) -> dict:
    md: dict = {"name": name, "namespace": "default"}
    if owner is not None:
        md["ownerReferences"] = [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "name": owner["metadata"]["name"],
                "uid": owner["metadata"]["uid"],
                "blockOwnerDeletion": True,
            }
        ]
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": md}


def _exists(kube: Kube, name: str) -> bool:
    return kube.admin.get("v1", "ConfigMap", name, "default") is not None


async def test_background_deletion_collects_dependents(k8s, kube: Kube) -> None:
    owner = kube.admin.create(_cm("owner"))
    kube.admin.create(_cm("child", owner))
    grandchild_owner = kube.admin.get("v1", "ConfigMap", "child", "default")
    kube.admin.create(_cm("grandchild", grandchild_owner))
    await client.CoreV1Api(k8s).delete_namespaced_config_map("owner", "default")
    assert not _exists(kube, "owner")
    await kube.wait_for(
        lambda: not _exists(kube, "child") and not _exists(kube, "grandchild"),
        message="dependents collected",
    )


async def test_dependent_with_a_live_owner_survives(kube: Kube) -> None:
    first = kube.admin.create(_cm("first"))
    second = kube.admin.create(_cm("second"))
    child = _cm("child", first)
    child["metadata"]["ownerReferences"] += _cm("x", second)["metadata"]["ownerReferences"]
    kube.admin.create(child)
    kube.admin.delete("v1", "ConfigMap", "first", "default")
    await kube.wait_for(
        lambda: (
            len(
                kube.admin.get("v1", "ConfigMap", "child", "default")["metadata"]["ownerReferences"]
            )
            == 1
        ),
        message="dangling reference removed",
    )
    assert _exists(kube, "child")


async def test_foreground_deletion_waits_for_dependents(kube: Kube) -> None:
    await kube.controllers.disable("gc")
    owner = kube.admin.create(_cm("owner"))
    kube.admin.create(_cm("child", owner))
    kube.admin.delete("v1", "ConfigMap", "owner", "default", propagation_policy="Foreground")
    held = kube.admin.get("v1", "ConfigMap", "owner", "default")
    assert held["metadata"]["finalizers"] == ["foregroundDeletion"]
    assert held["metadata"]["deletionTimestamp"]
    kube.controllers.enable("gc")
    await kube.wait_for(
        lambda: not _exists(kube, "owner"), message="owner deleted after dependents"
    )
    assert not _exists(kube, "child")


async def test_orphan_deletion_strips_references(kube: Kube) -> None:
    owner = kube.admin.create(_cm("owner"))
    kube.admin.create(_cm("child", owner))
    kube.admin.delete("v1", "ConfigMap", "owner", "default", propagation_policy="Orphan")
    await kube.wait_for(lambda: not _exists(kube, "owner"), message="owner gone")
    child = kube.admin.get("v1", "ConfigMap", "child", "default")
    assert "ownerReferences" not in child["metadata"]


async def test_gc_disabled_leaves_dependents_then_catches_up(kube: Kube) -> None:
    await kube.controllers.disable("gc")
    owner = kube.admin.create(_cm("owner"))
    kube.admin.create(_cm("child", owner))
    kube.admin.delete("v1", "ConfigMap", "owner", "default")
    assert _exists(kube, "child")
    kube.controllers.enable("gc")
    await kube.wait_for(lambda: not _exists(kube, "child"), message="resync collects the orphan")


async def test_namespace_teardown_and_default_service_account(raw, kube: Kube) -> None:
    kube.admin.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}})
    await kube.wait_for(
        lambda: (
            kube.admin.get("v1", "ServiceAccount", "default", "team")
            and kube.admin.get("v1", "ConfigMap", "kube-root-ca.crt", "team")
        ),
        message="default ServiceAccount and root CA",
    )
    assert kube.admin.get("v1", "ConfigMap", "kube-root-ca.crt", "team")["data"][
        "ca.crt"
    ].startswith("-----BEGIN CERTIFICATE-----")
    kube.admin.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "held", "namespace": "team", "finalizers": ["example.com/x"]},
        }
    )
    reply = await raw("DELETE", "/api/v1/namespaces/team")
    assert reply.status == 200 and reply.json["status"]["phase"] == "Terminating"
    await kube.wait_for(
        lambda: (
            kube.admin.get("v1", "Secret", "held", "team") is not None
            and kube.admin.get("v1", "ServiceAccount", "default", "team") is None
        ),
        message="content deleted except the finalized secret",
    )
    assert kube.admin.get("v1", "Namespace", "team") is not None  # still waiting for the finalizer
    kube.admin.patch("v1", "Secret", "held", {"metadata": {"finalizers": None}}, namespace="team")
    await kube.wait_for(
        lambda: kube.admin.get("v1", "Namespace", "team") is None, message="namespace gone"
    )
    protected = await raw("DELETE", "/api/v1/namespaces/kube-system")
    assert protected.status == 403
