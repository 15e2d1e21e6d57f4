"""The Python API tests use: ``running_kube()`` and the ``Kube`` handle it yields.

    async with running_kube(bookmark_interval=0.2) as kube:
        path = kube.write_kubeconfig(tmp_path / "kubeconfig")
        token = kube.admin.mint_token("syncd", "syncd", audiences=["vault"])
        kube.admin.apply({"apiVersion": "v1", "kind": "Secret", ...})
        kube.controllers.disable("gc"); kube.kubelet.restart("vault", "vault-0")
        kube.faults.error(503, verbs=["patch"], resource="secrets", times=1)
        assert kube.requests.count("get", "secrets") == 0

The admin handle writes in-process through the same registry as HTTP requests (same defaulting,
validation, RVs and watch events) but is not counted as API requests.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from testbed.kube import errors
from testbed.kube.auth import impersonated, token_request
from testbed.kube.cluster import CONTROLLERS, SEED_NAMESPACES, Cluster, Settings
from testbed.kube.controllers import ControllerManager
from testbed.kube.kinds import ResourceType
from testbed.kube.kubelet import Kubelet
from testbed.kube.meta import Obj
from testbed.kube.rbac import Attributes
from testbed.kube.registry import ListQuery, WriteOptions
from testbed.kube.server import Server
from testbed.kube.tokens import User


class Admin:
    """Privileged in-process access to the emulated cluster."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._opts = WriteOptions(field_manager="testbed-admin")

    # -- lookups -------------------------------------------------------------------------------
    def resource(self, api_version: str, kind: str) -> ResourceType:
        rt = self.cluster.catalog.by_kind(api_version, kind)
        if rt is None:
            raise errors.bad_request(f'no matches for kind "{kind}" in version "{api_version}"')
        return rt

    def _rt_of(self, obj: Obj) -> ResourceType:
        return self.resource(obj.get("apiVersion", ""), obj.get("kind", ""))

    # -- object access -------------------------------------------------------------------------
    def get(self, api_version: str, kind: str, name: str, namespace: str = "") -> Obj | None:
        rt = self.resource(api_version, kind)
        try:
            return self.cluster.registry.get(rt, namespace, name)
        except errors.ApiError as exc:
            if exc.code == 404:
                return None
            raise

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        *,
        label_selector: str = "",
        field_selector: str = "",
    ) -> builtins.list[Obj]:
        rt = self.resource(api_version, kind)
        listed = self.cluster.registry.list(
            rt, namespace, ListQuery(label_selector, field_selector)
        )
        return [{"kind": rt.kind, "apiVersion": rt.api_version, **i} for i in listed["items"]]

    def create(self, obj: Obj, *, namespace: str = "") -> Obj:
        rt = self._rt_of(obj)
        ns = (
            namespace
            or obj.get("metadata", {}).get("namespace", "")
            or ("default" if rt.namespaced else "")
        )
        return self.cluster.registry.create(rt, ns, obj, opts=self._opts).body

    def update(self, obj: Obj) -> Obj:
        rt = self._rt_of(obj)
        md = obj.get("metadata", {})
        return self.cluster.registry.update(
            rt, md.get("namespace", ""), md["name"], obj, opts=self._opts
        ).body

    def update_status(self, obj: Obj) -> Obj:
        rt = self._rt_of(obj)
        md = obj.get("metadata", {})
        return self.cluster.registry.update(
            rt, md.get("namespace", ""), md["name"], obj, opts=self._opts, subresource="status"
        ).body

    def apply(self, obj: Obj, *, field_manager: str = "testbed-admin", force: bool = True) -> Obj:
        """Server-side apply (create or update) of one object."""
        rt = self._rt_of(obj)
        md = obj.get("metadata", {})
        ns = md.get("namespace", "") or ("default" if rt.namespaced else "")
        opts = WriteOptions(field_manager=field_manager, force=force)
        return self.cluster.registry.patch(
            rt,
            ns,
            md["name"],
            json.dumps(obj).encode(),
            content_type="application/apply-patch+yaml",
            opts=opts,
        ).body

    def apply_yaml(self, text: str, **kwargs: Any) -> builtins.list[Obj]:
        return [self.apply(doc, **kwargs) for doc in yaml.safe_load_all(text) if doc]

    def patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        patch: Any,
        *,
        namespace: str = "",
        content_type: str = "application/merge-patch+json",
        subresource: str = "",
    ) -> Obj:
        rt = self.resource(api_version, kind)
        return self.cluster.registry.patch(
            rt,
            namespace,
            name,
            json.dumps(patch).encode(),
            content_type=content_type,
            opts=self._opts,
            subresource=subresource,
        ).body

    def delete(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str = "",
        *,
        propagation_policy: str | None = None,
        grace_period_seconds: int | None = None,
    ) -> Obj | None:
        rt = self.resource(api_version, kind)
        options: Obj = {}
        if propagation_policy:
            options["propagationPolicy"] = propagation_policy
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        try:
            return self.cluster.registry.delete(
                rt, namespace, name, options=options, opts=self._opts
            ).body
        except errors.ApiError as exc:
            if exc.code == 404:
                return None
            raise

    # -- namespaces, tokens, users -------------------------------------------------------------
    def create_namespace(self, name: str, labels: dict[str, str] | None = None) -> Obj:
        """Create a namespace and (as the serviceaccount controller soon would) its default SA."""
        created = self.create(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": name, "labels": labels or {}},
            }
        )
        if "serviceaccount" in self.cluster.settings.controllers:
            self.ensure_service_account(name, "default")
        return created

    def ensure_service_account(self, namespace: str, name: str) -> Obj:
        existing = self.get("v1", "ServiceAccount", name, namespace)
        if existing is not None:
            return existing
        if self.get("v1", "Namespace", namespace) is None:
            self.create_namespace(namespace)
        return self.create(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": name, "namespace": namespace},
            }
        )

    def mint_token(
        self,
        namespace: str,
        service_account: str,
        *,
        audiences: builtins.list[str] | None = None,
        expiration_seconds: int = 3600,
        pod: str | None = None,
        create: bool = True,
    ) -> str:
        """A TokenRequest-issued JWT for a ServiceAccount (created first if ``create``)."""
        if create:
            self.ensure_service_account(namespace, service_account)
        spec: Obj = {"expirationSeconds": expiration_seconds}
        if audiences:
            spec["audiences"] = audiences
        if pod:
            live = self.get("v1", "Pod", pod, namespace)
            spec["boundObjectRef"] = {
                "kind": "Pod",
                "apiVersion": "v1",
                "name": pod,
                "uid": (live or {}).get("metadata", {}).get("uid", ""),
            }
        answer = token_request(self.cluster.authn, namespace, service_account, {"spec": spec})
        return str(answer["status"]["token"])

    def add_user_token(
        self, token: str, user: str, groups: builtins.list[str] | None = None
    ) -> None:
        """Accept ``token`` as a static bearer token for ``user`` (RBAC applies to it)."""
        all_groups = [*(groups or []), "system:authenticated"]
        self.cluster.authn.static[token] = User(user, tuple(all_groups))

    def grant(
        self,
        namespace: str,
        service_account: str,
        cluster_role: str,
        *,
        in_namespace: str | None = None,
    ) -> Obj:
        """Bind a ClusterRole to a ServiceAccount (a RoleBinding if ``in_namespace``)."""
        subject = {"kind": "ServiceAccount", "name": service_account, "namespace": namespace}
        ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role}
        if in_namespace:
            return self.apply(
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "RoleBinding",
                    "metadata": {
                        "name": f"{service_account}-{cluster_role}".replace(":", "-"),
                        "namespace": in_namespace,
                    },
                    "roleRef": ref,
                    "subjects": [subject],
                }
            )
        return self.apply(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {
                    "name": f"{namespace}-{service_account}-{cluster_role}".replace(":", "-")
                },
                "roleRef": ref,
                "subjects": [subject],
            }
        )

    def can(
        self,
        user: str,
        verb: str,
        resource: str,
        *,
        namespace: str = "",
        group: str = "",
        name: str = "",
        subresource: str = "",
    ) -> bool:
        """Would RBAC allow ``user`` (e.g. "system:serviceaccount:ns:sa") to do this?"""
        subject = impersonated(user, [])
        if subject.is_admin:
            return True
        ok, _ = self.cluster.authorizer.allowed(
            subject,
            Attributes(
                verb=verb,
                api_group=group,
                resource=resource,
                subresource=subresource,
                name=name,
                namespace=namespace,
            ),
        )
        return ok

    # -- history -------------------------------------------------------------------------------
    def compact(self, api_version: str | None = None, kind: str | None = None) -> int:
        """Drop watch history (all, or one kind's): older RVs now get 410. Returns the RV."""
        storage = self.resource(api_version, kind).storage if api_version and kind else None
        self.cluster.store.compact(storage)
        return self.cluster.store.rv

    @property
    def resource_version(self) -> int:
        return self.cluster.store.rv


