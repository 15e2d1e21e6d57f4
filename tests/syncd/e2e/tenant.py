"""A namespace user, as the threat model has one: ``edit`` in one namespace, and the right to
create syncd's kinds there (what an aggregated ClusterRole gives such a user). Tests of a tenant
boundary act through this user's own client, never as the admin."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from plumbing.kube import SECRETS, Kube, connect
from syncd.specs import VAULT_STATIC_SECRET
from tests.syncd.e2e.world import APP_NS, GROUP_VERSION, World

ROLE = "vault-syncd-tenant-test"


@asynccontextmanager
async def tenant(world: World, *, namespace: str = APP_NS,
                 name: str = "tenant") -> AsyncIterator[Kube]:
    """A client of ServiceAccount ``name`` of ``namespace``, bound there to ``edit`` and to a
    role for syncd's three kinds."""
    admin = world.kube.admin
    admin.apply({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": ROLE},
        "rules": [{"apiGroups": [GROUP_VERSION.split("/")[0]],
                   "resources": ["vaultstaticsecrets", "vaultauths", "vaultconnections"],
                   "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]}],
    })
    admin.ensure_service_account(namespace, name)
    admin.grant(namespace, name, "edit", in_namespace=namespace)
    admin.grant(namespace, name, ROLE, in_namespace=namespace)
    token = admin.mint_token(namespace, name)
    kubeconfig = world.kube.write_kubeconfig(
        world.kubeconfig.with_name(f"{name}-{namespace}"), token=token, namespace=namespace)
    kube = await connect(kubeconfig=str(kubeconfig))
    try:
        yield kube
    finally:
        await kube.close()


async def create_vss(kube: Kube, name: str, *, namespace: str = APP_NS,
                     **spec: Any) -> Any:
    """A VaultStaticSecret created by the tenant (``world.vss``'s defaults)."""
    body = {"mount": "secret", "path": "kv-secret/info", "type": "kv-v2", "refreshAfter": "1s",
            "destination": {"name": name, "create": True}, **spec}
    return await kube.request("POST", VAULT_STATIC_SECRET.path(namespace=namespace), body={
        "apiVersion": GROUP_VERSION, "kind": "VaultStaticSecret",
        "metadata": {"name": name, "namespace": namespace}, "spec": body,
    })


async def annotate_secret(kube: Kube, name: str, annotations: dict[str, str], *,
                          namespace: str = APP_NS) -> Any:
    """The tenant annotates a Secret of its namespace (``edit`` may)."""
    return await kube.request(
        "PATCH", SECRETS.path(namespace=namespace, name=name),
        body={"metadata": {"annotations": annotations}},
        content_type="application/merge-patch+json",
    )
