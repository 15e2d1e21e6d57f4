"""The shipped tenant roles (``manifests/syncd/tenant-roles.yaml``) as a namespace user meets them.

Each user here is bound to one of the cluster's own ClusterRoles (``edit``, ``admin`` or ``view``)
in one namespace and to nothing else; our kinds reach them only through aggregation, which the
Kubernetes emulation does as a cluster does (its clusterrole-aggregation controller fills the
built-in roles' rules). Every check is a request with the user's own token, so a role that
granted more than it should (status, another namespace, a write to ``view``) fails a test, and
so does one that granted less.
"""

from __future__ import annotations

from typing import Any

import pytest

from plumbing.kube import KubeError
from syncd.auth_globals import VAULT_AUTH_GLOBAL
from syncd.specs import VAULT_AUTH, VAULT_CONNECTION, VAULT_STATIC_SECRET
from syncd.transformations import SECRET_TRANSFORMATION
from tests.syncd.e2e.world import APP_NS, GROUP_VERSION, Tenant, World

OTHER_NS = "team-b"
KINDS = {"VaultConnection": VAULT_CONNECTION, "VaultAuth": VAULT_AUTH,
         "VaultAuthGlobal": VAULT_AUTH_GLOBAL, "SecretTransformation": SECRET_TRANSFORMATION,
         "VaultStaticSecret": VAULT_STATIC_SECRET}
MERGE = "application/merge-patch+json"


def _objects(namespace: str) -> list[dict[str, Any]]:
    """One of each of our kinds, as a namespace user writes them."""
    return [
        {"kind": "VaultConnection", "metadata": {"name": "mine", "namespace": namespace},
         "spec": {"address": "http://127.0.0.1:8200"}},
        {"kind": "VaultAuth", "metadata": {"name": "mine", "namespace": namespace},
         "spec": {"method": "token", "vaultConnectionRef": "mine",
                  "token": {"secretRef": {"name": "vault-token", "key": "token"}}}},
        {"kind": "VaultAuthGlobal", "metadata": {"name": "mine", "namespace": namespace},
         "spec": {"defaultAuthMethod": "kubernetes",
                  "kubernetes": {"role": "app", "serviceAccount": "default"}}},
        {"kind": "SecretTransformation", "metadata": {"name": "mine", "namespace": namespace},
         "spec": {"excludes": ["^internal"]}},
        {"kind": "VaultStaticSecret", "metadata": {"name": "mine", "namespace": namespace},
         "spec": {"vaultAuthRef": "mine", "mount": "secret", "path": "kv-secret/info",
                  "type": "kv-v2", "destination": {"name": "mine", "create": True}}},
    ]


async def _refused(request: Any, *, verb: str, resource: str, namespace: str = APP_NS) -> None:
    """``request`` is refused by RBAC (403 naming ``verb`` and ``resource`` in ``namespace``)."""
    with pytest.raises(KubeError) as refused:
        await request
    assert refused.value.status == 403, refused.value
    assert (f'cannot {verb} resource "{resource}" in API group "secrets.vault-syncd.dev" '
            f'in the namespace "{namespace}"') in str(refused.value)


async def _patch(tenant: Tenant, kind: str, name: str, body: dict[str, Any], *,
                 namespace: str = APP_NS, subresource: str = "") -> Any:
    return await tenant.kube.request(
        "PATCH", KINDS[kind].path(namespace=namespace, name=name, subresource=subresource),
        body=body, content_type=MERGE)


@pytest.mark.parametrize("role", ["edit", "admin"])
async def test_edit_and_admin_manage_our_kinds_in_their_namespace_only(
    world: World, role: str
) -> None:
    world.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OTHER_NS}})
    async with world.tenant(role=role) as tenant:
        for obj in _objects(APP_NS):
            created = await tenant.create(obj)
            assert created["metadata"]["uid"], obj["kind"]
        patched = await _patch(tenant, "VaultStaticSecret", "mine",
                               {"spec": {"refreshAfter": "5s"}})
        assert patched["spec"]["refreshAfter"] == "5s"
        listed = await tenant.kube.request("GET", VAULT_CONNECTION.path(namespace=APP_NS))
        assert [c["metadata"]["name"] for c in listed["items"]] == ["mine"]

        # The status is syncd's word: the user may not write it, by patch or by update.
        forged = {"status": {"conditions": [{"type": "Ready", "status": "True",
                                             "reason": "Synced", "message": "forged"}]}}
        await _refused(_patch(tenant, "VaultStaticSecret", "mine", forged,
                              subresource="status"),
                       verb="patch", resource="vaultstaticsecrets/status")
        current = await tenant.kube.request(
            "GET", VAULT_STATIC_SECRET.path(namespace=APP_NS, name="mine"))
        await _refused(tenant.kube.request(
            "PUT", VAULT_STATIC_SECRET.path(namespace=APP_NS, name="mine", subresource="status"),
            body={**current, **forged}), verb="update", resource="vaultstaticsecrets/status")
        assert world.status("mine") == {}

        # Nothing in a namespace where the user has no binding: no write, no read.
        for obj in _objects(OTHER_NS):
            plural = KINDS[obj["kind"]].plural
            await _refused(tenant.create(obj), verb="create", resource=plural,
                           namespace=OTHER_NS)
            await _refused(tenant.kube.request("GET", KINDS[obj["kind"]].path(namespace=OTHER_NS)),
                           verb="list", resource=plural, namespace=OTHER_NS)
        assert world.kube.admin.list(GROUP_VERSION, "VaultStaticSecret", OTHER_NS) == []

        for kind in KINDS:
            await tenant.delete(kind, "mine")
        assert world.get_vss("mine") is None


async def test_view_reads_our_kinds_and_writes_none(world: World) -> None:
    for obj in _objects(APP_NS):
        world.apply({"apiVersion": GROUP_VERSION, **obj})
    async with world.tenant(name="viewer", role="view") as viewer:
        for kind, resource in KINDS.items():
            listed = await viewer.kube.request("GET", resource.path(namespace=APP_NS))
            assert [o["metadata"]["name"] for o in listed["items"]] == ["mine"], kind
            got = await viewer.kube.request("GET", resource.path(namespace=APP_NS, name="mine"))
            assert got["kind"] == kind
        status = await viewer.kube.request(
            "GET", VAULT_STATIC_SECRET.path(namespace=APP_NS, name="mine", subresource="status"))
        assert status["metadata"]["name"] == "mine"

        for obj in _objects(APP_NS):
            kind, plural = obj["kind"], KINDS[obj["kind"]].plural
            await _refused(viewer.create({**obj, "metadata": {"name": "another"}}),
                           verb="create", resource=plural)
            await _refused(_patch(viewer, kind, "mine", {"metadata": {"labels": {"x": "y"}}}),
                           verb="patch", resource=plural)
            await _refused(viewer.delete(kind, "mine"), verb="delete", resource=plural)
        await _refused(_patch(viewer, "VaultStaticSecret", "mine", {"status": {}},
                              subresource="status"),
                       verb="patch", resource="vaultstaticsecrets/status")
    assert world.get_vss("mine") is not None
