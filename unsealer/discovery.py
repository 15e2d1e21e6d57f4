"""Which Vault pods to look at, and when: the pod watch, its triggers, and who counts as Vault.

Labels are not identity: anyone who may create a pod in Vault's namespace can give it Vault's
labels. So a pod is a *candidate* only when the API server says the configured StatefulSet
controls it (a controller ownerReference carrying the live StatefulSet's uid) and its name is
one the StatefulSet would give (``{statefulset}-{ordinal}``, ordinal below ``replicas``); and
the server at its IP must then prove, over TLS, the pod's stable DNS name
(``{pod}.{service}.{namespace}.svc``, ``service`` being the StatefulSet's ``serviceName``).
Anything else wearing Vault's labels is reported and never spoken to.

A sealed Vault pod is not Ready, and the Service routes only to Ready pods, so the unsealer
watches the pods themselves and talks to each one at its own address. A pod deserves a look
when something about it suggests it may have restarted sealed:

- it appeared (a new pod, or the unsealer itself just started);
- a container restarted (``restartCount`` went up) — the pod object and its name stay the
  same, which is the case bank-vaults#259 missed;
- its IP changed (deleted and recreated by the StatefulSet);
- it stopped being Ready.

None of these catch a Vault that seals itself without restarting (hashicorp/vault#11144);
the periodic ``sys/seal-status`` poll does, and is scheduled by the service, not here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from plumbing.kube import JSON
from plumbing.watching import Change

DEFAULT_SELECTOR = "app.kubernetes.io/name=vault,component=server"
DEFAULT_ADDRESS = "https://{ip}:8200"
DEFAULT_STATEFULSET = "vault"
#: The name a pod's certificate must carry: ``{pod}``, ``{service}``, ``{namespace}``.
DEFAULT_SERVER_NAME = "{pod}.{service}.{namespace}.svc"

_ORDINAL = re.compile(r"0|[1-9][0-9]*")


@dataclass(frozen=True)
class StatefulSet:
    """What identity needs of the live StatefulSet: its uid, size and governing Service."""

    namespace: str
    name: str
    uid: str
    replicas: int
    service: str

    @classmethod
    def from_object(cls, obj: JSON) -> StatefulSet:
        metadata, spec = obj.get("metadata") or {}, obj.get("spec") or {}
        replicas = spec.get("replicas")
        return cls(
            namespace=metadata.get("namespace") or "",
            name=metadata["name"],
            uid=metadata.get("uid") or "",
            replicas=1 if replicas is None else int(replicas),
            service=spec.get("serviceName") or "",
        )

    def why_not_member(self, pod: JSON) -> str | None:
        """Why ``pod`` is not one of this StatefulSet's pods, or None when it is."""
        metadata = pod.get("metadata") or {}
        controllers = [ref for ref in metadata.get("ownerReferences") or []
                       if ref.get("controller")]
        if not controllers:
            return "it has no controller (no controlling ownerReference)"
        ref = controllers[0]
        if ref.get("kind") != "StatefulSet" or ref.get("uid") != self.uid:
            return (f"its controller is {ref.get('kind')} {ref.get('name')!r} (uid"
                    f" {ref.get('uid')}), not StatefulSet {self.name!r} (uid {self.uid})")
        name = str(metadata.get("name") or "")
        prefix, _, ordinal = name.rpartition("-")
        if prefix != self.name or not _ORDINAL.fullmatch(ordinal):
            return f"its name is not {self.name}-<ordinal>"
        if int(ordinal) >= self.replicas:
            return f"ordinal {ordinal} is not below the StatefulSet's {self.replicas} replicas"
        return None


@dataclass(frozen=True)
class VaultPod:
    namespace: str
    name: str
    uid: str
    ip: str
    restarts: int
    ready: bool

    @classmethod
    def from_object(cls, pod: JSON) -> VaultPod:
        metadata, status = pod.get("metadata") or {}, pod.get("status") or {}
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
        return cls(
            namespace=metadata.get("namespace") or "",
            name=metadata["name"],
            uid=metadata.get("uid") or "",
            ip=status.get("podIP") or "",
            restarts=sum(int(c.get("restartCount") or 0) for c in
                         status.get("containerStatuses") or []),
            ready=ready,
        )

    def address(self, template: str) -> str:
        """The pod's Vault address from a template with ``{ip}``, ``{pod}``, ``{namespace}``."""
        return template.format(ip=self.ip, pod=self.name, namespace=self.namespace)

    def server_name(self, template: str, *, service: str) -> str:
        """The DNS name the pod's certificate must carry (``{pod}``, ``{service}``,
        ``{namespace}``)."""
        return template.format(pod=self.name, service=service, namespace=self.namespace)


def why_look(change: Change) -> str | None:
    """The reason a pod change deserves a seal-status check, or None."""
    if change.type == "DELETED":
        return None
    now = VaultPod.from_object(change.object)
    if not now.ip:
        return None  # nothing to talk to yet; the change that assigns the IP will come
    if change.old is None:
        return "pod seen"
    before = VaultPod.from_object(change.old)
    if now.uid != before.uid:
        return "pod recreated"
    if now.ip != before.ip:
        return "pod IP changed"
    if now.restarts > before.restarts:
        return "container restarted"
    if before.ready and not now.ready:
        return "pod not ready"
    return None


def on_pod_change(look: Callable[[str, str], None]) -> Callable[[Change], None]:
    """An informer handler calling ``look(pod_name, reason)`` when a pod deserves a look."""

    def handle(change: Change) -> None:
        reason = why_look(change)
        if reason is not None:
            look(change.object["metadata"]["name"], reason)

    return handle