class Kube:
    """A running emulation: address, kubeconfig writer and the admin surfaces."""

    def __init__(
        self, cluster: Cluster, server: Server, controllers: ControllerManager, kubelet: Kubelet
    ) -> None:
        self.cluster = cluster
        self.server = server
        self.admin = Admin(cluster)
        self.controllers = controllers
        self.kubelet = kubelet
        self.faults = cluster.faults
        self.requests = cluster.requests

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def host(self) -> str:
        return self.cluster.settings.host

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def settings(self) -> Settings:
        return self.cluster.settings

    def kubeconfig(self, *, token: str | None = None, namespace: str = "default") -> Obj:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "testbed", "cluster": {"server": self.url}}],
            "users": [
                {"name": "testbed", "user": {"token": token or self.cluster.settings.admin_token}}
            ],
            "contexts": [
                {
                    "name": "testbed",
                    "context": {"cluster": "testbed", "user": "testbed", "namespace": namespace},
                }
            ],
            "current-context": "testbed",
            "preferences": {},
        }

    def write_kubeconfig(
        self, path: Path, *, token: str | None = None, namespace: str = "default"
    ) -> Path:
        """Write a kubeconfig for the admin (or for ``token``, e.g. a minted SA token)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            yaml.safe_dump(self.kubeconfig(token=token, namespace=namespace), sort_keys=False)
        )
        path.chmod(0o600)
        return path

    async def restart_server(self, *, down: float = 0.0) -> None:
        """Restart the API server with its state kept (see :meth:`Server.restart`): watches
        cut, ``down`` seconds of refused connections, then the same port, store and RVs."""
        await self.server.restart(down=down)

    def cut_watches(self) -> int:
        """Cut the connection of every open watch now (see :meth:`Server.cut_watches`)."""
        return self.server.cut_watches()

    def expire_watches(self) -> int:
        """410 mid-watch for every open watch, history forgotten (see
        :meth:`Server.expire_watches`)."""
        return self.server.expire_watches()

    async def wait_for(
        self,
        predicate: Callable[[], Any],
        *,
        timeout: float = 10.0,  # noqa: ASYNC109 - a polling helper, not an I/O call
        interval: float = 0.01,
        message: str = "condition",
    ) -> Any:
        """Poll an in-process predicate until truthy (returns its value) or raise TimeoutError."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise TimeoutError(f"timed out after {timeout}s waiting for {message}")
            await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def running_kube(
    *,
    settings: Settings | None = None,
    controllers: builtins.list[str] | tuple[str, ...] | None = None,
    disable: builtins.list[str] | tuple[str, ...] = (),
    **overrides: Any,
) -> AsyncIterator[Kube]:
    """Start the emulation on loopback; ``controllers``/``disable`` pick which controllers run.

    ``overrides`` are Settings fields (``watch_window=5``, ``bookmark_interval=0.1``, ...).
    """
    base = settings or Settings()
    enabled = frozenset(controllers if controllers is not None else base.controllers) - set(disable)
    unknown = enabled - set(CONTROLLERS)
    if unknown:
        raise ValueError(f"unknown controllers: {sorted(unknown)}; known: {CONTROLLERS}")
    base = replace(base, controllers=enabled, **overrides)
    cluster = Cluster(base)
    server = Server(cluster)
    kubelet = Kubelet(cluster)
    manager = ControllerManager(cluster, kubelet)
    await server.start()
    manager.start()
    kube = Kube(cluster, server, manager, kubelet)
    try:
        if "serviceaccount" in enabled:
            # Like waiting for a fresh cluster to settle: the seed namespaces' default accounts.
            await kube.wait_for(
                lambda: all(
                    cluster.store.get("/serviceaccounts", ns, "default") for ns in SEED_NAMESPACES
                ),
                message="default ServiceAccounts",
            )
        yield kube
    finally:
        await manager.stop()
        await server.stop()
