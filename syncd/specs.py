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
:mod:`syncd.auth_globals` and :mod:`syncd.transformations`); ``syncConfig.instantUpdates`` opts
into instant updates (:mod:`syncd.changes`); those that only tune VSO itself
(``storageEncryption``) are accepted by the CRDs and ignored. Defaults
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
from syncd.durations import parse_duration
from syncd.rendering import (
    RAW_KEY,
    KVType,
    RenderError,
    SecretTemplate,
    SourceTemplate,
    Transformation,
    compile_template,
    key_problem,
)
from syncd.spec_parts import (
    HasSecretMeta,
    ObjectRef,
    Problem,
    Reader,
    SecretMeta,
    SpecError,
    check_annotations,
    check_headers,
    check_labels,
    frozen,
    json_type,
    label_value_problem,
    namespace_problem,
    qualified_name_problem,
    subdomain_problem,
)
from syncd.vault_addresses import parse_address

# Part of this module's interface since before syncd.spec_parts; callers import them from here.
__all__ = ["ObjectRef", "Problem", "SecretMeta", "SpecError"]

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


# --- parsed values ------------------------------------------------------------------------


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
    headers: Mapping[str, str] = field(default_factory=frozen)


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
    params: Mapping[str, str] = field(default_factory=frozen)
    headers: Mapping[str, str] = field(default_factory=frozen)
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

    match_labels: Mapping[str, str] = field(default_factory=frozen)
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
class VaultStaticSecret(HasSecretMeta):
    meta: SecretMeta
    mount: str
    path: str
    kv_type: KVType
    #: 0 for the latest version; kv-v2 only.
    version: int
    refresh_after_seconds: float
    hmac_secret_data: bool
    destination: Destination
    #: ``syncConfig.instantUpdates``: a change notice from Vault re-reads it at once (if syncd
    #: runs with a change source, see :mod:`syncd.changes`).
    instant_updates: bool
    rollout_restart_targets: tuple[RolloutRestartTarget, ...]
    deletion_policy: DeletionPolicy
    #: Settings that are valid but have no effect, for a status message or an Event.
    warnings: tuple[str, ...] = ()


# --- VaultConnection ----------------------------------------------------------------------


def parse_vault_connection(obj: Mapping[str, Any]) -> VaultConnection:
    """A VaultConnection from its API object; raises :class:`SpecError`."""
    r = Reader()
    namespace, name, generation, uid, _ = r.metadata(obj, VAULT_CONNECTION)
    spec = r.mapping(obj, "spec", "", required=True) or {}

    address = r.string(spec, "address", "spec", required=True,
                       hint="the Vault URL, e.g. https://vault.vault.svc:8200") or ""
    if address:
        problem = _address_problem(address)
        if problem:
            r.fail("spec.address", problem)
    timeout = r.duration(spec, "timeout", "spec", default=None)
    headers = r.string_map(spec, "headers", "spec")
    check_headers(r, headers, "spec.headers")
    ca_cert_secret_ref = r.name(spec, "caCertSecretRef", "spec")
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
        headers=frozen(headers),
    )
    r.raise_for(VAULT_CONNECTION, namespace, name)
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
    if name != name.lower() or subdomain_problem(name.rstrip(".")):
        return (f"{name!r} is not a DNS name: use lowercase letters, digits, '-' and '.' (the"
                " name in Vault's certificate)")
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return None
    return f"{name!r} is an IP address; a TLS server name is a DNS name (SNI)"


# --- VaultAuth ----------------------------------------------------------------------------


def parse_vault_auth(obj: Mapping[str, Any]) -> VaultAuth:
    """A VaultAuth from its API object; raises :class:`SpecError`."""
    r = Reader()
    namespace, name, generation, uid, _ = r.metadata(obj, VAULT_AUTH)
    spec = r.mapping(obj, "spec", "", required=True) or {}

    method = cast(AuthMethod | None, r.choice(spec, "method", "spec", AUTH_METHODS))
    allowed = r.string_list(spec, "allowedNamespaces", "spec")
    for i, ns in enumerate(allowed or ()):
        problem = None if ns == "*" else namespace_problem(ns)
        if problem:
            r.fail(f"spec.allowedNamespaces[{i}]", problem)
    if allowed and "*" in allowed and len(allowed) > 1:
        r.fail("spec.allowedNamespaces", "'*' allows every namespace and must be the only "
               "entry")
    headers = r.string_map(spec, "headers", "spec")
    check_headers(r, headers, "spec.headers")

    # Vault's login path is auth/<mount>/login: a mount of '..' would log in elsewhere.
    mount = r.vault_path(spec, "mount", "spec", required=False,
                         hint="the auth method's mount, e.g. kubernetes")
    auth = VaultAuth(
        namespace=namespace,
        name=name,
        generation=generation,
        uid=uid,
        vault_connection_ref=r.ref(spec, "vaultConnectionRef", "spec", namespace=namespace),
        method=method or "token",
        mount=mount or _DEFAULT_MOUNTS[method or "token"],
        vault_namespace=r.string(spec, "namespace", "spec"),
        allowed_namespaces=allowed,
        params=frozen(r.string_map(spec, "params", "spec")),
        headers=frozen(headers),
        token=_token_auth(r, spec) if method == "token" else None,
        kubernetes=_kubernetes_auth(r, spec) if method == "kubernetes" else None,
        jwt=_jwt_auth(r, spec) if method == "jwt" else None,
        app_role=_app_role_auth(r, spec) if method == "appRole" else None,
    )
    r.raise_for(VAULT_AUTH, namespace, name)
    return auth


