"""OpenAPI v3: just enough for kubectl's default (``--validate=strict``) apply and create.

kubectl downloads ``/openapi/v3`` and the document of each group-version it writes to, finds the
PATCH operation carrying the kind's ``x-kubernetes-group-version-kind``, and when that operation
lists a ``fieldValidation`` query parameter it trusts the server to validate (sending
``fieldValidation=Strict``) instead of validating client-side against schemas. So each document
lists, per resource, the real operations (with their ``x-kubernetes-action``) but carries no
``components.schemas``: ``kubectl explain`` is the one command that needs more (see README).
``/openapi/v2`` stays a 404, which kubectl tolerates; it expects protobuf there.
"""

from __future__ import annotations

import hashlib
import json

from testbed.kube.catalog import Catalog
from testbed.kube.kinds import ResourceType
from testbed.kube.meta import Obj

_QUERY = ("dryRun", "fieldManager", "fieldValidation", "force", "pretty")


def _params(names: tuple[str, ...]) -> list[Obj]:
    return [
        {"name": n, "in": "query", "schema": {"type": "string", "uniqueItems": True}} for n in names
    ]


def _op_id(verb: str, rt: ResourceType, namespaced_path: bool, collection: bool) -> str:
    group = "".join(p.capitalize() for p in (rt.group or "core").replace(".k8s.io", "").split("."))
    version = rt.version.capitalize()
    scope = "Namespaced" if namespaced_path else ""
    suffix = rt.kind + (
        "ForAllNamespaces" if collection and rt.namespaced and not namespaced_path else ""
    )
    return f"{verb}{group}{version}{scope}{suffix}"


def _resource_paths(rt: ResourceType) -> dict[str, Obj]:
    prefix = f"/apis/{rt.group}/{rt.version}" if rt.group else f"/api/{rt.version}"
    base = (
        f"{prefix}/namespaces/{{namespace}}/{rt.plural}"
        if rt.namespaced
        else f"{prefix}/{rt.plural}"
    )
    gvk = {"group": rt.group, "version": rt.version, "kind": rt.kind}
    item: Obj = {}
    collection: Obj = {}
    ops = {
        "get": ("read", "get"),
        "put": ("replace", "put"),
        "patch": ("patch", "patch"),
        "delete": ("delete", "delete"),
    }
    verbs = set(rt.verbs)
    for method, (verb, action) in ops.items():
        needed = {"get": "get", "put": "update", "patch": "patch", "delete": "delete"}[method]
        if needed not in verbs:
            continue
        item[method] = {
            "operationId": _op_id(verb, rt, rt.namespaced, False),
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk,
            "parameters": _params(_QUERY),
            "responses": {"200": {"description": "OK"}},
        }
    if "list" in verbs:
        collection["get"] = {
            "operationId": _op_id("list", rt, rt.namespaced, True),
            "x-kubernetes-action": "list",
            "x-kubernetes-group-version-kind": gvk,
            "responses": {"200": {"description": "OK"}},
        }
    if "create" in verbs:
        collection["post"] = {
            "operationId": _op_id("create", rt, rt.namespaced, True),
            "x-kubernetes-action": "post",
            "x-kubernetes-group-version-kind": gvk,
            "parameters": _params(("dryRun", "fieldManager", "fieldValidation", "pretty")),
            "responses": {"201": {"description": "Created"}},
        }
    paths: dict[str, Obj] = {}
    if collection:
        paths[base] = collection
    if item:
        paths[f"{base}/{{name}}"] = item
    for sub in rt.subresources:
        sub_ops: Obj = {}
        for verb in sub.verbs:
            method = {"get": "get", "update": "put", "patch": "patch", "create": "post"}[verb]
            sub_ops[method] = {
                "operationId": _op_id(verb, rt, rt.namespaced, False) + sub.name.capitalize(),
                "x-kubernetes-action": {"update": "put", "create": "post"}.get(verb, verb),
                "x-kubernetes-group-version-kind": {
                    "group": sub.group,
                    "version": sub.version,
                    "kind": sub.kind or rt.kind,
                },
                "parameters": _params(_QUERY),
                "responses": {"200": {"description": "OK"}},
            }
        paths[f"{base}/{{name}}/{sub.name}"] = sub_ops
    return paths


class OpenAPI:
    """Caches the documents per catalog generation (CRDs change them)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._generation = -1
        self._docs: dict[str, bytes] = {}
        self._hashes: dict[str, str] = {}

    def _refresh(self) -> None:
        if self._generation == self.catalog.generation:
            return
        docs: dict[str, bytes] = {}
        hashes: dict[str, str] = {}
        for group, versions in self.catalog.groups():
            for version in versions:
                key = f"apis/{group}/{version}" if group else f"api/{version}"
                paths: dict[str, Obj] = {}
                for rt in sorted(self.catalog.resources(group, version), key=lambda r: r.plural):
                    paths.update(_resource_paths(rt))
                doc = {
                    "openapi": "3.0.0",
                    "info": {"title": "Kubernetes", "version": "v1.32.4"},
                    "paths": paths,
                    "components": {},
                }
                raw = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
                docs[key] = raw
                hashes[key] = hashlib.sha512(raw).hexdigest().upper()[:128]
        self._docs, self._hashes = docs, hashes
        self._generation = self.catalog.generation

    def index(self) -> Obj:
        self._refresh()
        return {
            "paths": {
                key: {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest}"}
                for key, digest in self._hashes.items()
            }
        }

    def document(self, key: str) -> tuple[bytes, str] | None:
        self._refresh()
        if key not in self._docs:
            return None
        return self._docs[key], self._hashes[key]
