"""Validation: the 422 ``Invalid`` answers a real apiserver gives, for the rules our code can hit.

Covers object names per kind, labels, annotations, finalizers, owner references, the Secret and
ConfigMap rules (key pattern, base64, 1 MiB, ``type`` and ``immutable``), workload selectors and
their immutability, the StatefulSet/Pod update restrictions, RBAC ``roleRef`` and the
TokenRequest bounds. It is deliberately not a full port of ``pkg/apis/*/validation``; what is
left out is listed in testbed/README.md.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable

from testbed.kube.errors import (
    FieldError,
    bad_request,
    forbidden,
    invalid_value,
    not_supported,
    required,
    too_long,
)
from testbed.kube.meta import Obj
from testbed.kube.selectors import selector_from_dict

DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
MAX_SECRET_SIZE = 1024 * 1024
MAX_ANNOTATIONS = 256 * 1024

SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
    "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "
    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
DNS1035_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
    "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
    "'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)
QUALIFIED_MSG = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
    "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used "
    "for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
    "'my_value',  or '12345', regex used for validation is "
    "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)
CONFIG_KEY_MSG = (
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. "
    "'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
)
IMMUTABLE = "field is immutable"
IMMUTABLE_SET = "field is immutable when `immutable` is set"


def subdomain(name: str) -> str | None:
    if len(name) > 253:
        return "must be no more than 253 characters"
    return None if DNS1123_SUBDOMAIN.match(name) else SUBDOMAIN_MSG


def dns_label(name: str) -> str | None:
    if len(name) > 63:
        return "must be no more than 63 characters"
    return None if DNS1123_LABEL.match(name) else LABEL_MSG


def dns1035(name: str) -> str | None:
    if len(name) > 63:
        return "must be no more than 63 characters"
    return None if DNS1035_LABEL.match(name) else DNS1035_MSG


def path_segment(name: str) -> str | None:
    if name in (".", ".."):
        return f"may not be '{name}'"
    for bad in ("/", "%"):
        if bad in name:
            return f"may not contain '{bad}'"
    return None


NAME_RULES: dict[str, Callable[[str], str | None]] = {
    "Namespace": dns_label,
    "Service": dns1035,
    "ClusterRole": path_segment,
    "ClusterRoleBinding": path_segment,
    "Role": path_segment,
    "RoleBinding": path_segment,
}


def qualified_name(path: str, key: str) -> list[FieldError]:
    """A label/annotation key or finalizer: ``[prefix/]name``."""
    prefix, _, name = key.rpartition("/")
    errors = []
    if len(name) > 63:
        errors.append(invalid_value(path, key, "name part must be no more than 63 characters"))
    elif not QUALIFIED_NAME.match(name):
        errors.append(invalid_value(path, key, QUALIFIED_MSG))
    if "/" in key and (not prefix or subdomain(prefix)):
        errors.append(
            invalid_value(path, key, "prefix part " + (subdomain(prefix) or "must be non-empty"))
        )
    return errors


def object_meta(obj: Obj, kind: str, namespaced: bool) -> list[FieldError]:
    md = obj.get("metadata") or {}
    errors: list[FieldError] = []
    name = md.get("name")
    rule = NAME_RULES.get(kind, subdomain)
    if not name:
        errors.append(required("metadata.name", "name or generateName is required"))
    elif isinstance(name, str):
        msg = rule(name)
        if msg:
            errors.append(invalid_value("metadata.name", name, msg))
    if namespaced and not md.get("namespace"):
        errors.append(required("metadata.namespace"))
    for key, value in (md.get("labels") or {}).items():
        errors += qualified_name("metadata.labels", key)
        if not isinstance(value, str) or len(value) > 63 or not LABEL_VALUE.match(value):
            detail = (
                "must be no more than 63 characters"
                if isinstance(value, str) and len(value) > 63
                else LABEL_VALUE_MSG
            )
            errors.append(invalid_value("metadata.labels", value, detail))
    annotations = md.get("annotations") or {}
    total = 0
    for key, value in annotations.items():
        errors += qualified_name("metadata.annotations", key.lower())
        total += len(key) + len(str(value))
    if total > MAX_ANNOTATIONS:
        errors.append(too_long("metadata.annotations", MAX_ANNOTATIONS))
    for i, fin in enumerate(md.get("finalizers") or []):
        errors += qualified_name(f"metadata.finalizers[{i}]", str(fin))
    controllers = 0
    for i, ref in enumerate(md.get("ownerReferences") or []):
        for key in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(key):
                errors.append(
                    invalid_value(
                        f"metadata.ownerReferences[{i}].{key}",
                        ref.get(key, ""),
                        f"{key} must not be empty",
                    )
                )
        if ref.get("controller"):
            controllers += 1
    if controllers > 1:
        errors.append(
            invalid_value(
                "metadata.ownerReferences",
                md.get("ownerReferences"),
                "Only one reference can have Controller set to true.",
            )
        )
    return errors


def meta_update(new: Obj, old: Obj) -> list[FieldError]:
    errors: list[FieldError] = []
    nm, om = new.get("metadata") or {}, old.get("metadata") or {}
    if om.get("deletionTimestamp"):
        added = [f for f in nm.get("finalizers") or [] if f not in (om.get("finalizers") or [])]
        if added:
            go_list = "[]string{" + ", ".join(f'"{f}"' for f in added) + "}"
            errors.append(
                forbidden(
                    "metadata.finalizers",
                    "no new finalizers can be added if the object is being deleted, "
                    f"found new finalizers {go_list}",
                )
            )
    return errors


def _decode_data(obj: Obj, field: str) -> tuple[dict[str, bytes], list[FieldError]]:
    """Decode base64 ``data`` values; bad base64 is the 400 a JSON decode error would be."""
    decoded: dict[str, bytes] = {}
    for key, value in (obj.get(field) or {}).items():
        if value is None:
            decoded[key] = b""
            continue
        if not isinstance(value, str):
            raise bad_request(
                f'{obj.get("kind", "Secret")} in version "v1" cannot be handled as a '
                f"{obj.get('kind', 'Secret')}: json: cannot unmarshal {type(value).__name__} "
                f"into Go struct field {obj.get('kind')}.{field} of type []uint8"
            )
        try:
            decoded[key] = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            position = _bad_b64_position(value)
            raise bad_request(
                f'{obj.get("kind", "Secret")} in version "v1" cannot be handled as a '
                f"{obj.get('kind', 'Secret')}: illegal base64 data at input byte {position}"
            ) from exc
    return decoded, []


def _bad_b64_position(value: str) -> int:
    alphabet = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
    for i, ch in enumerate(value):
        if ch == "=":
            return i
        if ch not in alphabet:
            return i
    return len(value)


SECRET_TYPE_KEYS = {
    "kubernetes.io/tls": ("tls.crt", "tls.key"),
    "kubernetes.io/basic-auth": (),
    "kubernetes.io/ssh-auth": ("ssh-privatekey",),
    "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
    "kubernetes.io/dockercfg": (".dockercfg",),
}


def secret(obj: Obj, old: Obj | None) -> list[FieldError]:
    decoded, errors = _decode_data(obj, "data")
    total = 0
    for key, value in decoded.items():
        if not CONFIG_KEY.match(key):
            errors.append(invalid_value(f"data[{key}]", key, CONFIG_KEY_MSG))
        total += len(value)
    if total > MAX_SECRET_SIZE:
        errors.append(too_long("data", MAX_SECRET_SIZE))
    stype = obj.get("type") or "Opaque"
    for key in SECRET_TYPE_KEYS.get(stype, ()):
        if key not in decoded:
            errors.append(required(f"data[{key}]"))
    if stype == "kubernetes.io/service-account-token":
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        if not annotations.get("kubernetes.io/service-account.name"):
            errors.append(required("metadata.annotations[kubernetes.io/service-account.name]"))
    if old is not None:
        if (old.get("type") or "Opaque") != stype:
            errors.append(invalid_value("type", stype, IMMUTABLE))
        errors += _immutable_update(obj, old, ("data",))
    return errors


def _immutable_update(obj: Obj, old: Obj, fields: tuple[str, ...]) -> list[FieldError]:
    errors: list[FieldError] = []
    if old.get("immutable") is True:
        if obj.get("immutable") is not True:
            errors.append(forbidden("immutable", IMMUTABLE_SET))
        for f in fields:
            if (obj.get(f) or {}) != (old.get(f) or {}):
                errors.append(forbidden(f, IMMUTABLE_SET))
    return errors


def configmap(obj: Obj, old: Obj | None) -> list[FieldError]:
    errors: list[FieldError] = []
    total = 0
    data = obj.get("data") or {}
    binary, _ = _decode_data(obj, "binaryData")
    for key, value in data.items():
        if not CONFIG_KEY.match(key):
            errors.append(invalid_value(f"data[{key}]", key, CONFIG_KEY_MSG))
        if not isinstance(value, str):
            raise bad_request(
                f'ConfigMap in version "v1" cannot be handled as a ConfigMap: json: '
                f"cannot unmarshal {type(value).__name__} into Go struct field "
                "ConfigMap.data of type string"
            )
        total += len(value)
    for key, raw in binary.items():
        if not CONFIG_KEY.match(key):
            errors.append(invalid_value(f"binaryData[{key}]", key, CONFIG_KEY_MSG))
        if key in data:
            errors.append(
                invalid_value(f"data[{key}]", key, "duplicate of key present in binaryData")
            )
        total += len(raw)
    if total > MAX_SECRET_SIZE:
        errors.append(too_long("", MAX_SECRET_SIZE))
    if old is not None:
        errors += _immutable_update(obj, old, ("data", "binaryData"))
    return errors


def _containers(spec: Obj, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    containers = spec.get("containers")
    if not containers:
        errors.append(required(f"{path}.containers"))
        return errors
    seen: set[str] = set()
    for i, c in enumerate(containers):
        name = c.get("name")
        if not name:
            errors.append(required(f"{path}.containers[{i}].name"))
        else:
            msg = dns_label(name)
            if msg:
                errors.append(invalid_value(f"{path}.containers[{i}].name", name, msg))
            if name in seen:
                errors.append(FieldError("Duplicate", f"{path}.containers[{i}].name", "", name))
            seen.add(name)
        if not c.get("image"):
            errors.append(required(f"{path}.containers[{i}].image"))
    policy = spec.get("restartPolicy")
    if policy not in (None, "Always", "OnFailure", "Never"):
        errors.append(
            not_supported(f"{path}.restartPolicy", policy, ("Always", "OnFailure", "Never"))
        )
    return errors


POD_MUTABLE = (
    "activeDeadlineSeconds",
    "tolerations",
    "terminationGracePeriodSeconds",
    "schedulingGates",
)


def pod(obj: Obj, old: Obj | None) -> list[FieldError]:
    spec = obj.get("spec") or {}
    errors = _containers(spec, "spec")
    if old is not None:
        old_spec = dict(old.get("spec") or {})
        new_spec = dict(spec)
        for key in POD_MUTABLE:
            old_spec.pop(key, None)
            new_spec.pop(key, None)
        if not old_spec.get("nodeName"):
            old_spec.pop("nodeName", None)
            new_spec.pop("nodeName", None)

        def strip_images(s: Obj) -> Obj:
            out = dict(s)
            for key in ("containers", "initContainers"):
                out[key] = [{k: v for k, v in c.items() if k != "image"} for c in s.get(key) or []]
            return out

        if strip_images(old_spec) != strip_images(new_spec):
            errors.append(
                forbidden(
                    "spec",
                    "pod updates may not change fields other than `spec.containers[*].image`,"
                    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,"
                    "`spec.tolerations` (only additions to existing tolerations),"
                    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was "
                    "previously negative)",
                )
            )
    return errors


def _workload(obj: Obj, old: Obj | None, template_required: bool = True) -> list[FieldError]:
    spec = obj.get("spec") or {}
    errors: list[FieldError] = []
    selector = spec.get("selector")
    if not selector:
        errors.append(required("spec.selector"))
    else:
        if not (selector.get("matchLabels") or selector.get("matchExpressions")):
            errors.append(
                invalid_value("spec.selector", selector, "empty selector is invalid for deployment")
            )
        labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        if not selector_from_dict(selector).matches(labels):
            errors.append(
                invalid_value(
                    "spec.template.metadata.labels",
                    labels,
                    "`selector` does not match template `labels`",
                )
            )
    replicas = spec.get("replicas")
    if isinstance(replicas, int) and replicas < 0:
        errors.append(
            invalid_value("spec.replicas", replicas, "must be greater than or equal to 0")
        )
    template = spec.get("template")
    if template_required and not template:
        errors.append(required("spec.template"))
    elif template:
        errors += _containers(template.get("spec") or {}, "spec.template.spec")
    if old is not None and (old.get("spec") or {}).get("selector") != selector:
        errors.append(invalid_value("spec.selector", selector, IMMUTABLE))
    return errors


def deployment(obj: Obj, old: Obj | None) -> list[FieldError]:
    return _workload(obj, old)


def replicaset(obj: Obj, old: Obj | None) -> list[FieldError]:
    return _workload(obj, old)


def daemonset(obj: Obj, old: Obj | None) -> list[FieldError]:
    return _workload(obj, old)


STS_MUTABLE = (
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
)


def statefulset(obj: Obj, old: Obj | None) -> list[FieldError]:
    errors = _workload(obj, None)
    if old is not None:

        def strip(s: Obj | None) -> Obj:
            return {k: v for k, v in (s or {}).items() if k not in STS_MUTABLE}

        if strip(obj.get("spec")) != strip(old.get("spec")):
            errors.append(
                forbidden(
                    "spec",
                    "updates to statefulset spec for fields other than 'replicas', 'ordinals', "
                    "'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and "
                    "'minReadySeconds' are forbidden",
                )
            )
    return errors


def role_binding(obj: Obj, old: Obj | None) -> list[FieldError]:
    errors: list[FieldError] = []
    ref = obj.get("roleRef") or {}
    if not ref.get("name"):
        errors.append(required("roleRef.name"))
    if ref.get("kind") not in ("Role", "ClusterRole"):
        errors.append(not_supported("roleRef.kind", ref.get("kind", ""), ("ClusterRole", "Role")))
    for i, subject in enumerate(obj.get("subjects") or []):
        if subject.get("kind") not in ("ServiceAccount", "User", "Group"):
            errors.append(
                not_supported(
                    f"subjects[{i}].kind",
                    subject.get("kind", ""),
                    ("ServiceAccount", "User", "Group"),
                )
            )
        if not subject.get("name"):
            errors.append(required(f"subjects[{i}].name"))
    if old is not None and old.get("roleRef") != obj.get("roleRef"):
        errors.append(invalid_value("roleRef", ref, "cannot change roleRef"))
    return errors


def cluster_role_binding(obj: Obj, old: Obj | None) -> list[FieldError]:
    errors = role_binding(obj, old)
    if (obj.get("roleRef") or {}).get("kind") == "Role":
        errors.append(not_supported("roleRef.kind", "Role", ("ClusterRole",)))
    for i, subject in enumerate(obj.get("subjects") or []):
        if subject.get("kind") == "ServiceAccount" and not subject.get("namespace"):
            errors.append(required(f"subjects[{i}].namespace"))
    return errors


def lease(obj: Obj, old: Obj | None) -> list[FieldError]:
    spec = obj.get("spec") or {}
    duration = spec.get("leaseDurationSeconds")
    if duration is not None and (not isinstance(duration, int) or duration <= 0):
        return [invalid_value("spec.leaseDurationSeconds", duration, "must be greater than 0")]
    return []


def events_v1(obj: Obj, old: Obj | None) -> list[FieldError]:
    """events.k8s.io/v1 create rules (checked on the v1 shape, before conversion)."""
    errors: list[FieldError] = []
    if old is None:
        for key in ("eventTime", "reportingController", "reportingInstance", "action", "reason"):
            if not obj.get(key):
                errors.append(required(key))
    if obj.get("type") not in (None, "Normal", "Warning"):
        errors.append(not_supported("type", obj.get("type"), ("Normal", "Warning")))
    return errors


def crd(obj: Obj, old: Obj | None) -> list[FieldError]:
    errors: list[FieldError] = []
    spec = obj.get("spec") or {}
    names = spec.get("names") or {}
    group = spec.get("group") or ""
    name = (obj.get("metadata") or {}).get("name", "")
    if not group:
        errors.append(required("spec.group"))
    elif "." not in group:
        errors.append(
            invalid_value("spec.group", group, "should be a domain with at least one dot")
        )
    if not names.get("plural"):
        errors.append(required("spec.names.plural"))
    if not names.get("kind"):
        errors.append(required("spec.names.kind"))
    if names.get("plural") and group and name != f"{names['plural']}.{group}":
        errors.append(
            invalid_value("metadata.name", name, 'must be spec.names.plural+"."+spec.group')
        )
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        errors.append(not_supported("spec.scope", spec.get("scope", ""), ("Cluster", "Namespaced")))
    versions = spec.get("versions") or []
    if not versions:
        errors.append(
            required("spec.versions", "must have exactly one version marked as storage version")
        )
    elif sum(1 for v in versions if v.get("storage")) != 1:
        errors.append(
            invalid_value(
                "spec.versions", versions, "must have exactly one version marked as storage version"
            )
        )
    for i, version in enumerate(versions):
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        if not schema:
            errors.append(
                required(f"spec.versions[{i}].schema.openAPIV3Schema", "schemas are required")
            )
    if old is not None:
        old_spec = old.get("spec") or {}
        if old_spec.get("group") != group:
            errors.append(invalid_value("spec.group", group, IMMUTABLE))
        if old_spec.get("scope") != spec.get("scope"):
            errors.append(invalid_value("spec.scope", spec.get("scope"), IMMUTABLE))
    return errors


def token_request(obj: Obj) -> list[FieldError]:
    spec = obj.get("spec") or {}
    seconds = spec.get("expirationSeconds")
    errors: list[FieldError] = []
    if seconds is not None:
        if seconds < 600:
            errors.append(
                invalid_value(
                    "spec.expirationSeconds",
                    seconds,
                    "may not specify a duration less than 10 minutes",
                )
            )
        elif seconds > 2**32:
            errors.append(
                invalid_value(
                    "spec.expirationSeconds",
                    seconds,
                    "may not specify a duration larger than 2^32 seconds",
                )
            )
    ref = spec.get("boundObjectRef")
    if ref and ref.get("kind") not in ("Pod", "Secret", "Node"):
        errors.append(
            not_supported("spec.boundObjectRef.kind", ref.get("kind"), ("Pod", "Secret", "Node"))
        )
    return errors


BY_KIND: dict[tuple[str, str], Callable[[Obj, Obj | None], list[FieldError]]] = {
    ("", "Secret"): secret,
    ("", "ConfigMap"): configmap,
    ("", "Pod"): pod,
    ("apps", "Deployment"): deployment,
    ("apps", "ReplicaSet"): replicaset,
    ("apps", "DaemonSet"): daemonset,
    ("apps", "StatefulSet"): statefulset,
    ("rbac.authorization.k8s.io", "RoleBinding"): role_binding,
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): cluster_role_binding,
    ("coordination.k8s.io", "Lease"): lease,
    ("apiextensions.k8s.io", "CustomResourceDefinition"): crd,
}


def validate(
    group: str, kind: str, namespaced: bool, obj: Obj, old: Obj | None
) -> list[FieldError]:
    errors = object_meta(obj, kind, namespaced)
    if old is not None:
        errors += meta_update(obj, old)
    fn = BY_KIND.get((group, kind))
    if fn is not None:
        errors += fn(obj, old)
    return errors