def _method_block(r: Reader, spec: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    block = r.mapping(spec, key, "spec")
    if block is None:
        r.fail(f"spec.{key}", f"is required when method is {key}")
    return block or {}


def _token_auth(r: Reader, spec: Mapping[str, Any]) -> TokenAuth:
    block = _method_block(r, spec, "token")
    ref = r.mapping(block, "secretRef", "spec.token", required=True) or {}
    where = "spec.token.secretRef"
    name = r.name(ref, "name", where, required=True, hint="the Secret holding the token")
    key = r.string(ref, "key", where, default="token") or "token"
    problem = key_problem(key)
    if problem:
        r.fail(f"{where}.key", problem)
    return TokenAuth(secret_ref=SecretKeyRef(name=name or "", key=key))


def _kubernetes_auth(r: Reader, spec: Mapping[str, Any]) -> KubernetesAuth:
    block, where = _method_block(r, spec, "kubernetes"), "spec.kubernetes"
    return KubernetesAuth(
        role=r.string(block, "role", where, required=True, hint="the Vault role") or "",
        service_account=r.name(block, "serviceAccount", where, required=True,
                              hint="a ServiceAccount in the secret's namespace") or "",
        audiences=_audiences(r, block, where),
        token_expiration_seconds=_token_expiration(r, block, where),
    )


def _audiences(r: Reader, block: Mapping[str, Any], where: str) -> tuple[str, ...]:
    audiences = r.string_list(block, "audiences", where) or ()
    for i, audience in enumerate(audiences):
        if not audience.strip():
            r.fail(f"{where}.audiences[{i}]", "must not be empty")
    return audiences or DEFAULT_TOKEN_AUDIENCES


def _token_expiration(r: Reader, block: Mapping[str, Any], where: str) -> int:
    seconds = r.integer(block, "tokenExpirationSeconds", where,
                        default=MIN_TOKEN_EXPIRATION_SECONDS,
                        minimum=MIN_TOKEN_EXPIRATION_SECONDS)
    return min(seconds, MAX_TOKEN_EXPIRATION_SECONDS)


def _jwt_auth(r: Reader, spec: Mapping[str, Any]) -> JWTAuth:
    block, where = _method_block(r, spec, "jwt"), "spec.jwt"
    secret_ref = r.name(block, "secretRef", where)
    service_account = r.name(block, "serviceAccount", where)
    if block and not block.get("secretRef") and not block.get("serviceAccount"):
        r.fail(where, "set secretRef (a Secret with key jwt) or serviceAccount")
    return JWTAuth(
        role=r.string(block, "role", where, required=True, hint="the Vault role") or "",
        secret_ref=secret_ref,
        service_account=service_account,
        audiences=_audiences(r, block, where),
        token_expiration_seconds=_token_expiration(r, block, where),
    )


def _app_role_auth(r: Reader, spec: Mapping[str, Any]) -> AppRoleAuth:
    block, where = _method_block(r, spec, "appRole"), "spec.appRole"
    secret_ref = r.name(block, "secretRef", where)
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
    r = Reader()
    # Read in the order of the CRD, so that problems are reported in that order too.
    meta, spec = r.secret_meta(obj, VAULT_STATIC_SECRET)
    mount = r.vault_path(spec, "mount", "spec", hint="the KV mount, e.g. secret")
    path = r.vault_path(spec, "path", "spec", hint="the secret's path in the mount")
    kv_type = cast(KVType | None, r.choice(spec, "type", "spec", KV_TYPES))
    version = r.integer(spec, "version", "spec", default=0, minimum=0)
    if version and kv_type == "kv-v1":
        r.fail("spec.version", "only a kv-v2 secret has versions; remove the version or set "
               "type: kv-v2")
    refresh = r.duration(spec, "refreshAfter", "spec", default=DEFAULT_REFRESH_AFTER)
    dest_spec = r.mapping(spec, "destination", "spec", required=True) or {}
    destination, warnings = read_destination(r, dest_spec)
    sync_config = r.mapping(spec, "syncConfig", "spec") or {}
    instant_updates = r.boolean(sync_config, "instantUpdates", "spec.syncConfig", default=False)

    secret = VaultStaticSecret(
        meta=meta,
        mount=mount,
        path=path,
        kv_type=kv_type or "kv-v2",
        version=version,
        refresh_after_seconds=refresh or parse_duration(DEFAULT_REFRESH_AFTER),
        hmac_secret_data=r.boolean(spec, "hmacSecretData", "spec", default=True),
        destination=destination,
        instant_updates=instant_updates,
        rollout_restart_targets=read_targets(r, spec),
        deletion_policy=cast(DeletionPolicy, r.choice(
            spec, "deletionPolicy", "spec", _DELETION_POLICIES, default="Delete")),
        warnings=tuple(warnings),
    )
    r.raise_for(VAULT_STATIC_SECRET, meta.namespace, meta.name)
    return secret


def read_destination(r: Reader, spec: Mapping[str, Any]) -> tuple[Destination, list[str]]:
    where = "spec.destination"
    name = r.name(spec, "name", where, required=True, hint="the Secret to write")
    create = r.boolean(spec, "create", where, default=False)
    labels = r.string_map(spec, "labels", where)
    check_labels(r, labels, f"{where}.labels")
    annotations = r.string_map(spec, "annotations", where)
    check_annotations(r, annotations, f"{where}.annotations")
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
        labels=frozen(labels),
        annotations=frozen(annotations),
        type=secret_type,
        transformation=transformation,
    )
    return destination, warnings


