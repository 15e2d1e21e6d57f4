"""VaultAuthGlobal: login defaults many VaultAuths share, merged in as VSO merges them.

A VaultAuth with ``spec.vaultAuthGlobalRef`` takes what it leaves unset from the referenced
VaultAuthGlobal, field by field, before it is parsed (:func:`merge_auth_global` works on the API
object, so :func:`syncd.specs.parse_vault_auth` checks the result as it checks any VaultAuth):

- ``method``: the VaultAuth's, else the global's ``defaultAuthMethod``;
- the method's block (``kubernetes``, ``jwt``, ``appRole``): each field the VaultAuth leaves
  empty comes from the global's block of that method;
- ``mount`` and ``namespace``: the VaultAuth's, else the global method block's, else the
  global's ``defaultMount`` / ``defaultVaultNamespace``; ``vaultConnectionRef``: the VaultAuth's,
  else the global's;
- ``params`` and ``headers`` by ``mergeStrategy``: ``none`` (the default) keeps the VaultAuth's
  only; ``union`` lays the global's defaults, then its method block's, then the VaultAuth's on
  top of each other (later wins); ``replace`` takes the first non-empty of the VaultAuth's, the
  method block's, the global defaults.

Which global: ``name`` (in ``namespace``, else the VaultAuth's); without a name and with
``allowDefault: true``, the one named ``default`` in ``namespace`` if given, else in the
VaultAuth's namespace, else in syncd's namespace (VSO's search, with its
``allow-default-globals`` option on, VSO's default).

The tenant boundary is VSO's: a VaultAuthGlobal serves the VaultAuths of its own namespace, of
the namespaces in its ``allowedNamespaces`` (``*``: all), and every namespace when it is the
``default`` of syncd's namespace. A refused reference sends nothing anywhere: the merge happens
before any credential is read.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from plumbing.kube import JSON, Resource
from syncd.spec_parts import SpecError, shorten
from syncd.specs import GROUP, VERSION, parse_vault_auth

VAULT_AUTH_GLOBAL = Resource(GROUP, VERSION, "vaultauthglobals", kind="VaultAuthGlobal")
MERGE_STRATEGIES = ("none", "union", "replace")
DEFAULT_NAME = "default"
#: The fields of each method's block that a global may supply.
METHOD_FIELDS: Mapping[str, tuple[str, ...]] = {
    "kubernetes": ("role", "serviceAccount", "audiences", "tokenExpirationSeconds"),
    "jwt": ("role", "secretRef", "serviceAccount", "audiences", "tokenExpirationSeconds"),
    "appRole": ("roleId", "secretRef", "secretIDPath"),
}

Lookup = Callable[[str, str], JSON | None]


class GlobalError(Exception):
    """The VaultAuthGlobal of a VaultAuth cannot be used; ``reason`` is the condition's."""

    def __init__(self, message: str, *, reason: str = "VaultAuthInvalid") -> None:
        super().__init__(shorten(message))
        self.reason = reason


def _empty(value: Any) -> bool:
    return value is None or value in ("", [], {}, 0)


def _first(*values: Any) -> Any:
    return next((v for v in values if not _empty(v)), None)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def allows(obj: JSON, namespace: str, *, operator_namespace: str) -> bool:
    """Whether VaultAuths of ``namespace`` may use the VaultAuthGlobal ``obj`` (VSO's rule)."""
    meta = obj.get("metadata") or {}
    if namespace == meta.get("namespace"):
        return True
    if meta.get("name") == DEFAULT_NAME and meta.get("namespace") == operator_namespace:
        return True
    allowed = _mapping(obj.get("spec")).get("allowedNamespaces") or []
    return isinstance(allowed, list) and ("*" in allowed or namespace in allowed)


def referenced(auth: JSON, *, operator_namespace: str) -> list[tuple[str, str]]:
    """The (namespace, name) of the VaultAuthGlobals ``auth`` may use, in search order."""
    meta = auth.get("metadata") or {}
    ref = _mapping(_mapping(auth.get("spec")).get("vaultAuthGlobalRef"))
    name, namespace = ref.get("name") or "", ref.get("namespace") or ""
    if name:
        return [(namespace or meta.get("namespace", ""), name)]
    if ref.get("allowDefault") is True:
        if namespace:
            return [(namespace, DEFAULT_NAME)]
        return [(meta.get("namespace", ""), DEFAULT_NAME), (operator_namespace, DEFAULT_NAME)]
    return []


