"""The three custom resources, parsed from plain dicts into frozen, checked values.

The API server only checks what an OpenAPI schema can say; whatever it lets through that would
fail later (a regular expression that does not compile, a template with a syntax error, a
destination name Kubernetes refuses, a version pin on a kv-v1 secret) is caught here, before
any Vault or Kubernetes request. Every problem of an object is collected and reported together
in one :class:`SpecError`, each with its field path, so a person fixes a manifest in one round.

Field names and meanings are VSO v1beta1's (a VSO manifest moves over by changing its
``apiVersion``). VSO fields that would change the result but that vault-syncd does not
implement are errors rather than silently dropped (``vaultAuthGlobalRef`` and
``transformationRefs`` are resolved into the object before it is parsed here, by
:mod:`syncd.auth_globals` and :mod:`syncd.transformations`); those that only tune VSO
itself (``syncConfig``, ``storageEncryption``) are accepted by the CRDs and ignored. Defaults
are applied here as in the CRD schemas, because objects do not always come through an API
server that applies them (tests, the testbed).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, cast, get_args
from urllib.parse import urlsplit

from plumbing.kube import Resource
from syncd.durations import DurationError, parse_duration
from syncd.rendering import (
    RAW_KEY,
    KVType,
    RenderError,
    SecretTemplate,
    Transformation,
    compile_template,
    key_problem,
)
from syncd.vault_addresses import parse_address

GROUP = "secrets.vault-syncd.dev"
VERSION = "v1beta1"


VAULT_CONNECTION = Resource(GROUP, VERSION, "vaultconnections", kind="VaultConnection")
VAULT_AUTH = Resource(GROUP, VERSION, "vaultauths", kind="VaultAuth")
VAULT_STATIC_SECRET = Resource(
    GROUP, VERSION, "vaultstaticsecrets", kind="VaultStaticSecret"
)

#: ``refreshAfter`` when a VaultStaticSecret does not set it (VSO's drift-check interval).
DEFAULT_REFRESH_AFTER = "60s"
#: ServiceAccount token lifetimes below this are refused by VSO's schema (and by the
#: TokenRequest API), and so by ours.
MIN_TOKEN_EXPIRATION_SECONDS = 600
#: ...and longer ones are cut to this: the token is used once, at login, within seconds, so a
#: longer life only serves whoever steals it. A VSO manifest asking for more keeps working.
MAX_TOKEN_EXPIRATION_SECONDS = 600
#: The audience of the ServiceAccount tokens syncd requests when a VaultAuth names none (not
#: the API server's: such a token, stolen from Vault's side, would be a key to the cluster).
DEFAULT_TOKEN_AUDIENCES = ("vault",)

AuthMethod = Literal["token", "kubernetes", "jwt", "appRole"]
TargetKind = Literal["Deployment", "StatefulSet", "DaemonSet", "argo.Rollout"]
DeletionPolicy = Literal["Delete", "Retain"]
SelectorOperator = Literal["In", "NotIn", "Exists", "DoesNotExist"]

AUTH_METHODS: tuple[AuthMethod, ...] = get_args(AuthMethod)
TARGET_KINDS: tuple[TargetKind, ...] = get_args(TargetKind)
KV_TYPES: tuple[KVType, ...] = get_args(KVType)
_DELETION_POLICIES: tuple[DeletionPolicy, ...] = get_args(DeletionPolicy)
_OPERATORS: tuple[SelectorOperator, ...] = get_args(SelectorOperator)
# Vault's default mount path of each auth method.
_DEFAULT_MOUNTS: Mapping[AuthMethod, str] = {
    "token": "token", "kubernetes": "kubernetes", "jwt": "jwt", "appRole": "approle",
}


# --- errors -------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class Problem:
    """One thing wrong with one field."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class SpecError(Exception):
    """Everything wrong with one object (``obj`` is e.g. ``VaultStaticSecret app/web``)."""

    def __init__(self, *, obj: str, problems: tuple[Problem, ...]) -> None:
        self.obj = obj
        self.problems = problems
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.obj} is invalid: " + "; ".join(str(p) for p in self.problems)


# --- parsed values ------------------------------------------------------------------------