def _transformation(r: Reader, spec: Mapping[str, Any]) -> Transformation:
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
            r.fail(at, f"must be an object with text, not {json_type(template_spec)}")
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

    # Not in the CRD (so never a user's): syncd.transformations puts the source templates of
    # the referenced SecretTransformations here, checked, with where each comes from.
    sources = tuple(
        SourceTemplate(name=str(item.get("name")), text=str(item.get("text") or ""),
                       origin=str(item.get("origin")))
        for _, item in r.items(spec, "sourceTemplates", where))
    includes = _patterns(r, spec, "includes", where)
    excludes = _patterns(r, spec, "excludes", where)
    if not (templates or sources or includes or excludes):
        return _PLAIN[exclude_raw]
    return Transformation(
        templates=MappingProxyType(templates),
        sources=sources,
        includes=includes,
        excludes=excludes,
        exclude_raw=exclude_raw,
    )


#: The transformation of almost every object (none), shared: parsed specs are kept
#: (syncd.spec_cache), and its own copy was 152 bytes of each (1.5 MiB at 10,000).
_PLAIN = {raw: Transformation(exclude_raw=raw) for raw in (False, True)}


# What a Jinja2 template looks like, to say why it does not parse as a Go template.
_JINJA_TEMPLATE = re.compile(r"\{%|\{\{-?\s*(secrets|metadata|labels|annotations)\b")
_JINJA_HINT = (" (templates are Go templates, as in VSO: write {{ .Secrets.password }}; "
               "for Jinja2, make the first line of the text {{!jinja2}})")


def _patterns(r: Reader, spec: Mapping[str, Any], key: str,
              path: str) -> tuple[re.Pattern[str], ...]:
    out = []
    for i, text in enumerate(r.string_list(spec, key, path) or ()):
        try:
            out.append(re.compile(text))
        except re.error as exc:
            at = f" at position {exc.pos}" if exc.pos is not None else ""
            r.fail(f"{path}.{key}[{i}]", f"invalid regular expression: {exc.msg}{at}")
    return tuple(out)


def read_targets(r: Reader, spec: Mapping[str, Any]) -> tuple[RolloutRestartTarget, ...]:
    out: list[RolloutRestartTarget] = []
    for where, item in r.items(spec, "rolloutRestartTargets", "spec"):
        kind_text = r.string(item, "kind", where)
        kind = kind_text if kind_text in TARGET_KINDS else None
        if kind_text is not None and kind is None:
            r.fail(f"{where}.kind", f"unknown kind {kind_text!r}: use one of "
                   + ", ".join(TARGET_KINDS))
        has_name = item.get("name") not in (None, "")
        name = r.name(item, "name", where)
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


def _selector(r: Reader, spec: Mapping[str, Any], where: str, *,
              kind: str) -> LabelSelector | None:
    match_labels = r.string_map(spec, "matchLabels", where)
    check_labels(r, match_labels, f"{where}.matchLabels")
    requirements = []
    for at, item in r.items(spec, "matchExpressions", where):
        key = r.string(item, "key", at, required=True, hint="a label key") or ""
        problem = qualified_name_problem(key) if key else None
        if problem:
            r.fail(f"{at}.key", problem)
        operator = cast(SelectorOperator | None, r.choice(item, "operator", at, _OPERATORS))
        values = r.string_list(item, "values", at) or ()
        if operator in ("In", "NotIn") and not values:
            r.fail(f"{at}.values", f"must not be empty with operator {operator}")
        if operator in ("Exists", "DoesNotExist") and values:
            r.fail(f"{at}.values", f"must be empty with operator {operator}")
        for i, value in enumerate(values):
            problem = label_value_problem(value)
            if problem:
                r.fail(f"{at}.values[{i}]", problem)
        if operator is not None:
            requirements.append(SelectorRequirement(key=key, operator=operator, values=values))
    if not match_labels and not spec.get("matchExpressions"):
        r.fail(where, f"an empty selector would restart every {kind} in the namespace; add "
               "matchLabels or matchExpressions, or use auto: true")
        return None
    return LabelSelector(match_labels=frozen(match_labels),
                         match_expressions=tuple(requirements))