def merge_auth_global(auth: JSON, *, lookup: Lookup, operator_namespace: str) -> JSON:
    """``auth`` with its VaultAuthGlobal merged in; ``auth`` itself when it refers to none.

    The merged object's uid carries the global's uid and generation, so that a changed global
    makes a new Vault client (clients are cached per VaultAuth uid and generation).
    """
    spec = _mapping(auth.get("spec"))
    if spec.get("vaultAuthGlobalRef") is None:
        return auth
    meta = auth.get("metadata") or {}
    namespace = meta.get("namespace", "")
    where = f"VaultAuth {namespace}/{meta.get('name', '')}: spec.vaultAuthGlobalRef"
    ref = spec["vaultAuthGlobalRef"]
    if not isinstance(ref, Mapping):
        raise GlobalError(f"{where}: must be an object")
    strategies = _mapping(ref.get("mergeStrategy"))
    for part in ("headers", "params"):
        value = strategies.get(part) or "none"
        if value not in MERGE_STRATEGIES:
            raise GlobalError(f"{where}.mergeStrategy.{part}: unknown value {value!r}: use one"
                              f" of {', '.join(MERGE_STRATEGIES)}")
    candidates = referenced(auth, operator_namespace=operator_namespace)
    if not candidates:
        raise GlobalError(f"{where}.name: is required unless allowDefault is true")
    found = next((obj for ns, name in candidates if (obj := lookup(ns, name)) is not None), None)
    if found is None:
        names = " or ".join(f"{ns}/{name}" for ns, name in candidates)
        raise GlobalError(f"{where}: VaultAuthGlobal {names} not found",
                          reason="VaultAuthGlobalNotFound")
    gmeta = found.get("metadata") or {}
    gname = f"{gmeta.get('namespace')}/{gmeta.get('name')}"
    if not allows(found, namespace, operator_namespace=operator_namespace):
        raise GlobalError(
            f"{where}: VaultAuthGlobal {gname} does not allow namespace {namespace} (its"
            " spec.allowedNamespaces)", reason="VaultAuthGlobalNotAllowed")
    _check(found, gname=gname, where=where)
    return _merged(auth, found, gname=gname, where=where)


def _check(found: JSON, *, gname: str, where: str) -> None:
    """The global's own fields, checked as a VaultAuth's are (by merging each of its method
    blocks into an empty VaultAuth), so that a problem names the VaultAuthGlobal and its field;
    merged into the VaultAuth first, it would read as one of the VaultAuth's. What a VaultAuth
    may still supply (a role, a source of credentials) is left to the merged VaultAuth."""
    gspec = _mapping(found.get("spec"))
    methods: list[str | None] = [m for m in METHOD_FIELDS if gspec.get(m)]
    for method in methods or [None]:
        # Without a method block, the global's other fields are checked with method token.
        spec: JSON = {"method": method or "token",
                      "vaultAuthGlobalRef": {"mergeStrategy": {"headers": "union"}}}
        if method is None:
            spec["token"] = {"secretRef": {"name": "unset"}}
        probe = {"kind": "VaultAuth", "metadata": found.get("metadata") or {}, "spec": spec}
        try:
            parse_vault_auth(_merged(probe, found, gname=gname, where=where))
        except SpecError as exc:
            block = _mapping(gspec.get(method)) if method else {}
            problems = [
                f"{_global_field(p.path, method=method, block=block)}: {p.message}"
                for p in exc.problems
                if not p.message.startswith("is required") and p.path != f"spec.{method}"]
            if problems:
                raise GlobalError(f"{where}: VaultAuthGlobal {gname} is invalid: "
                                  + "; ".join(problems)) from None


def _global_field(path: str, *, method: str | None, block: Mapping[str, Any]) -> str:
    """Where in the VaultAuthGlobal the value at ``path`` of a merged VaultAuth came from."""
    for key, default_key in (("mount", "defaultMount"), ("namespace", "defaultVaultNamespace")):
        if path == f"spec.{key}":
            return f"spec.{method}.{key}" if method and block.get(key) else f"spec.{default_key}"
    return path


def _merged(auth: JSON, found: JSON, *, gname: str, where: str) -> JSON:
    spec = dict(copy.deepcopy(_mapping(auth.get("spec"))))
    gspec = _mapping(found.get("spec"))
    method = spec.get("method") or gspec.get("defaultAuthMethod")
    if not method:
        raise GlobalError(f"{where}: spec.method is not set and VaultAuthGlobal {gname} has no"
                          " defaultAuthMethod")
    spec["method"] = method
    gmethod = _mapping(gspec.get(method))
    if method in METHOD_FIELDS:
        own = _mapping(spec.get(method))
        if not own and not gmethod:
            raise GlobalError(f"{where}: method {method} is configured neither in spec.{method}"
                              f" nor in VaultAuthGlobal {gname}")
        block = {k: gmethod[k] for k in METHOD_FIELDS[method] if not _empty(gmethod.get(k))}
        block.update({k: v for k, v in own.items() if not _empty(v)})
        spec[method] = block
    for key, method_key, default_key in (("mount", "mount", "defaultMount"),
                                         ("namespace", "namespace", "defaultVaultNamespace")):
        value = _first(spec.get(key), gmethod.get(method_key), gspec.get(default_key))
        if value is not None:
            spec[key] = value
    connection = _first(spec.get("vaultConnectionRef"), gspec.get("vaultConnectionRef"))
    if connection is not None:
        spec["vaultConnectionRef"] = connection
    strategies = _mapping(_mapping(spec.get("vaultAuthGlobalRef")).get("mergeStrategy"))
    for part in ("headers", "params"):
        layers = (_mapping(gspec.get(part)), _mapping(gmethod.get(part)),
                  _mapping(spec.get(part)))
        strategy = strategies.get(part) or "none"
        if strategy == "union":
            spec[part] = {k: v for layer in layers for k, v in layer.items()}
        elif strategy == "replace":
            spec[part] = dict(_first(*reversed(layers)) or {})
    meta = dict(auth.get("metadata") or {})
    gmeta = found.get("metadata") or {}
    meta["uid"] = f"{meta.get('uid', '')}+{gmeta.get('uid', '')}@{gmeta.get('generation', 0)}"
    return {**auth, "metadata": meta, "spec": spec}
