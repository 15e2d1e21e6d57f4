"""The resource types the emulation serves: names, scope, verbs, subresources and per-kind rules.

One ``ResourceType`` per (group, version, plural) carries everything the generic machinery needs
to treat a kind the way its apiserver strategy would: which subresources exist, when
``metadata.generation`` moves, which field selectors are legal, whether DELETE answers with the
object or a ``Status``, and how lists merge (patch-merge keys, used by strategic merge patch and
server-side apply). Custom resources get a ``ResourceType`` built from their CRD (see crds.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from testbed.kube.meta import Obj

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
GenerationRule = Literal["none", "spec", "spec+annotations", "non-metadata"]
ListType = tuple[str, tuple[str, ...]]  # ("atomic"|"set"|"map", merge keys)
ATOMIC: ListType = ("atomic", ())


def _get(obj: Obj, *path: str) -> Any:
    cur: Any = obj
    for part in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def field_getter(dotted: str) -> Callable[[Obj], str]:
    """A field-selector attribute: the value as the apiserver stringifies it (bools lower-case)."""
    parts = tuple(dotted.split("."))

    def getter(obj: Obj) -> str:
        value = _get(obj, *parts)
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    return getter


@dataclass(frozen=True)
class Subresource:
    name: str
    kind: str
    group: str = ""
    version: str = "v1"
    verbs: tuple[str, ...] = ("get", "patch", "update")


@dataclass
class ResourceType:
    """A served (group, version, resource)."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    subresources: tuple[Subresource, ...] = ()
    generation: GenerationRule = "none"
    return_deleted: bool = False
    # Extra field-selector labels beyond metadata.name / metadata.namespace.
    field_labels: dict[str, Callable[[Obj], str]] = field(default_factory=dict)
    # Where objects live in the store; two API versions of one kind share it (events).
    storage: str = ""
    custom: Any = None  # a crds.CustomResource for custom resources
    list_rules: dict[str, ListType] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.singular:
            self.singular = self.kind.lower()
        if not self.storage:
            self.storage = f"{self.group}/{self.plural}"

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def gr(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def subresource(self, name: str) -> Subresource | None:
        for sub in self.subresources:
            if sub.name == name:
                return sub
        return None

    @property
    def has_status(self) -> bool:
        return self.subresource("status") is not None

    @property
    def strategic(self) -> bool:
        """Strategic merge patch is only for built-in kinds; custom resources answer 415."""
        return self.custom is None

    def field_label(self, label: str) -> Callable[[Obj], str] | None:
        if label == "metadata.name":
            return field_getter("metadata.name")
        if label == "metadata.namespace" and self.namespaced:
            return field_getter("metadata.namespace")
        return self.field_labels.get(label)

    def list_type(self, path: tuple[str, ...]) -> ListType:
        """How the list at ``path`` (field names, no indices) merges."""
        if self.custom is not None:
            found: ListType = self.custom.list_type(path)
            return found
        return builtin_list_type(path, self.list_rules)


# Patch-merge keys of the built-in types, matched on the list's field name (and its parent's):
# the Go struct tags ``patchMergeKey`` / ``listMapKeys`` / ``listType=set`` the real server uses.
_BUILTIN_LISTS: dict[str, ListType] = {
    "containers": ("map", ("name",)),
    "initContainers": ("map", ("name",)),
    "ephemeralContainers": ("map", ("name",)),
    "env": ("map", ("name",)),
    "volumeMounts": ("map", ("mountPath",)),
    "volumeDevices": ("map", ("devicePath",)),
    "volumes": ("map", ("name",)),
    "imagePullSecrets": ("map", ("name",)),
    "ownerReferences": ("map", ("uid",)),
    "conditions": ("map", ("type",)),
    "hostAliases": ("map", ("ip",)),
    "podIPs": ("map", ("ip",)),
    "hostIPs": ("map", ("ip",)),
    "resourceClaims": ("map", ("name",)),
    "topologySpreadConstraints": ("map", ("topologyKey", "whenUnsatisfiable")),
    "secrets": ("map", ("name",)),
    "finalizers": ("set", ()),
}


def builtin_list_type(path: tuple[str, ...], extra: dict[str, ListType]) -> ListType:
    if not path:
        return ATOMIC
    name = path[-1]
    dotted = ".".join(path)
    if dotted in extra:
        return extra[dotted]
    if name == "ports":
        if len(path) >= 2 and path[-2] in ("containers", "initContainers", "ephemeralContainers"):
            return ("map", ("containerPort", "protocol"))
        if path[:1] == ("spec",):
            return ("map", ("port", "protocol"))
        return ATOMIC
    if name == "finalizers" and path != ("metadata", "finalizers"):
        return ATOMIC
    return _BUILTIN_LISTS.get(name, ATOMIC)


STATUS = Subresource("status", "")  # kind filled per type below
SCALE = Subresource("scale", "Scale", "autoscaling", "v1")


def _status(kind: str, group: str = "", version: str = "v1") -> Subresource:
    return Subresource("status", kind, group, version)


_POD_FIELDS = {
    name: field_getter(name)
    for name in (
        "status.phase",
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.podIP",
        "status.nominatedNodeName",
    )
}


def _event_fields() -> dict[str, Callable[[Obj], str]]:
    fields: dict[str, Callable[[Obj], str]] = {}
    for attr in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath"):
        fields[f"involvedObject.{attr}"] = field_getter(f"involvedObject.{attr}")
        fields[f"regarding.{attr}"] = field_getter(f"involvedObject.{attr}")
    fields["reason"] = field_getter("reason")
    fields["reportingComponent"] = field_getter("reportingComponent")
    fields["reportingController"] = field_getter("reportingComponent")
    fields["source"] = field_getter("source.component")
    fields["type"] = field_getter("type")
    return fields


def builtin_types() -> list[ResourceType]:
    """Every built-in (group, version, resource) served, in discovery order."""
    event_fields = _event_fields()
    return [
        ResourceType(
            "",
            "v1",
            "namespaces",
            "Namespace",
            False,
            short_names=("ns",),
            verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
            subresources=(
                _status("Namespace"),
                Subresource("finalize", "Namespace", verbs=("update",)),
            ),
            field_labels={"status.phase": field_getter("status.phase")},
        ),
        ResourceType(
            "", "v1", "nodes", "Node", False, short_names=("no",), subresources=(_status("Node"),)
        ),
        ResourceType(
            "", "v1", "secrets", "Secret", True, field_labels={"type": field_getter("type")}
        ),
        ResourceType("", "v1", "configmaps", "ConfigMap", True, short_names=("cm",)),
        ResourceType(
            "",
            "v1",
            "serviceaccounts",
            "ServiceAccount",
            True,
            short_names=("sa",),
            subresources=(
                Subresource("token", "TokenRequest", "authentication.k8s.io", verbs=("create",)),
            ),
            return_deleted=True,
        ),
        ResourceType(
            "",
            "v1",
            "pods",
            "Pod",
            True,
            short_names=("po",),
            categories=("all",),
            subresources=(_status("Pod"), Subresource("log", "Pod", verbs=("get",))),
            return_deleted=True,
            field_labels=_POD_FIELDS,
        ),
        ResourceType(
            "",
            "v1",
            "events",
            "Event",
            True,
            short_names=("ev",),
            field_labels=event_fields,
            storage="events",
        ),
        ResourceType(
            "",
            "v1",
            "services",
            "Service",
            True,
            short_names=("svc",),
            categories=("all",),
            subresources=(_status("Service"),),
            return_deleted=True,
        ),
        ResourceType(
            "apps",
            "v1",
            "deployments",
            "Deployment",
            True,
            short_names=("deploy",),
            categories=("all",),
            subresources=(_status("Deployment", "apps"), SCALE),
            generation="spec+annotations",
        ),
        ResourceType(
            "apps",
            "v1",
            "statefulsets",
            "StatefulSet",
            True,
            short_names=("sts",),
            categories=("all",),
            subresources=(_status("StatefulSet", "apps"), SCALE),
            generation="spec",
        ),
        ResourceType(
            "apps",
            "v1",
            "daemonsets",
            "DaemonSet",
            True,
            short_names=("ds",),
            categories=("all",),
            subresources=(_status("DaemonSet", "apps"),),
            generation="spec",
        ),
        ResourceType(
            "apps",
            "v1",
            "replicasets",
            "ReplicaSet",
            True,
            short_names=("rs",),
            categories=("all",),
            subresources=(_status("ReplicaSet", "apps"), SCALE),
            generation="spec",
            field_labels={"status.replicas": field_getter("status.replicas")},
        ),
        ResourceType("coordination.k8s.io", "v1", "leases", "Lease", True),
        # Stored and served so that manifests carrying them apply; nothing acts on them (no
        # eviction API, no network: see testbed/README.md).
        ResourceType(
            "policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True,
            short_names=("pdb",), subresources=(_status("PodDisruptionBudget", "policy"),),
            generation="spec",
        ),
        ResourceType(
            "networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True,
            short_names=("netpol",), generation="spec",
        ),
        ResourceType(
            "events.k8s.io",
            "v1",
            "events",
            "Event",
            True,
            short_names=("ev",),
            field_labels=event_fields,
            storage="events",
        ),
        ResourceType(
            "authentication.k8s.io", "v1", "tokenreviews", "TokenReview", False, verbs=("create",)
        ),
        ResourceType(
            "authorization.k8s.io",
            "v1",
            "subjectaccessreviews",
            "SubjectAccessReview",
            False,
            verbs=("create",),
        ),
        ResourceType(
            "authorization.k8s.io",
            "v1",
            "selfsubjectaccessreviews",
            "SelfSubjectAccessReview",
            False,
            verbs=("create",),
        ),
        ResourceType("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
        ResourceType(
            "rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False
        ),
        ResourceType("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
        ResourceType("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
        ResourceType(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            False,
            short_names=("crd", "crds"),
            categories=("api-extensions",),
            subresources=(_status("CustomResourceDefinition", "apiextensions.k8s.io"),),
            generation="spec",
        ),
    ]


# Kinds that are requests rather than stored objects: POST answers 201 and nothing is kept.
VIRTUAL = {"tokenreviews", "subjectaccessreviews", "selfsubjectaccessreviews"}
