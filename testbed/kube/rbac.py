"""RBAC authorisation over the Role/ClusterRole/RoleBinding/ClusterRoleBinding objects in the store.

Rule matching follows the RBAC authorizer: verbs, apiGroups, resources (``*``, ``res/sub``,
``*/sub``), resourceNames (a rule with names never matches a request without one: list, watch,
create), nonResourceURLs (exact or ``prefix*``), ClusterRoles bound in a namespace through a
RoleBinding, and the exact 403 message kubectl and clients print. Bindings that point at missing
roles add the ``RBAC: ... not found`` reason the real authorizer appends.

Like the real authorizer, only a role's stored ``rules`` count: an aggregated ClusterRole (one
with an ``aggregationRule``, like ``edit``) grants what the clusterrole-aggregation controller
last wrote into it (:func:`aggregated_rules`; ``controllers/rbac.py``), so a ClusterRole labelled
``aggregate-to-edit`` takes effect a moment after it is created, not at once, and not at all while
that controller is stopped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from testbed.kube.errors import ApiError, forbidden_error, qualified
from testbed.kube.meta import Obj
from testbed.kube.selectors import selector_from_dict
from testbed.kube.store import Store
from testbed.kube.tokens import User

RBAC = "rbac.authorization.k8s.io"
CLUSTER_ROLES = f"{RBAC}/clusterroles"
CLUSTER_BINDINGS = f"{RBAC}/clusterrolebindings"
ROLES = f"{RBAC}/roles"
BINDINGS = f"{RBAC}/rolebindings"


@dataclass(frozen=True)
class Attributes:
    """What a request asks to do (authorizer.Attributes)."""

    verb: str
    resource_request: bool = True
    api_group: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    namespace: str = ""
    path: str = ""


def _has(values: list[str] | None, wanted: str) -> bool:
    values = values or []
    return "*" in values or wanted in values


def _resource_matches(rule: Obj, attrs: Attributes) -> bool:
    combined = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    for resource in rule.get("resources") or []:
        if resource in ("*", combined):
            return True
        if attrs.subresource and resource == f"*/{attrs.subresource}":
            return True
    return False


def rule_allows(rule: Obj, attrs: Attributes) -> bool:
    if not _has(rule.get("verbs"), attrs.verb):
        return False
    if attrs.resource_request:
        if not _has(rule.get("apiGroups"), attrs.api_group):
            return False
        if not _resource_matches(rule, attrs):
            return False
        names = rule.get("resourceNames") or []
        return not names or attrs.name in names
    for url in rule.get("nonResourceURLs") or []:
        if url in ("*", attrs.path):
            return True
        if url.endswith("*") and attrs.path.startswith(url[:-1]):
            return True
    return False


def _subject_matches(subject: Obj, user: User, binding_ns: str) -> bool:
    kind = subject.get("kind")
    name = subject.get("name")
    if kind == "User":
        return bool(name == user.name)
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        ns = subject.get("namespace") or binding_ns
        return user.name == f"system:serviceaccount:{ns}:{name}"
    return False


def _semantic(rule: Obj) -> Obj:
    """A rule as ``equality.Semantic.DeepEqual`` compares it: absent, null and empty lists alike."""
    return {key: value for key, value in rule.items() if value}


def aggregated_rules(role: Obj, roles: Iterable[Obj]) -> list[Obj]:
    """The ``rules`` the clusterrole-aggregation controller computes for ``role`` from ``roles``.

    As kube-controller-manager's syncClusterRole: for each selector in turn, the matching
    ClusterRoles by name (the role itself skipped), their stored rules appended unless an equal
    one is already there. Aggregation is transitive only through stored rules: ``admin`` picks
    up ``edit``'s rules once they have been written into ``edit``.
    """
    name = role["metadata"]["name"]
    ordered = sorted(roles, key=lambda other: str(other["metadata"]["name"]))
    out: list[Obj] = []
    seen: list[Obj] = []
    for selector in (role.get("aggregationRule") or {}).get("clusterRoleSelectors") or []:
        matches = selector_from_dict(selector).matches
        for other in ordered:
            if other["metadata"]["name"] == name:
                continue
            if not matches(other["metadata"].get("labels") or {}):
                continue
            for rule in other.get("rules") or []:
                if _semantic(rule) not in seen:
                    seen.append(_semantic(rule))
                    out.append(rule)
    return out


def same_rules(a: list[Obj] | None, b: list[Obj] | None) -> bool:
    return [_semantic(r) for r in a or []] == [_semantic(r) for r in b or []]


class Authorizer:
    def __init__(self, store: Store) -> None:
        self.store = store

    def _cluster_role_rules(self, name: str, errors: list[str]) -> list[Obj]:
        role = self.store.get(CLUSTER_ROLES, "", name)
        if role is None:
            errors.append(f'clusterrole.{RBAC} "{name}" not found')
            return []
        return list(role.get("rules") or [])

    def _role_rules(self, ref: Obj, namespace: str, errors: list[str]) -> list[Obj]:
        if ref.get("kind") == "ClusterRole":
            return self._cluster_role_rules(ref.get("name", ""), errors)
        role = self.store.get(ROLES, namespace, ref.get("name", ""))
        if role is None:
            errors.append(f'role.{RBAC} "{ref.get("name")}" not found')
            return []
        return list(role.get("rules") or [])

    def allowed(self, user: User, attrs: Attributes) -> tuple[bool, str]:
        """Whether ``user`` may do ``attrs``, and the RBAC reason text for a denial."""
        errors: list[str] = []
        for binding in self.store.items(CLUSTER_BINDINGS):
            if not any(_subject_matches(s, user, "") for s in binding.get("subjects") or []):
                continue
            for rule in self._role_rules(binding.get("roleRef") or {}, "", errors):
                if rule_allows(rule, attrs):
                    return True, ""
        if attrs.namespace:
            for binding in self.store.items(BINDINGS, attrs.namespace):
                if not any(
                    _subject_matches(s, user, attrs.namespace)
                    for s in binding.get("subjects") or []
                ):
                    continue
                for rule in self._role_rules(binding.get("roleRef") or {}, attrs.namespace, errors):
                    if rule_allows(rule, attrs):
                        return True, ""
        if not errors:
            return False, ""
        reason = errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"
        return False, f"RBAC: {reason}"

    def check(self, user: User, attrs: Attributes) -> None:
        """Raise the real 403 Forbidden Status unless allowed (cluster-admins skip the walk)."""
        if user.is_admin:
            return
        ok, reason = self.allowed(user, attrs)
        if ok:
            return
        raise forbidden(user, attrs, reason)


def forbidden(user: User, attrs: Attributes, reason: str = "") -> ApiError:
    if not attrs.resource_request:
        message = f'User "{user.name}" cannot {attrs.verb} path "{attrs.path}"'
    else:
        resource = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
        message = (
            f'User "{user.name}" cannot {attrs.verb} resource "{resource}" in API group '
            f'"{attrs.api_group}"'
        )
        message += (
            f' in the namespace "{attrs.namespace}"' if attrs.namespace else " at the cluster scope"
        )
    if reason:
        message += f": {reason}"
    if not attrs.resource_request or not attrs.resource:
        return forbidden_error(f"forbidden: {message}", "", "", "")
    gr = qualified(attrs.api_group, attrs.resource)
    prefix = f'{gr} "{attrs.name}"' if attrs.name else gr
    return forbidden_error(
        f"{prefix} is forbidden: {message}", attrs.api_group, attrs.resource, attrs.name
    )


# -- the default roles every cluster bootstraps ----------------------------------------------------

_READ = ["get", "list", "watch"]
_WRITE = ["create", "delete", "deletecollection", "patch", "update"]
_VIEW_RESOURCES = [
    (
        "",
        [
            "configmaps",
            "endpoints",
            "persistentvolumeclaims",
            "pods",
            "replicationcontrollers",
            "serviceaccounts",
            "services",
            "events",
            "limitranges",
            "namespaces",
            "resourcequotas",
            "pods/log",
            "pods/status",
            "replicationcontrollers/scale",
            "namespaces/status",
        ],
    ),
    (
        "apps",
        [
            "daemonsets",
            "deployments",
            "replicasets",
            "statefulsets",
            "deployments/scale",
            "statefulsets/scale",
            "replicasets/scale",
            "controllerrevisions",
        ],
    ),
    ("events.k8s.io", ["events"]),
    ("coordination.k8s.io", ["leases"]),
]


def bootstrap_objects() -> list[tuple[str, Obj]]:
    """(storage, object) pairs for the default cluster roles and bindings, the aggregated ones
    (admin, edit, view) with the rules their controller writes within moments of a start."""

    def role(
        name: str,
        rules: list[Obj],
        labels: dict[str, str] | None = None,
        aggregation: list[dict[str, str]] | None = None,
    ) -> tuple[str, Obj]:
        obj: Obj = {
            "apiVersion": f"{RBAC}/v1",
            "kind": "ClusterRole",
            "metadata": {
                "name": name,
                "labels": {"kubernetes.io/bootstrapping": "rbac-defaults", **(labels or {})},
                "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
            },
            "rules": rules,
        }
        if aggregation:
            obj["aggregationRule"] = {
                "clusterRoleSelectors": [{"matchLabels": a} for a in aggregation]
            }
        return CLUSTER_ROLES, obj

    def binding(name: str, role_name: str, groups: list[str]) -> tuple[str, Obj]:
        return CLUSTER_BINDINGS, {
            "apiVersion": f"{RBAC}/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {
                "name": name,
                "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
                "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
            },
            "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": role_name},
            "subjects": [{"apiGroup": RBAC, "kind": "Group", "name": g} for g in groups],
        }

    view_rules = [
        {"apiGroups": [g], "resources": [r for r in res if r != "secrets"], "verbs": _READ}
        for g, res in _VIEW_RESOURCES
    ]
    edit_rules = [
        {
            "apiGroups": [g],
            "resources": res + (["secrets"] if g == "" else []),
            "verbs": _READ + _WRITE,
        }
        for g, res in _VIEW_RESOURCES
    ]
    edit_rules.append(
        {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]}
    )
    admin_rules = [
        {"apiGroups": [RBAC], "resources": ["roles", "rolebindings"], "verbs": _READ + _WRITE}
    ]
    discovery = [
        "/api",
        "/api/*",
        "/apis",
        "/apis/*",
        "/healthz",
        "/livez",
        "/openapi",
        "/openapi/*",
        "/readyz",
        "/version",
        "/version/",
    ]
    objects = [
        role(
            "cluster-admin",
            [
                {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                {"nonResourceURLs": ["*"], "verbs": ["*"]},
            ],
        ),
        role("system:discovery", [{"nonResourceURLs": discovery, "verbs": ["get"]}]),
        role(
            "system:public-info-viewer",
            [
                {
                    "nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"],
                    "verbs": ["get"],
                }
            ],
        ),
        role(
            "system:basic-user",
            [
                {
                    "apiGroups": ["authorization.k8s.io"],
                    "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                    "verbs": ["create"],
                }
            ],
        ),
        role(
            "system:auth-delegator",
            [
                {
                    "apiGroups": ["authentication.k8s.io"],
                    "resources": ["tokenreviews"],
                    "verbs": ["create"],
                },
                {
                    "apiGroups": ["authorization.k8s.io"],
                    "resources": ["subjectaccessreviews"],
                    "verbs": ["create"],
                },
            ],
        ),
        role(
            "system:aggregate-to-view",
            view_rules,
            {"rbac.authorization.k8s.io/aggregate-to-view": "true"},
        ),
        role(
            "system:aggregate-to-edit",
            edit_rules,
            {"rbac.authorization.k8s.io/aggregate-to-edit": "true"},
        ),
        role(
            "system:aggregate-to-admin",
            admin_rules,
            {"rbac.authorization.k8s.io/aggregate-to-admin": "true"},
        ),
        role(
            "view",
            [],
            {"rbac.authorization.k8s.io/aggregate-to-edit": "true"},
            [{"rbac.authorization.k8s.io/aggregate-to-view": "true"}],
        ),
        role(
            "edit",
            [],
            {"rbac.authorization.k8s.io/aggregate-to-admin": "true"},
            [{"rbac.authorization.k8s.io/aggregate-to-edit": "true"}],
        ),
        role("admin", [], None, [{"rbac.authorization.k8s.io/aggregate-to-admin": "true"}]),
        binding("cluster-admin", "cluster-admin", ["system:masters"]),
        binding("system:discovery", "system:discovery", ["system:authenticated"]),
        binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            ["system:authenticated", "system:unauthenticated"],
        ),
        binding("system:basic-user", "system:basic-user", ["system:authenticated"]),
    ]
    roles = [obj for storage, obj in objects if storage == CLUSTER_ROLES]
    changed = True
    while changed:  # view into edit, then edit into admin: as the controller's repeated passes
        changed = False
        for obj in roles:
            if obj.get("aggregationRule"):
                rules = aggregated_rules(obj, roles)
                if not same_rules(rules, obj["rules"]):
                    obj["rules"], changed = rules, True
    return objects
