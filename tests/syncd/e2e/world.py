"""The world of the end-to-end tests: both emulations, syncd running with its real RBAC.

syncd runs in the test's event loop (its Vault calls go through its own thread pool, so the
emulations keep serving). It authenticates to the Kubernetes emulation with a token of the
``vault-syncd`` ServiceAccount bound by ``manifests/syncd/rbac.yaml``, so every test also proves
that the RBAC grants enough; ``test_rbac`` proves it grants nothing more. Logs and spans are
captured so tests can grep them for secret values.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import io
import json
import secrets
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hvac
import yaml
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from plumbing.kube import SECRETS
from plumbing.kube import Kube as KubeClient
from plumbing.kube import connect as kube_connect
from syncd.auth_globals import VAULT_AUTH_GLOBAL
from syncd.health import HealthServer
from syncd.leadership import LEASES
from syncd.operator import Settings, run
from syncd.specs import VAULT_AUTH, VAULT_CONNECTION, VAULT_STATIC_SECRET
from syncd.transformations import SECRET_TRANSFORMATION
from testbed.kube import Kube
from testbed.vault import RunningVault

ROOT = Path(__file__).resolve().parents[3]
GROUP_VERSION = "secrets.vault-syncd.dev/v1beta1"
OPERATOR_NS = "vault-syncd"
APP_NS = "app"
SECRET_VALUE = "s3cr3t-Value-of-the-e2e-tests-7f1c"

POLICY = """
path "secret/data/kv-secret/*" { capabilities = ["read"] }
path "secret/data/other/*" { capabilities = ["read"] }
path "kv1/*" { capabilities = ["read"] }
"""
#: The identity syncd talks to the Kubernetes emulation as (the ServiceAccount of rbac.yaml).
SYNCD_USER = f"system:serviceaccount:{OPERATOR_NS}:vault-syncd"
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
FINGERPRINTS = "secrets.vault-syncd.dev/fingerprints"
#: Leader-election timings for the tests: short, whole seconds (leaseDurationSeconds is an int),
#: in the same order as controller-runtime's 15 s / 10 s / 2 s.
LEASE_TIMINGS = {"lease_duration_seconds": 2.0, "renew_deadline_seconds": 1.5,
                 "retry_period_seconds": 0.25}


#: The ClusterRoles that give a namespace's ``edit``/``admin``/``view`` users our kinds, by
#: aggregation: the shipped file itself, so the tenant tests prove what a cluster gets.
TENANT_ROLES = ROOT / "manifests/syncd/tenant-roles.yaml"
_TENANT_KINDS = {"Secret": SECRETS, "VaultConnection": VAULT_CONNECTION,
                 "VaultAuth": VAULT_AUTH, "VaultStaticSecret": VAULT_STATIC_SECRET,
                 "VaultAuthGlobal": VAULT_AUTH_GLOBAL,
                 "SecretTransformation": SECRET_TRANSFORMATION}


@dataclass
class Tenant:
    """A namespace user: a ServiceAccount bound to one built-in ClusterRole (``edit``) in
    ``namespace`` and to nothing else, acting through its own token and the API server's RBAC."""

    kube: KubeClient
    namespace: str

    async def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create ``obj`` (``kind`` one of ours or Secret; in ``metadata.namespace``, else the
        tenant's namespace)."""
        resource = _TENANT_KINDS[obj["kind"]]
        obj = {"apiVersion": resource.api_version, **obj}
        namespace = obj["metadata"].get("namespace", self.namespace)
        return await self.kube.request("POST", resource.path(namespace=namespace), body=obj)

    async def delete(self, kind: str, name: str) -> None:
        await self.kube.request(
            "DELETE", _TENANT_KINDS[kind].path(namespace=self.namespace, name=name))

    async def create_vss(self, name: str, **spec: Any) -> dict[str, Any]:
        """A VaultStaticSecret of the tenant's namespace, with ``World.vss``'s defaults."""
        return await self.create({"kind": "VaultStaticSecret", "metadata": {"name": name},
                                  "spec": _vss_spec(name, **spec)})

    async def annotate_secret(self, name: str, annotations: dict[str, str]) -> dict[str, Any]:
        """Annotate a Secret of the tenant's namespace (``edit`` may)."""
        return await self.kube.request(
            "PATCH", SECRETS.path(namespace=self.namespace, name=name),
            body={"metadata": {"annotations": annotations}},
            content_type="application/merge-patch+json",
        )


def _vss_spec(name: str, **spec: Any) -> dict[str, Any]:
    """A VaultStaticSecret's spec: the tests' defaults (``kv-secret/info``, 1 s, a Secret of the
    same name) overridden by ``spec``."""
    return {"mount": "secret", "path": "kv-secret/info", "type": "kv-v2", "refreshAfter": "1s",
            "destination": {"name": name, "create": True}, **spec}


def _aggregated(kube: Kube, roles: list[dict[str, Any]]) -> bool:
    """Whether the cluster's aggregated roles carry the rules of ``roles`` (the aggregation
    controller's work, a moment after the roles are applied, as in a cluster)."""
    for role in roles:
        labels = role["metadata"].get("labels") or {}
        for target in ("edit", "admin", "view"):
            if labels.get(f"rbac.authorization.k8s.io/aggregate-to-{target}") != "true":
                continue
            stored = (kube.admin.get("rbac.authorization.k8s.io/v1", "ClusterRole", target)
                      or {}).get("rules") or []
            if any(rule not in stored for rule in role["rules"]):
                return False
    return True


@dataclass
class World:
    kube: Kube
    vault: RunningVault
    root_token: str
    logs: io.StringIO
    spans: InMemorySpanExporter
    kubeconfig: Path
    settings: Settings
    unseal_keys: list[bytes] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    stops: list[asyncio.Event] = field(default_factory=list)
    #: Every secret value a test put in Vault: none may show up in logs, spans, Events or
    #: statuses (checked when the world ends, see conftest.py).
    secret_values: set[str] = field(default_factory=lambda: {SECRET_VALUE})
    #: The metrics syncd recorded (the fixture configures telemetry with this reader).
    metrics: InMemoryMetricReader | None = None
    #: The probe servers of the running syncd instances that serve them.
    probes: list[HealthServer] = field(default_factory=list)
    #: Every JWT and Vault token issued since :meth:`kubernetes_auth` (in full).
    credentials: list[str] = field(default_factory=list)

    # --- secret values ------------------------------------------------------------------

    def value(self, label: str) -> str:
        """A fresh, recognisable secret value (registered for the leak check)."""
        value = f"s3cr3t-{label}-{secrets.token_hex(6)}"
        self.secret_values.add(value)
        return value

    def remember(self, data: Any) -> None:
        """Register the string leaves of ``data`` (long ones by a distinctive prefix)."""
        if isinstance(data, dict):
            for item in data.values():
                self.remember(item)
        elif isinstance(data, list | tuple):
            for item in data:
                self.remember(item)
        elif isinstance(data, str) and len(data) >= 8:
            self.secret_values.add(data[:64])

    def leaks(self, texts: Iterable[str]) -> list[str]:
        """The registered secret values found in any of ``texts``."""
        texts = list(texts)
        return sorted(v for v in self.secret_values if any(v in t for t in texts))

    # --- Vault --------------------------------------------------------------------------

    def vault_client(self, token: str | None = None) -> hvac.Client:
        return hvac.Client(url=self.vault.address, token=token or self.root_token)

    async def vault_call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def write_kv(self, path: str, data: dict[str, Any], *, mount: str = "secret") -> int:
        self.remember(data)
        client = self.vault_client()
        reply = await self.vault_call(
            client.secrets.kv.v2.create_or_update_secret, path=path, secret=data,
            mount_point=mount,
        )
        return int(reply["data"]["version"])

    async def write_kv1(self, path: str, data: dict[str, Any], *, mount: str = "kv1") -> None:
        self.remember(data)
        client = self.vault_client()
        await self.vault_call(
            client.secrets.kv.v1.create_or_update_secret, path=path, secret=data,
            mount_point=mount,
        )

    async def set_policy(self, policy: str) -> None:
        """Replace the ``syncd`` Vault policy (the one syncd's token carries)."""
        client = self.vault_client()
        await self.vault_call(client.sys.create_or_update_policy, name="syncd", policy=policy)

    async def new_vault_token(self) -> str:
        """A fresh syncd token, put into the Secret the default VaultAuth reads."""
        token = await _child_token(self.vault, self.root_token)
        self.apply({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "vault-token", "namespace": APP_NS},
            "type": "secrets.vault-syncd.dev/vault-token",
            "stringData": {"token": token},
        })
        return token

    def vault_token(self) -> str:
        secret = self.kube.admin.get("v1", "Secret", "vault-token", APP_NS) or {}
        return base64.b64decode(secret["data"]["token"]).decode()

    def vault_reads(self) -> int:
        return self.vault.admin.request_count(method="GET")

    # --- Kubernetes auth (VaultAuth method: kubernetes) ---------------------------------

    async def kubernetes_auth(
        self, name: str = "k8s", *, role: str = "app-reader",
        service_accounts: Iterable[str] = ("app-reader",), service_account: str = "app-reader",
        token_ttl: str = "1h", audience: str = "vault",
    ) -> dict[str, Any]:
        """Vault's kubernetes auth against the Kubernetes emulation, and a VaultAuth using it.

        As a cluster would have it: Vault reviews tokens with the JWT of a reviewer
        ServiceAccount bound to ``system:auth-delegator``; the Vault ``role`` (policy
        ``syncd``) allows ``service_accounts`` of namespace ``app``; the VaultAuth ``name`` in
        ``app`` logs in as ``service_account``. Called again, it only adds the role and the
        VaultAuth. Every JWT and Vault token issued from then on is registered as a secret
        value (the leak check of conftest.py looks for them).
        """
        client = self.vault_client()
        methods = await self.vault_call(client.sys.list_auth_methods)
        if "kubernetes/" not in (methods.get("data") or methods):
            self._record_credentials()
            await self.vault_call(client.sys.enable_auth_method, method_type="kubernetes")
            self.kube.admin.ensure_service_account("kube-system", "vault-reviewer")
            self.kube.admin.grant("kube-system", "vault-reviewer", "system:auth-delegator")
            reviewer = self.kube.admin.mint_token("kube-system", "vault-reviewer")
            await self.vault_call(client.auth.kubernetes.configure,
                                  kubernetes_host=self.kube.url, token_reviewer_jwt=reviewer)
        await self.vault_call(
            client.auth.kubernetes.create_role, name=role,
            bound_service_account_names=list(service_accounts),
            bound_service_account_namespaces=[APP_NS], policies=["syncd"], ttl=token_ttl,
            audience=audience,
        )
        self.kube.admin.ensure_service_account(APP_NS, service_account)
        return self.apply({
            "apiVersion": GROUP_VERSION, "kind": "VaultAuth",
            "metadata": {"name": name, "namespace": APP_NS},
            "spec": {"method": "kubernetes", "mount": "kubernetes", "kubernetes": {
                "role": role, "serviceAccount": service_account, "audiences": [audience]}},
        })

    def _record_credentials(self) -> None:
        """Register every JWT the Kubernetes emulation signs and every Vault token Vault makes
        (wrapping the two emulations' issuers on their instances; nothing else changes)."""
        signer = self.kube.cluster.authn.signer
        issue = signer.issue
        tokens = self.vault.admin.core.tokens
        create = tokens.create

        def issue_recorded(**kwargs: Any) -> Any:
            token, expires = issue(**kwargs)
            self.credentials.append(token)
            self.secret_values.add(token.rsplit(".", 1)[-1])  # the signature: unique
            return token, expires

        def create_recorded(request: Any) -> Any:
            entry = create(request)
            self.credentials.append(entry.id)
            self.secret_values.add(entry.id)
            return entry

        signer.issue = issue_recorded  # type: ignore[method-assign]
        tokens.create = create_recorded  # type: ignore[method-assign]

    def logins(self, mount: str = "kubernetes") -> int:
        """Vault login requests at ``auth/<mount>`` (answered ones: the testbed counts a request
        once its reply is sent)."""
        return self.vault.admin.request_count(method="POST", path=f"/v1/auth/{mount}/login")

    def token_requests(self) -> list[Any]:
        """syncd's TokenRequests (``create`` on ``serviceaccounts/token``)."""
        return [r for r in self.syncd_requests(["create"])
                if r.resource == "serviceaccounts/token"]

    @contextlib.asynccontextmanager
    async def tenant(self, *, namespace: str = APP_NS, name: str = "tenant",
                     role: str = "edit") -> AsyncIterator[Tenant]:
        """Act as a namespace user: ServiceAccount ``name`` of ``namespace``, bound there to the
        built-in ClusterRole ``role`` only, with its own token. What it may do with our kinds
        comes from the shipped tenant roles, aggregated into ``role`` by the cluster."""
        roles = self.kube.admin.apply_yaml(TENANT_ROLES.read_text())
        await self.eventually(lambda: _aggregated(self.kube, roles),
                              message="tenant roles aggregated into edit/admin/view")
        self.kube.admin.ensure_service_account(namespace, name)
        self.kube.admin.grant(namespace, name, role, in_namespace=namespace)
        token = self.kube.admin.mint_token(namespace, name)
        kubeconfig = self.kube.write_kubeconfig(
            self.kubeconfig.with_name(f"{name}-{namespace}"), token=token, namespace=namespace)
        client = await kube_connect(kubeconfig=str(kubeconfig))
        try:
            yield Tenant(client, namespace)
        finally:
            await client.close()

    # --- Kubernetes ---------------------------------------------------------------------

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        return self.kube.admin.apply(obj)

    def vss(
        self, name: str, *, namespace: str = APP_NS, labels: dict[str, str] | None = None,
        **spec: Any,
    ) -> dict[str, Any]:
        body = _vss_spec(name, **spec)
        return self.apply({
            "apiVersion": GROUP_VERSION, "kind": "VaultStaticSecret",
            "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
            "spec": body,
        })

    def get_vss(self, name: str, namespace: str = APP_NS) -> dict[str, Any] | None:
        return self.kube.admin.get(GROUP_VERSION, "VaultStaticSecret", name, namespace)

    def condition(self, name: str, kind: str, namespace: str = APP_NS) -> dict[str, Any]:
        obj = self.get_vss(name, namespace) or {}
        for entry in (obj.get("status") or {}).get("conditions") or []:
            if entry["type"] == kind:
                return dict(entry)
        return {}

    def secret(self, name: str, namespace: str = APP_NS) -> dict[str, Any] | None:
        return self.kube.admin.get("v1", "Secret", name, namespace)

    def secret_data(self, name: str, namespace: str = APP_NS) -> dict[str, str] | None:
        secret = self.secret(name, namespace)
        if secret is None:
            return None
        return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}

    def deployment(self, name: str, *, secret: str, namespace: str = APP_NS) -> dict[str, Any]:
        return self.apply({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{
                        "name": "app", "image": "nginx:1.27",
                        "envFrom": [{"secretRef": {"name": secret}}],
                    }]},
                },
            },
        })

    def events(
        self, reason: str, namespace: str = APP_NS, *, about: str | None = None,
        type: str | None = None,
    ) -> list[dict[str, Any]]:
        """Events with ``reason`` (about the object named ``about``, of ``type``)."""
        return [e for e in self.kube.admin.list("v1", "Event", namespace)
                if e.get("reason") == reason
                and (about is None or e["involvedObject"].get("name") == about)
                and (type is None or e.get("type") == type)]

    def all_events(self) -> list[dict[str, Any]]:
        return self.kube.admin.list("v1", "Event")

    def all_vss(self) -> list[dict[str, Any]]:
        return self.kube.admin.list(GROUP_VERSION, "VaultStaticSecret")

    def status(self, name: str, namespace: str = APP_NS) -> dict[str, Any]:
        return dict((self.get_vss(name, namespace) or {}).get("status") or {})

    async def wait_condition(
        self, name: str, kind: str, *, status: str, reason: str | None = None,
        deadline: float = 10.0,
    ) -> dict[str, Any]:
        """Wait for condition ``kind`` of VaultStaticSecret ``name`` to be ``status``/``reason``."""
        def ok() -> dict[str, Any] | None:
            found = self.condition(name, kind)
            if found.get("status") == status and reason in (None, found.get("reason")):
                return found
            return None
        return dict(await self.eventually(
            ok, deadline=deadline,
            message=f"{name}: {kind}={status} {reason or ''} "
                    f"(now {self.status(name).get('conditions')})",
        ))

    async def synced(self, name: str, *, deadline: float = 10.0) -> dict[str, str]:
        """Wait for the first sync of ``name``; the Secret's data."""
        await self.wait_condition(name, "Ready", status="True", deadline=deadline)
        return self.secret_data(name) or {}

    def syncd_requests(self, verbs: Iterable[str] | None = None) -> list[Any]:
        """The Kubernetes requests syncd made (the testbed's request log)."""
        wanted = set(verbs) if verbs is not None else None
        return [r for r in self.kube.requests.log
                if r.user == SYNCD_USER and (wanted is None or r.verb in wanted)]

    def syncd_writes(self) -> list[Any]:
        return self.syncd_requests(WRITE_VERBS)

    def workload(self, kind: str, name: str, *, secret: str | None = None,
                 pod_spec: dict[str, Any] | None = None, labels: dict[str, str] | None = None,
                 paused: bool = False) -> dict[str, Any]:
        """A Deployment, StatefulSet or DaemonSet whose pods use ``secret`` (envFrom) or
        run ``pod_spec``."""
        spec = pod_spec or {"containers": [{
            "name": "app", "image": "nginx:1.27",
            **({"envFrom": [{"secretRef": {"name": secret}}]} if secret else {}),
        }]}
        body: dict[str, Any] = {
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": spec},
        }
        if kind != "DaemonSet":
            body["replicas"] = 1
        if kind == "StatefulSet":
            body["serviceName"] = name
        if paused:
            body["paused"] = True
        return self.apply({
            "apiVersion": "apps/v1", "kind": kind,
            "metadata": {"name": name, "namespace": APP_NS,
                         "labels": {"app": name, **(labels or {})}},
            "spec": body,
        })

    def template_annotations(self, name: str, kind: str = "Deployment") -> dict[str, str]:
        obj = self.kube.admin.get("apps/v1", kind, name, APP_NS) or {}
        return dict(obj["spec"]["template"]["metadata"].get("annotations") or {})

    def restarts(self, name: str, kind: str = "Deployment") -> int:
        """How many times syncd patched the workload (its requests, counted by the testbed)."""
        plural = kind.lower() + "s"
        return sum(
            1 for r in self.kube.requests.log
            if r.verb == "patch" and r.resource.split(".")[0] == plural and r.name == name
        )

    # --- syncd --------------------------------------------------------------------------

    def start_syncd(self, settings: Settings | None = None) -> asyncio.Task[None]:
        stop = asyncio.Event()
        self.stops.append(stop)
        task = asyncio.create_task(run(settings or self.settings, stop, health=self.probes))
        self.tasks.append(task)
        return task

    async def stop_one(self, task: asyncio.Task[None], *, crash: bool = False) -> None:
        """Stop one instance: cleanly (SIGTERM), or as a crash would (cancelled, no goodbye)."""
        index = self.tasks.index(task)
        stop = self.stops.pop(index)
        self.tasks.pop(index)
        if crash:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        else:
            stop.set()
            await asyncio.wait_for(task, 15)

    # --- replicas and leader election ---------------------------------------------------

    def replica(self, name: str, **changes: Any) -> Settings:
        """Settings of a syncd replica with leader election on, talking to Kubernetes as the
        ServiceAccount ``name`` — bound to the same roles as ``vault-syncd`` by rbac.yaml, so
        the testbed's request log tells the replicas apart."""
        bindings = []
        for document in yaml.safe_load_all((ROOT / "manifests/syncd/rbac.yaml").read_text()):
            if document and document["kind"] in ("ClusterRoleBinding", "RoleBinding"):
                document["metadata"]["name"] += f"-{name}"
                bindings.append(document)
        return self._bound(name, bindings, **changes)

    def namespaced(self, name: str, *, watch: Iterable[str], **changes: Any) -> Settings:
        """Settings of syncd in namespaced mode (``--watch-namespace``), talking to Kubernetes
        as the ServiceAccount ``name`` bound only by the Roles of manifests/syncd/namespaced/:
        those of its own namespace, and a copy of watched-namespace.yaml per namespace of
        ``watch``. Leader election on, with the tests' timings."""
        watched = tuple(watch)
        directory = ROOT / "manifests" / "syncd" / "namespaced"
        documents = [d for d in yaml.safe_load_all((directory / "rbac.yaml").read_text())
                     if d and d["kind"] != "ServiceAccount"]
        for namespace in watched:
            for document in yaml.safe_load_all((directory / "watched-namespace.yaml").read_text()):
                if document:
                    document["metadata"]["namespace"] = namespace
                    documents.append(document)
        return self._bound(name, documents, watch_namespaces=watched, **changes)

    def _bound(self, name: str, documents: list[dict[str, Any]], **changes: Any) -> Settings:
        """Apply ``documents`` with every binding's subject made the ServiceAccount ``name``;
        settings of syncd talking to Kubernetes as it, leader election on."""
        self.kube.admin.apply({"apiVersion": "v1", "kind": "ServiceAccount",
                               "metadata": {"name": name, "namespace": OPERATOR_NS}})
        for document in documents:
            if document["kind"] in ("ClusterRoleBinding", "RoleBinding"):
                document["subjects"] = [{"kind": "ServiceAccount", "name": name,
                                         "namespace": OPERATOR_NS}]
            self.kube.admin.apply(document)
        token = self.kube.admin.mint_token(OPERATOR_NS, name)
        kubeconfig = self.kube.write_kubeconfig(self.kubeconfig.with_name(name), token=token)
        return dataclasses.replace(
            self.settings, kubeconfig=str(kubeconfig), identity=name, leader_elect=True,
            **{**LEASE_TIMINGS, **changes},
        )

    def lease_holder(self) -> str | None:
        lease = self.kube.admin.get(f"{LEASES.group}/{LEASES.version}", "Lease", "vault-syncd",
                                    OPERATOR_NS)
        return None if lease is None else (lease.get("spec") or {}).get("holderIdentity")

    def requests_of(self, user: str, *, leases: bool = False) -> list[Any]:
        """The Kubernetes requests of ``user`` (those on the Lease only with ``leases``)."""
        return [r for r in self.kube.requests.log if r.user == user
                and (leases or not r.resource.startswith("leases."))]

    def metric(self, name: str) -> dict[tuple[tuple[str, Any], ...], float]:
        """The current points of metric ``name``: sorted attributes -> value (sum, gauge, or
        count for a histogram)."""
        assert self.metrics is not None
        data = self.metrics.get_metrics_data()
        points: dict[tuple[tuple[str, Any], ...], float] = {}
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for found in scope.metrics:
                    if found.name != name:
                        continue
                    for point in found.data.data_points:
                        key = tuple(sorted((point.attributes or {}).items()))
                        value = getattr(point, "value", None)
                        points[key] = float(value if value is not None
                                            else getattr(point, "count", 0))
        return points

    async def wait_started(self, count: int = 1) -> None:
        """Wait until syncd has logged ``ready`` ``count`` times (caches listed, queue on)."""
        await self.eventually(
            lambda: self.logs.getvalue().count('"event": "ready"') >= count,
            message=f"syncd ready x{count}",
        )

    def spans_named(self, name: str) -> list[Any]:
        return [s for s in self.spans.get_finished_spans() if s.name == name]

    async def stop_syncd(self) -> None:
        for stop in self.stops:
            stop.set()
        await asyncio.wait_for(asyncio.gather(*self.tasks), 15)
        self.tasks.clear()
        self.stops.clear()

    async def eventually(
        self, predicate: Callable[[], Any], *, deadline: float = 10.0, message: str = "condition"
    ) -> Any:
        return await self.kube.wait_for(predicate, timeout=deadline, message=message)

    def captured(self) -> str:
        spans = "\n".join(
            json.dumps({"name": s.name, "attributes": dict(s.attributes or {}),
                        "events": [dict(e.attributes or {}) for e in s.events],
                        "status": str(s.status.description)})
            for s in self.spans.get_finished_spans()
        )
        return self.logs.getvalue() + "\n" + spans


async def _bootstrap_vault(vault: RunningVault) -> tuple[str, list[bytes]]:
    """A ready Vault with the ``syncd`` policy: the root token and the unseal keys."""
    init = vault.admin.bootstrap(shares=1, threshold=1, kv_v2_path="secret")
    client = hvac.Client(url=vault.address, token=init.root_token)
    await asyncio.to_thread(client.sys.create_or_update_policy, name="syncd", policy=POLICY)
    return init.root_token, list(init.keys)


async def _child_token(vault: RunningVault, root_token: str) -> str:
    client = hvac.Client(url=vault.address, token=root_token)
    reply = await asyncio.to_thread(client.auth.token.create, policies=["syncd"], ttl="24h")
    return str(reply["auth"]["client_token"])


def _establish_crds(kube: Kube) -> None:
    for path in sorted((ROOT / "manifests" / "crds").glob("*.yaml")):
        kube.admin.apply_yaml(path.read_text())