def _frozen(mapping: Mapping[str, str] | None = None) -> Mapping[str, str]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True, kw_only=True, slots=True)
class ObjectRef:
    """A namespaced object; a spec's ``name`` or ``namespace/name``, resolved."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, kw_only=True, slots=True)
class VaultConnection:
    namespace: str
    name: str
    generation: int
    #: A deleted and re-created VaultConnection starts at generation 1 again; the uid tells.
    uid: str
    address: str
    #: A Secret in this VaultConnection's namespace holding ``ca.crt``.
    ca_cert_secret_ref: str | None
    #: Else a PEM file in syncd's container (VSO's ``caCertPath``).
    ca_cert_path: str | None = None
    #: The name for SNI and the certificate check, instead of the address's host.
    tls_server_name: str | None
    skip_tls_verify: bool
    timeout_seconds: float | None
    headers: Mapping[str, str] = field(default_factory=_frozen)


@dataclass(frozen=True, kw_only=True, slots=True)
class SecretKeyRef:
    """A key of a Secret in the namespace of the resource that uses the VaultAuth."""

    name: str
    key: str


@dataclass(frozen=True, kw_only=True, slots=True)
class TokenAuth:
    secret_ref: SecretKeyRef


@dataclass(frozen=True, kw_only=True, slots=True)
class KubernetesAuth:
    role: str
    service_account: str
    audiences: tuple[str, ...]
    token_expiration_seconds: int


@dataclass(frozen=True, kw_only=True, slots=True)
class JWTAuth:
    role: str
    #: A Secret with key ``jwt``; else a token of ``service_account`` is requested.
    secret_ref: str | None
    service_account: str | None
    audiences: tuple[str, ...]
    token_expiration_seconds: int


@dataclass(frozen=True, kw_only=True, slots=True)
class AppRoleAuth:
    role_id: str
    #: A Secret with key ``id`` holding the SecretID; else ``secret_id_path``, a file.
    secret_ref: str | None
    secret_id_path: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class VaultAuth:
    namespace: str
    name: str
    generation: int
    uid: str
    #: None: the ``default`` VaultConnection of syncd's own namespace.
    vault_connection_ref: ObjectRef | None
    method: AuthMethod
    mount: str
    vault_namespace: str | None
    #: None when unset (only this namespace); ``("*",)`` for every namespace.
    allowed_namespaces: tuple[str, ...] | None
    params: Mapping[str, str] = field(default_factory=_frozen)
    headers: Mapping[str, str] = field(default_factory=_frozen)
    #: Exactly the block of ``method`` is set.
    token: TokenAuth | None = None
    kubernetes: KubernetesAuth | None = None
    jwt: JWTAuth | None = None
    app_role: AppRoleAuth | None = None

    def allows(self, namespace: str, *, operator_namespace: str) -> bool:
        """Whether a resource in ``namespace`` may use this VaultAuth (VSO's rule).

        Its own namespace always may; so may every namespace for the ``default`` VaultAuth of
        the operator's namespace; others only when listed in ``allowedNamespaces`` or by ``*``.
        """
        if namespace == self.namespace:
            return True
        if self.name == "default" and self.namespace == operator_namespace:
            return True
        allowed = self.allowed_namespaces or ()
        return "*" in allowed or namespace in allowed


@dataclass(frozen=True, kw_only=True, slots=True)
class SelectorRequirement:
    key: str
    operator: SelectorOperator
    values: tuple[str, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class LabelSelector:
    """A metav1.LabelSelector; never empty (an empty one would select every workload)."""

    match_labels: Mapping[str, str] = field(default_factory=_frozen)
    match_expressions: tuple[SelectorRequirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in self.match_labels.items()):
            return False
        for req in self.match_expressions:
            present = req.key in labels
            if req.operator == "In" and not (present and labels[req.key] in req.values):
                return False
            if req.operator == "NotIn" and present and labels[req.key] in req.values:
                return False
            if req.operator == "Exists" and not present:
                return False
            if req.operator == "DoesNotExist" and present:
                return False
        return True

    def to_query(self) -> str:
        """The ``labelSelector`` query parameter of a list or watch request."""
        terms = [f"{k}={v}" for k, v in sorted(self.match_labels.items())]
        for req in self.match_expressions:
            if req.operator == "Exists":
                terms.append(req.key)
            elif req.operator == "DoesNotExist":
                terms.append(f"!{req.key}")
            else:
                terms.append(f"{req.key} {req.operator.lower()} ({','.join(req.values)})")
        return ",".join(terms)


@dataclass(frozen=True, kw_only=True, slots=True)
class NamedTarget:
    """Restart one workload (VSO's ``{kind, name}``)."""

    kind: TargetKind
    name: str


@dataclass(frozen=True, kw_only=True, slots=True)
class SelectorTarget:
    """Restart the workloads of ``kind`` whose labels match ``selector``."""

    kind: TargetKind
    selector: LabelSelector


@dataclass(frozen=True, kw_only=True, slots=True)
class AutoTarget:
    """Restart the workloads of ``kinds`` whose pod template uses the destination Secret."""

    kinds: tuple[TargetKind, ...]


RolloutRestartTarget = NamedTarget | SelectorTarget | AutoTarget


@dataclass(frozen=True, kw_only=True, slots=True)
class Destination:
    name: str
    create: bool
    overwrite: bool
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    type: str
    transformation: Transformation


@dataclass(frozen=True, kw_only=True, slots=True)
class VaultStaticSecret:
    namespace: str
    name: str
    generation: int
    uid: str
    #: The object's own labels and annotations: template input, as in VSO.
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    #: None: the ``default`` VaultAuth of syncd's own namespace.
    vault_auth_ref: ObjectRef | None
    vault_namespace: str | None
    mount: str
    path: str
    kv_type: KVType
    #: 0 for the latest version; kv-v2 only.
    version: int
    refresh_after_seconds: float
    hmac_secret_data: bool
    destination: Destination
    rollout_restart_targets: tuple[RolloutRestartTarget, ...]
    deletion_policy: DeletionPolicy
    #: Settings that are valid but have no effect, for a status message or an Event.
    warnings: tuple[str, ...] = ()


# --- field readers ------------------------------------------------------------------------


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return "null"


class _Reader:
    """Typed reads of a plain mapping that record problems instead of raising."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def fail(self, path: str, message: str) -> None:
        self.problems.append(Problem(path=path, message=message))

    def mapping(
        self, parent: Mapping[str, Any], key: str, path: str, *, required: bool = False
    ) -> Mapping[str, Any] | None:
        where, value = _join(path, key), parent.get(key)
        if value is None:
            if required:
                self.fail(where, "is required")
            return None
        if not isinstance(value, Mapping):
            self.fail(where, f"must be an object, not {_json_type(value)}")
            return None
        return value

    def string(
        self, parent: Mapping[str, Any], key: str, path: str, *,
        required: bool = False, default: str | None = None, hint: str = "",
    ) -> str | None:
        """The string at ``key``; an empty string counts as unset, as in VSO (omitempty)."""
        where, value = _join(path, key), parent.get(key)
        if value is None or value == "":
            if required:
                self.fail(where, "is required" + (f" ({hint})" if hint else ""))
            return default
        if not isinstance(value, str):
            self.fail(where, f"must be a string, not {_json_type(value)}")
            return default
        return value

    def boolean(self, parent: Mapping[str, Any], key: str, path: str, *, default: bool) -> bool:
        value = parent.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.fail(_join(path, key), f"must be true or false, not {_json_type(value)}")
            return default
        return value

    def integer(
        self, parent: Mapping[str, Any], key: str, path: str, *, default: int, minimum: int
    ) -> int:
        where, value = _join(path, key), parent.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(where, f"must be an integer, not {_json_type(value)}")
            return default
        if value < minimum:
            self.fail(where, f"must be at least {minimum}, got {value}")
            return default
        return value

    def choice(
        self, parent: Mapping[str, Any], key: str, path: str, choices: tuple[str, ...], *,
        default: str | None = None,
    ) -> str | None:
        value = self.string(parent, key, path, required=default is None)
        if value is None:
            return default
        if value not in choices:
            self.fail(_join(path, key), f"unknown value {value!r}: use one of "
                      + ", ".join(choices))
            return default
        return value

    def string_list(self, parent: Mapping[str, Any], key: str, path: str) -> tuple[str, ...] | None:
        where, value = _join(path, key), parent.get(key)
        if value is None:
            return None
        if not isinstance(value, list):
            self.fail(where, f"must be a list of strings, not {_json_type(value)}")
            return None
        out = []
        for i, item in enumerate(value):
            if isinstance(item, str):
                out.append(item)
            else:
                self.fail(f"{where}[{i}]", f"must be a string, not {_json_type(item)}")
        return tuple(out)

    def string_map(self, parent: Mapping[str, Any], key: str, path: str) -> dict[str, str]:
        where, value = _join(path, key), parent.get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.fail(where, f"must be a map of strings, not {_json_type(value)}")
            return {}
        out = {}
        for k, v in value.items():
            if isinstance(v, str):
                out[k] = v
            else:
                self.fail(f"{where}[{k}]", f"must be a string, not {_json_type(v)} "
                          "(quote numbers and booleans in YAML)")
        return out

    def items(self, parent: Mapping[str, Any], key: str, path: str) -> list[tuple[str, Any]]:
        """The elements of a list of objects, each with its path."""
        where, value = _join(path, key), parent.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(where, f"must be a list, not {_json_type(value)}")
            return []
        out = []
        for i, item in enumerate(value):
            if isinstance(item, Mapping):
                out.append((f"{where}[{i}]", item))
            else:
                self.fail(f"{where}[{i}]", f"must be an object, not {_json_type(item)}")
        return out


# --- syntax of names ----------------------------------------------------------------------

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN = re.compile(rf"{_DNS_LABEL}(\.{_DNS_LABEL})*")
_DNS_LABEL_RE = re.compile(_DNS_LABEL)
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_ANNOTATIONS_MAX_BYTES = 256 * 1024


def _subdomain_problem(value: str) -> str | None:
    if len(value) > 253 or not _DNS_SUBDOMAIN.fullmatch(value):
        return (f"{value!r} is not a valid name: use at most 253 lowercase letters, digits, "
                "'-' and '.', starting and ending with a letter or digit")
    return None


def _namespace_problem(value: str) -> str | None:
    if len(value) > 63 or not _DNS_LABEL_RE.fullmatch(value):
        return (f"{value!r} is not a valid namespace: use at most 63 lowercase letters, "
                "digits and '-', starting and ending with a letter or digit")
    return None


def _qualified_name_problem(value: str) -> str | None:
    prefix, slash, name = value.rpartition("/")
    if slash and (not prefix or _subdomain_problem(prefix)):
        return f"{value!r}: the prefix before '/' must be a DNS subdomain, e.g. example.com"
    if not name or len(name) > 63 or not _QUALIFIED_NAME.fullmatch(name):
        return (f"{value!r}: the name must be at most 63 letters, digits, '-', '_' and '.', "
                "starting and ending with a letter or digit")
    return None


def _label_value_problem(value: str) -> str | None:
    if value and (len(value) > 63 or not _QUALIFIED_NAME.fullmatch(value)):
        return (f"label value {value!r} must be empty or at most 63 letters, digits, '-', '_' "
                "and '.', starting and ending with a letter or digit")
    return None


def _check_labels(r: _Reader, labels: Mapping[str, str], where: str) -> None:
    for k, v in labels.items():
        problem = _qualified_name_problem(k) or _label_value_problem(v)
        if problem:
            r.fail(f"{where}[{k}]", problem)


def _check_annotations(r: _Reader, annotations: Mapping[str, str], where: str) -> None:
    for k in annotations:
        problem = _qualified_name_problem(k)
        if problem:
            r.fail(f"{where}[{k}]", problem)
    size = sum(len(k) + len(v.encode()) for k, v in annotations.items())
    if size > _ANNOTATIONS_MAX_BYTES:
        r.fail(where, f"annotations total {size} bytes, over Kubernetes' limit of "
               f"{_ANNOTATIONS_MAX_BYTES}")


def _check_headers(r: _Reader, headers: Mapping[str, str], where: str) -> None:
    for k, v in headers.items():
        if not _HEADER_NAME.fullmatch(k):
            r.fail(f"{where}[{k}]", "is not a valid HTTP header name")
        elif k.lower() == "x-vault-token":
            r.fail(f"{where}[{k}]", "a Vault token must not sit in a resource; the VaultAuth "
                   "logs in and supplies it")
        if any(c in v for c in "\r\n\0"):
            r.fail(f"{where}[{k}]", "a header value must not contain line breaks")


def _name(r: _Reader, parent: Mapping[str, Any], key: str, path: str, *,
          required: bool = False, hint: str = "") -> str | None:
    value = r.string(parent, key, path, required=required, hint=hint)
    if value is not None:
        problem = _subdomain_problem(value)
        if problem:
            r.fail(_join(path, key), problem)
            return None
    return value


def _ref(r: _Reader, parent: Mapping[str, Any], key: str, path: str, *,
         namespace: str) -> ObjectRef | None:
    """``name`` (in ``namespace``) or ``namespace/name``; None when unset."""
    value = r.string(parent, key, path)
    if value is None:
        return None
    where = _join(path, key)
    parts = value.split("/")
    if len(parts) > 2 or not all(parts):
        r.fail(where, f"invalid reference {value!r}: use <name> or <namespace>/<name>")
        return None
    ref_ns, ref_name = (parts[0], parts[1]) if len(parts) == 2 else (namespace, parts[0])
    problem = (_namespace_problem(ref_ns) if len(parts) == 2 else None) or _subdomain_problem(
        ref_name)
    if problem:
        r.fail(where, problem)
        return None
    return ObjectRef(namespace=ref_ns, name=ref_name)


def _vault_path(r: _Reader, parent: Mapping[str, Any], key: str, path: str, *,
                hint: str) -> str:
    """A mount or secret path, without leading or trailing slashes."""
    where, text = _join(path, key), r.string(parent, key, path, required=True, hint=hint)
    if text is None:
        return ""
    value = text.strip("/")
    if not value:
        r.fail(where, f"must not be only slashes ({hint})")
        return ""
    segments = value.split("/")
    if any(s in ("", ".", "..") for s in segments):
        r.fail(where, f"{value!r} has an empty, '.' or '..' segment")
    elif any(c in value for c in "?#\0\r\n"):
        r.fail(where, f"{value!r} must not contain '?', '#' or control characters")
    return value


def _metadata(r: _Reader, obj: Mapping[str, Any], kind: Resource) -> tuple[
        str, str, int, str, Mapping[str, Any]]:
    """Namespace, name, generation, uid and the metadata mapping of ``obj``."""
    found = obj.get("kind")
    if found is not None and found != kind.kind:
        r.fail("kind", f"expected {kind.kind}, got {found!r}")
    meta = r.mapping(obj, "metadata", "", required=True) or {}
    name = r.string(meta, "name", "metadata", required=True) or "<unnamed>"
    namespace = r.string(meta, "namespace", "metadata", required=True) or "<no namespace>"
    generation = r.integer(meta, "generation", "metadata", default=0, minimum=0)
    uid = r.string(meta, "uid", "metadata", default="") or ""
    return namespace, name, generation, uid, meta


def _raise(r: _Reader, kind: Resource, namespace: str, name: str) -> None:
    if r.problems:
        raise SpecError(obj=f"{kind.kind} {namespace}/{name}", problems=tuple(r.problems))


# --- VaultConnection ----------------------------------------------------------------------


def parse_vault_connection(obj: Mapping[str, Any]) -> VaultConnection:
    """A VaultConnection from its API object; raises :class:`SpecError`."""
    r = _Reader()
    namespace, name, generation, uid, _ = _metadata(r, obj, VAULT_CONNECTION)
    spec = r.mapping(obj, "spec", "", required=True) or {}

    address = r.string(spec, "address", "spec", required=True,
                       hint="the Vault URL, e.g. https://vault.vault.svc:8200") or ""
    if address:
        problem = _address_problem(address)
        if problem:
            r.fail("spec.address", problem)
    timeout = _duration(r, spec, "timeout", "spec", default=None)
    headers = r.string_map(spec, "headers", "spec")
    _check_headers(r, headers, "spec.headers")
    ca_cert_secret_ref = _name(r, spec, "caCertSecretRef", "spec")
    ca_cert_path = r.string(spec, "caCertPath", "spec")
    if ca_cert_path is not None:
        if ca_cert_secret_ref is not None:
            r.fail("spec.caCertPath", "caCertPath and caCertSecretRef are mutually exclusive;"
                   " set one")
        if not ca_cert_path.startswith("/") or ".." in ca_cert_path.split("/"):
            r.fail("spec.caCertPath", f"{ca_cert_path!r} must be an absolute path without"
                   " '..'")
    server_name = r.string(spec, "tlsServerName", "spec")
    if server_name is not None and _host_name_problem(server_name):
        r.fail("spec.tlsServerName", _host_name_problem(server_name) or "")
    connection = VaultConnection(
        namespace=namespace,
        name=name,
        generation=generation,
        uid=uid,
        address=address.rstrip("/"),
        ca_cert_secret_ref=ca_cert_secret_ref,
        ca_cert_path=ca_cert_path,
        tls_server_name=server_name,
        skip_tls_verify=r.boolean(spec, "skipTLSVerify", "spec", default=False),
        timeout_seconds=timeout,
        headers=_frozen(headers),
    )
    _raise(r, VAULT_CONNECTION, namespace, name)
    return connection


def _address_problem(address: str) -> str | None:
    try:
        url = urlsplit(address)
        _ = url.port  # raises on a port that is not a number
    except ValueError as exc:
        return f"{address!r} is not a valid URL: {exc}"
    if url.scheme not in ("http", "https") or not url.hostname:
        return f"{address!r} must be an http:// or https:// URL with a host"
    if url.username is not None or url.password is not None:
        return "must not hold credentials; a VaultAuth supplies them"
    if url.query or url.fragment:
        return f"{address!r} must not have a query or a fragment"
    try:
        parse_address(address)  # the host: a DNS name or an IP address, nothing else
    except ValueError as exc:
        return str(exc)
    return None


def _host_name_problem(name: str) -> str | None:
    """What is wrong with a TLS server name (a DNS name: SNI carries no IP address)."""
    if name != name.lower() or _subdomain_problem(name.rstrip(".")):
        return (f"{name!r} is not a DNS name: use lowercase letters, digits, '-' and '.' (the"
                " name in Vault's certificate)")
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return None
    return f"{name!r} is an IP address; a TLS server name is a DNS name (SNI)"


def _duration(r: _Reader, parent: Mapping[str, Any], key: str, path: str, *,
              default: str | None) -> float | None:
    text = r.string(parent, key, path, default=default)
    if text is None:
        return None
    try:
        seconds = parse_duration(text)
    except DurationError as exc:
        r.fail(_join(path, key), str(exc))
        return None
    if seconds < 1:
        r.fail(_join(path, key), f"{text!r} is too short: use at least 1s")
        return None
    return seconds


# --- VaultAuth ----------------------------------------------------------------------------


def parse_vault_auth(obj: Mapping[str, Any]) -> VaultAuth:
    """A VaultAuth from its API object; raises :class:`SpecError`."""
    r = _Reader()
    namespace, name, generation, uid, _ = _metadata(r, obj, VAULT_AUTH)
    spec = r.mapping(obj, "spec", "", required=True) or {}

    method = cast(AuthMethod | None, r.choice(spec, "method", "spec", AUTH_METHODS))
    allowed = r.string_list(spec, "allowedNamespaces", "spec")
    for i, ns in enumerate(allowed or ()):
        problem = None if ns == "*" else _namespace_problem(ns)
        if problem:
            r.fail(f"spec.allowedNamespaces[{i}]", problem)
    if allowed and "*" in allowed and len(allowed) > 1:
        r.fail("spec.allowedNamespaces", "'*' allows every namespace and must be the only "
               "entry")
    headers = r.string_map(spec, "headers", "spec")
    _check_headers(r, headers, "spec.headers")

    mount = r.string(spec, "mount", "spec")
    auth = VaultAuth(
        namespace=namespace,
        name=name,
        generation=generation,
        uid=uid,
        vault_connection_ref=_ref(r, spec, "vaultConnectionRef", "spec", namespace=namespace),
        method=method or "token",
        mount=(mount or _DEFAULT_MOUNTS[method or "token"]).strip("/"),
        vault_namespace=r.string(spec, "namespace", "spec"),
        allowed_namespaces=allowed,
        params=_frozen(r.string_map(spec, "params", "spec")),
        headers=_frozen(headers),
        token=_token_auth(r, spec) if method == "token" else None,
        kubernetes=_kubernetes_auth(r, spec) if method == "kubernetes" else None,
        jwt=_jwt_auth(r, spec) if method == "jwt" else None,
        app_role=_app_role_auth(r, spec) if method == "appRole" else None,
    )
    _raise(r, VAULT_AUTH, namespace, name)
    return auth


def _method_block(r: _Reader, spec: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    block = r.mapping(spec, key, "spec")
    if block is None:
        r.fail(f"spec.{key}", f"is required when method is {key}")
    return block or {}


def _token_auth(r: _Reader, spec: Mapping[str, Any]) -> TokenAuth:
    block = _method_block(r, spec, "token")
    ref = r.mapping(block, "secretRef", "spec.token", required=True) or {}
    where = "spec.token.secretRef"
    name = _name(r, ref, "name", where, required=True, hint="the Secret holding the token")
    key = r.string(ref, "key", where, default="token") or "token"
    problem = key_problem(key)
    if problem:
        r.fail(f"{where}.key", problem)
    return TokenAuth(secret_ref=SecretKeyRef(name=name or "", key=key))


def _kubernetes_auth(r: _Reader, spec: Mapping[str, Any]) -> KubernetesAuth:
    block, where = _method_block(r, spec, "kubernetes"), "spec.kubernetes"
    return KubernetesAuth(
        role=r.string(block, "role", where, required=True, hint="the Vault role") or "",
        service_account=_name(r, block, "serviceAccount", where, required=True,
                              hint="a ServiceAccount in the secret's namespace") or "",
        audiences=_audiences(r, block, where),
        token_expiration_seconds=_token_expiration(r, block, where),
    )


def _audiences(r: _Reader, block: Mapping[str, Any], where: str) -> tuple[str, ...]:
    audiences = r.string_list(block, "audiences", where) or ()
    for i, audience in enumerate(audiences):
        if not audience.strip():
            r.fail(f"{where}.audiences[{i}]", "must not be empty")
    return audiences or DEFAULT_TOKEN_AUDIENCES


def _token_expiration(r: _Reader, block: Mapping[str, Any], where: str) -> int:
    seconds = r.integer(block, "tokenExpirationSeconds", where,
                        default=MIN_TOKEN_EXPIRATION_SECONDS,
                        minimum=MIN_TOKEN_EXPIRATION_SECONDS)
    return min(seconds, MAX_TOKEN_EXPIRATION_SECONDS)


def _jwt_auth(r: _Reader, spec: Mapping[str, Any]) -> JWTAuth:
    block, where = _method_block(r, spec, "jwt"), "spec.jwt"
    secret_ref = _name(r, block, "secretRef", where)
    service_account = _name(r, block, "serviceAccount", where)
    if block and not block.get("secretRef") and not block.get("serviceAccount"):
        r.fail(where, "set secretRef (a Secret with key jwt) or serviceAccount")
    return JWTAuth(
        role=r.string(block, "role", where, required=True, hint="the Vault role") or "",
        secret_ref=secret_ref,
        service_account=service_account,
        audiences=_audiences(r, block, where),
        token_expiration_seconds=_token_expiration(r, block, where),
    )


def _app_role_auth(r: _Reader, spec: Mapping[str, Any]) -> AppRoleAuth:
    block, where = _method_block(r, spec, "appRole"), "spec.appRole"
    secret_ref = _name(r, block, "secretRef", where)
    path = r.string(block, "secretIDPath", where)
    if block and (secret_ref is None) == (path is None):
        r.fail(where, "set exactly one of secretRef (a Secret with key id holding the SecretID)"
               " or secretIDPath (a file holding it)")
    if path is not None and (not path.startswith("/") or ".." in path.split("/")):
        r.fail(f"{where}.secretIDPath", f"{path!r} must be an absolute path without '..'")
    return AppRoleAuth(
        role_id=r.string(block, "roleId", where, required=True, hint="the AppRole RoleID")
        or "",
        secret_ref=secret_ref,
        secret_id_path=path,
    )


# --- VaultStaticSecret --------------------------------------------------------------------


def parse_vault_static_secret(obj: Mapping[str, Any]) -> VaultStaticSecret:
    """A VaultStaticSecret from its API object; raises :class:`SpecError`."""
    r = _Reader()
    namespace, name, generation, uid, meta = _metadata(r, obj, VAULT_STATIC_SECRET)
    spec = r.mapping(obj, "spec", "", required=True) or {}

    # Read in the order of the CRD, so that problems are reported in that order too.
    vault_auth_ref = _ref(r, spec, "vaultAuthRef", "spec", namespace=namespace)
    mount = _vault_path(r, spec, "mount", "spec", hint="the KV mount, e.g. secret")
    path = _vault_path(r, spec, "path", "spec", hint="the secret's path in the mount")
    kv_type = cast(KVType | None, r.choice(spec, "type", "spec", KV_TYPES))
    version = r.integer(spec, "version", "spec", default=0, minimum=0)
    if version and kv_type == "kv-v1":
        r.fail("spec.version", "only a kv-v2 secret has versions; remove the version or set "
               "type: kv-v2")
    refresh = _duration(r, spec, "refreshAfter", "spec", default=DEFAULT_REFRESH_AFTER)
    dest_spec = r.mapping(spec, "destination", "spec", required=True) or {}
    destination, warnings = _destination(r, dest_spec)

    secret = VaultStaticSecret(
        namespace=namespace,
        name=name,
        generation=generation,
        uid=uid,
        labels=_frozen(r.string_map(meta, "labels", "metadata")),
        annotations=_frozen(r.string_map(meta, "annotations", "metadata")),
        vault_auth_ref=vault_auth_ref,
        vault_namespace=r.string(spec, "namespace", "spec"),
        mount=mount,
        path=path,
        kv_type=kv_type or "kv-v2",
        version=version,
        refresh_after_seconds=refresh or parse_duration(DEFAULT_REFRESH_AFTER),
        hmac_secret_data=r.boolean(spec, "hmacSecretData", "spec", default=True),
        destination=destination,
        rollout_restart_targets=_targets(r, spec),
        deletion_policy=cast(DeletionPolicy, r.choice(
            spec, "deletionPolicy", "spec", _DELETION_POLICIES, default="Delete")),
        warnings=tuple(warnings),
    )
    _raise(r, VAULT_STATIC_SECRET, namespace, name)
    return secret


def _destination(r: _Reader, spec: Mapping[str, Any]) -> tuple[Destination, list[str]]:
    where = "spec.destination"
    name = _name(r, spec, "name", where, required=True, hint="the Secret to write")
    create = r.boolean(spec, "create", where, default=False)
    labels = r.string_map(spec, "labels", where)
    _check_labels(r, labels, f"{where}.labels")
    annotations = r.string_map(spec, "annotations", where)
    _check_annotations(r, annotations, f"{where}.annotations")
    secret_type = r.string(spec, "type", where, default="Opaque") or "Opaque"
    warnings = []
    if not create and (labels or annotations or secret_type != "Opaque"):
        # VSO ignores them too: a Secret syncd did not create keeps its own metadata and type.
        warnings.append(f"{where}.labels, annotations and type apply only with create: true; "
                        "they are ignored")
    transformation = _transformation(r, r.mapping(spec, "transformation", where) or {})
    destination = Destination(
        name=name or "",
        create=create,
        overwrite=r.boolean(spec, "overwrite", where, default=False),
        labels=_frozen(labels),
        annotations=_frozen(annotations),
        type=secret_type,
        transformation=transformation,
    )
    return destination, warnings


def _transformation(r: _Reader, spec: Mapping[str, Any]) -> Transformation:
    where = "spec.destination.transformation"
    exclude_raw = r.boolean(spec, "excludeRaw", where, default=False)
    if r.items(spec, "transformationRefs", where):
        # The controller folds them in first (syncd.transformations); here they are a bug.
        r.fail(f"{where}.transformationRefs", "not resolved (syncd.transformations folds "
               "them in before parsing)")

    templates: dict[str, SecretTemplate] = {}
    for key, template_spec in (r.mapping(spec, "templates", where) or {}).items():
        at = f"{where}.templates[{key}]"
        problem = key_problem(key)
        if problem:
            r.fail(at, f"invalid Secret data key: {problem}")
        elif key == RAW_KEY and not exclude_raw:
            r.fail(at, "the key is reserved for the raw Vault response unless excludeRaw is "
                   "true")
        if not isinstance(template_spec, Mapping):
            r.fail(at, f"must be an object with text, not {_json_type(template_spec)}")
            continue
        text = r.string(template_spec, "text", at, required=True, hint="the template")
        if text is None:
            continue
        try:
            template = compile_template(
                key=key, text=text, name=r.string(template_spec, "name", at))
            # One set of Go templates per resource: a name is called by {{template}}.
            other = next((k for k, t in templates.items() if t.set_name == template.set_name),
                         None)
            if other is not None:
                r.fail(f"{at}.name", f"duplicate template name {template.set_name!r} (also "
                       f"templates[{other}])")
            templates[key] = template
        except RenderError as exc:
            hint = _JINJA_HINT if _JINJA_TEMPLATE.search(text) else ""
            r.fail(f"{at}.text", exc.message + hint)

    return Transformation(
        templates=MappingProxyType(templates),
        includes=_patterns(r, spec, "includes", where),
        excludes=_patterns(r, spec, "excludes", where),
        exclude_raw=exclude_raw,
    )


# What a Jinja2 template looks like, to say why it does not parse as a Go template.
_JINJA_TEMPLATE = re.compile(r"\{%|\{\{-?\s*(secrets|metadata|labels|annotations)\b")
_JINJA_HINT = (" (templates are Go templates, as in VSO: write {{ .Secrets.password }}; "
               "for Jinja2, make the first line of the text {{!jinja2}})")


def _patterns(r: _Reader, spec: Mapping[str, Any], key: str,
              path: str) -> tuple[re.Pattern[str], ...]:
    out = []
    for i, text in enumerate(r.string_list(spec, key, path) or ()):
        try:
            out.append(re.compile(text))
        except re.error as exc:
            at = f" at position {exc.pos}" if exc.pos is not None else ""
            r.fail(f"{path}.{key}[{i}]", f"invalid regular expression: {exc.msg}{at}")
    return tuple(out)


def _targets(r: _Reader, spec: Mapping[str, Any]) -> tuple[RolloutRestartTarget, ...]:
    out: list[RolloutRestartTarget] = []
    for where, item in r.items(spec, "rolloutRestartTargets", "spec"):
        kind_text = r.string(item, "kind", where)
        kind = kind_text if kind_text in TARGET_KINDS else None
        if kind_text is not None and kind is None:
            r.fail(f"{where}.kind", f"unknown kind {kind_text!r}: use one of "
                   + ", ".join(TARGET_KINDS))
        has_name = item.get("name") not in (None, "")
        name = _name(r, item, "name", where)
        selector = r.mapping(item, "selector", where)
        auto = r.boolean(item, "auto", where, default=False)
        if has_name + (selector is not None) + auto != 1:
            r.fail(where, "set exactly one of name, selector or auto: true")
        elif auto:
            out.append(AutoTarget(kinds=(kind,) if kind else TARGET_KINDS))
        elif kind_text is None:
            r.fail(f"{where}.kind", "is required with a name or a selector: one of "
                   + ", ".join(TARGET_KINDS))
        elif kind is not None and selector is not None:
            parsed = _selector(r, selector, f"{where}.selector", kind=kind)
            if parsed is not None:
                out.append(SelectorTarget(kind=kind, selector=parsed))
        elif kind is not None and name is not None:
            out.append(NamedTarget(kind=kind, name=name))
    return tuple(out)


def _selector(r: _Reader, spec: Mapping[str, Any], where: str, *,
              kind: str) -> LabelSelector | None:
    match_labels = r.string_map(spec, "matchLabels", where)
    _check_labels(r, match_labels, f"{where}.matchLabels")
    requirements = []
    for at, item in r.items(spec, "matchExpressions", where):
        key = r.string(item, "key", at, required=True, hint="a label key") or ""
        problem = _qualified_name_problem(key) if key else None
        if problem:
            r.fail(f"{at}.key", problem)
        operator = cast(SelectorOperator | None, r.choice(item, "operator", at, _OPERATORS))
        values = r.string_list(item, "values", at) or ()
        if operator in ("In", "NotIn") and not values:
            r.fail(f"{at}.values", f"must not be empty with operator {operator}")
        if operator in ("Exists", "DoesNotExist") and values:
            r.fail(f"{at}.values", f"must be empty with operator {operator}")
        for i, value in enumerate(values):
            problem = _label_value_problem(value)
            if problem:
                r.fail(f"{at}.values[{i}]", problem)
        if operator is not None:
            requirements.append(SelectorRequirement(key=key, operator=operator, values=values))
    if not match_labels and not spec.get("matchExpressions"):
        r.fail(where, f"an empty selector would restart every {kind} in the namespace; add "
               "matchLabels or matchExpressions, or use auto: true")
        return None
    return LabelSelector(match_labels=_frozen(match_labels),
                         match_expressions=tuple(requirements))
