"""The verbs: get, list, create, update, patch, delete, deletecollection, and the scale subresource.

This is the emulation's equivalent of the apiserver's generic registry plus the per-kind
strategies: it turns a request body into the next stored state (defaulting, validation,
status/spec separation, generation, managedFields, finalizers and deletion) and commits it. It
knows nothing about HTTP, so the HTTP handlers, the admin handle and the emulated controllers all
write through the same rules. Callers are already authenticated and authorised.
"""

from __future__ import annotations

import base64
import builtins
import datetime as dt
import json
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from testbed.kube import apply as ssa
from testbed.kube import defaults, errors, validation
from testbed.kube.catalog import Catalog
from testbed.kube.convert import is_events_v1, to_external, to_internal
from testbed.kube.errors import ApiError, FieldError
from testbed.kube.kinds import ResourceType
from testbed.kube.meta import (
    Obj,
    clone,
    dumps,
    new_uid,
    normalize_times,
    now,
    random_suffix,
    rfc3339,
)
from testbed.kube.patching import (
    APPLY,
    JSON_PATCH,
    MERGE,
    STRATEGIC,
    json_patch,
    merge_patch,
    strategic_merge,
)
from testbed.kube.schema import json_path
from testbed.kube.selectors import (
    FieldSelector,
    LabelSelector,
    parse_field_selector,
    parse_label_selector,
    selector_string,
)
from testbed.kube.store import ADDED, DELETED, MODIFIED, Store

NAMESPACE_STORAGE = "/namespaces"
PROTECTED_NAMESPACES = ("default", "kube-system", "kube-public")
CRD_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
PATCH_TYPES_BUILTIN = [JSON_PATCH, MERGE, STRATEGIC, APPLY]
PATCH_TYPES_CUSTOM = [JSON_PATCH, MERGE, APPLY]


@dataclass
class WriteOptions:
    """What a write request says about itself besides its body."""

    dry_run: bool = False
    field_manager: str = ""
    field_validation: str = ""  # "", "Ignore", "Warn", "Strict"
    user_agent: str = ""
    force: bool | None = None

    def manager(self) -> str:
        if self.field_manager:
            return self.field_manager
        return (self.user_agent.split("/", 1)[0] or "unknown")[:128]


@dataclass
class Result:
    code: int
    body: Obj
    warnings: builtins.list[str] = field(default_factory=list)


@dataclass
class ListQuery:
    label_selector: str = ""
    field_selector: str = ""
    resource_version: str = ""
    resource_version_match: str = ""
    limit: int = 0
    continue_token: str = ""


class Registry:
    def __init__(self, store: Store, catalog: Catalog) -> None:
        self.store = store
        self.catalog = catalog
        # Set when an emulated kubelet runs: pods on a node then terminate gracefully.
        self.graceful_pods = False
        self._next_service_ip = 0

    # -- helpers -------------------------------------------------------------------------------
    def namespace_obj(self, name: str) -> Obj | None:
        return self.store.get(NAMESPACE_STORAGE, "", name)

    def raw(self, rt: ResourceType, namespace: str, name: str) -> Obj | None:
        return self.store.get(rt.storage, namespace if rt.namespaced else "", name)

    def must(self, rt: ResourceType, namespace: str, name: str) -> Obj:
        obj = self.raw(rt, namespace, name)
        if obj is None:
            raise errors.not_found(rt.group, rt.plural, name)
        return obj

    def selectors(self, rt: ResourceType, query: ListQuery) -> tuple[LabelSelector, FieldSelector]:
        return (
            parse_label_selector(query.label_selector),
            parse_field_selector(query.field_selector, rt.field_label),
        )

    # -- reads ---------------------------------------------------------------------------------
    def get(self, rt: ResourceType, namespace: str, name: str, subresource: str = "") -> Obj:
        obj = self.must(rt, namespace, name)
        if subresource == "scale":
            return self.scale_of(rt, obj)
        return to_external(rt, obj)

    def list(self, rt: ResourceType, namespace: str | None, query: ListQuery) -> Obj:
        labels, fields = self.selectors(rt, query)
        token = _decode_continue(query.continue_token) if query.continue_token else None
        if token is not None and query.resource_version not in ("", None):
            raise errors.bad_request(
                "specifying resource version is not allowed when using continue"
            )
        match = query.resource_version_match
        if match and not query.resource_version:
            raise errors.ApiError(
                422,
                "Invalid",
                'ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Forbidden: '
                "resourceVersionMatch is forbidden unless resourceVersion is provided",
            )
        if match not in ("", "Exact", "NotOlderThan"):
            raise errors.ApiError(
                422,
                "Invalid",
                f'ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Unsupported value: '
                f'"{match}": supported values: "Exact", "NotOlderThan"',
            )
        requested = _parse_rv(query.resource_version) if query.resource_version else None
        if requested is not None and requested > self.store.rv:
            raise errors.timeout_error(
                f"Too large resource version: {requested}, current: {self.store.rv}", 1
            )
        if token is not None:
            list_rv = int(token["rv"])
            try:
                source = self.store.snapshot(rt.storage, list_rv)
            except ApiError as exc:
                raise errors.expired(
                    "The provided continue parameter is too old to display a consistent list "
                    "result. You can start a new list without the continue parameter, or use the "
                    "continue token in this response to retrieve the remainder of the results. "
                    "Continuing with the provided token results in an inconsistent list - objects "
                    "that were created, modified, or deleted between the time the first chunk was "
                    "returned and now may show up in the list."
                ) from exc
        elif match == "Exact" and requested is not None:
            list_rv = requested
            source = self.store.snapshot(rt.storage, requested)
        else:
            list_rv = self.store.rv
            source = list(self.store.items(rt.storage, namespace if rt.namespaced else None))
        ns_filter = namespace if rt.namespaced else None
        start = token["start"] if token else None
        items: builtins.list[Obj] = []
        more = 0
        limit = query.limit if query.limit and query.limit > 0 else 0
        last_key = ""
        for obj in source:
            md = obj["metadata"]
            if ns_filter is not None and md.get("namespace", "") != ns_filter:
                continue
            key = f"{md.get('namespace', '')}/{md['name']}"
            if start is not None and key <= start:
                continue
            if not labels.empty and not labels.matches(md.get("labels")):
                continue
            if not fields.empty and not fields.matches(obj):
                continue
            if limit and len(items) >= limit:
                more += 1
                continue
            items.append(obj)
            last_key = key
        list_meta: Obj = {"resourceVersion": str(list_rv)}
        if more:
            list_meta["continue"] = _encode_continue(list_rv, last_key)
            if labels.empty and fields.empty:
                list_meta["remainingItemCount"] = more
        return {
            "kind": rt.list_kind,
            "apiVersion": rt.api_version,
            "metadata": list_meta,
            "items": [self.list_item(rt, obj) for obj in items],
        }

    def list_item(self, rt: ResourceType, obj: Obj) -> Obj:
        """Items of built-in lists carry no kind/apiVersion on the wire; custom ones do."""
        external = to_external(rt, obj)
        if rt.custom is not None:
            return external
        return {k: v for k, v in external.items() if k not in ("kind", "apiVersion")}

    # -- create --------------------------------------------------------------------------------
    def create(self, rt: ResourceType, namespace: str, body: Obj, *, opts: WriteOptions) -> Result:
        warnings: builtins.list[str] = []
        obj = self._admit_body(rt, namespace, body, warnings, opts)
        md = obj["metadata"]
        if md.get("resourceVersion"):
            raise errors.internal("resourceVersion should not be set on objects to be created")
        if not md.get("name") and md.get("generateName"):
            md["name"] = f"{md['generateName']}{random_suffix()}"
        if rt.namespaced:
            self._check_namespace(rt, namespace, md.get("name", ""))
        if rt.kind == "Pod" and rt.group == "":
            self._check_service_account(namespace, obj)
        self._prepare_create(rt, obj)
        self._finish(rt, obj, None, warnings, create=True)
        name = md["name"]
        if self.raw(rt, namespace, name) is not None:
            raise errors.already_exists(rt.group, rt.plural, name)
        ssa.record_update(
            old=None,
            new=obj,
            manager=opts.manager(),
            api_version=rt.api_version,
            subresource="",
            list_type=rt.list_type,
            status_mode=self._status_mode(rt, ""),
        )
        if opts.dry_run:
            return Result(201, to_external(rt, obj), warnings)
        self.store.commit(rt.storage, ADDED, obj, None)
        return Result(201, to_external(rt, obj), warnings)

    def _check_namespace(self, rt: ResourceType, namespace: str, name: str) -> None:
        ns = self.namespace_obj(namespace)
        if ns is None:
            raise errors.not_found("", "namespaces", namespace)
        if ns["metadata"].get("deletionTimestamp") and rt.storage != "events":
            raise errors.forbidden_error(
                f'{rt.gr} "{name}" is forbidden: unable to create new content in namespace '
                f"{namespace} because it is being terminated",
                rt.group,
                rt.plural,
                name,
            )

    def _check_service_account(self, namespace: str, pod: Obj) -> None:
        """The ServiceAccount admission plugin refuses pods whose account does not exist."""
        spec = pod.get("spec") or {}
        account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        if self.store.get("/serviceaccounts", namespace, account) is None:
            name = pod["metadata"].get("name") or pod["metadata"].get("generateName", "")
            raise errors.forbidden_error(
                f'pods "{name}" is forbidden: error looking up service account '
                f'{namespace}/{account}: serviceaccount "{account}" not found',
                "",
                "pods",
                name,
            )

    def _admit_body(
        self,
        rt: ResourceType,
        namespace: str,
        body: Any,
        warnings: builtins.list[str],
        opts: WriteOptions,
    ) -> Obj:
        """Check kind/apiVersion/namespace of a body and bring it to the stored form."""
        if not isinstance(body, dict):
            raise errors.bad_request(
                f"the object provided is unrecognized (must be of type {rt.kind})"
            )
        obj = clone(body)
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if api_version and api_version != rt.api_version:
            raise errors.bad_request(
                f"the API version in the data ({api_version}) does not match the expected API "
                f"version ({rt.api_version})"
            )
        if kind and kind != rt.kind:
            raise errors.bad_request(
                f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})"
            )
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        md = obj.get("metadata")
        if md is None:
            md = obj["metadata"] = {}
        elif not isinstance(md, dict):
            raise errors.bad_request(
                f'{rt.kind} in version "{rt.version}" cannot be handled as a '
                f"{rt.kind}: metadata must be an object"
            )
        if rt.namespaced:
            if md.get("namespace") and md["namespace"] != namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent "
                    "on the request"
                )
            md["namespace"] = namespace
        else:
            md.pop("namespace", None)
        if is_events_v1(rt):
            errs = validation.events_v1(obj, None)
            if errs:
                raise errors.invalid(rt.group, rt.kind, md.get("name", ""), errs)
        obj = to_internal(rt, obj)
        if rt.custom is not None:
            obj = self._custom_schema(rt, obj, warnings, opts)
        else:
            normalize_times(obj)
        if rt.kind == "Secret" and rt.group == "":
            _fold_string_data(obj)
        return obj

    def _custom_schema(
        self, rt: ResourceType, obj: Obj, warnings: builtins.list[str], opts: WriteOptions
    ) -> Obj:
        pruned, unknown = rt.custom.prune(obj)
        if unknown:
            if opts.field_validation == "Strict":
                if len(unknown) == 1:
                    raise errors.bad_request(f'strict decoding error: unknown field "{unknown[0]}"')
                raise errors.bad_request(
                    "strict decoding error: " + ", ".join(f'unknown field "{u}"' for u in unknown)
                )
            if opts.field_validation == "Warn":
                warnings += [f'unknown field "{u}"' for u in unknown]
        defaulted: Obj = rt.custom.default(pruned)
        return defaulted

    def _prepare_create(self, rt: ResourceType, obj: Obj) -> None:
        md = obj["metadata"]
        for key in (
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "selfLink",
        ):
            md.pop(key, None)
        md["uid"] = new_uid()
        md["creationTimestamp"] = rfc3339()
        if rt.generation != "none":
            md["generation"] = 1
        if rt.has_status and rt.kind not in ("Pod", "Namespace", "Node", "Service"):
            obj.pop("status", None)
        if rt.kind == "Pod" and rt.group == "":
            obj.pop("status", None)
        if rt.kind == "Service" and rt.group == "":
            self._allocate_cluster_ip(obj)

    def _allocate_cluster_ip(self, obj: Obj) -> None:
        spec = obj.setdefault("spec", {})
        if spec.get("type", "ClusterIP") == "ExternalName" or spec.get("clusterIP"):
            if spec.get("clusterIP") and "clusterIPs" not in spec:
                spec["clusterIPs"] = [spec["clusterIP"]]
            return
        self._next_service_ip += 1
        ip = f"10.96.{self._next_service_ip // 250}.{self._next_service_ip % 250 + 1}"
        spec["clusterIP"], spec["clusterIPs"] = ip, [ip]

    def _finish(
        self,
        rt: ResourceType,
        obj: Obj,
        old: Obj | None,
        warnings: builtins.list[str],
        *,
        create: bool,
    ) -> None:
        """Defaults and validation shared by create and update."""
        if rt.custom is None:
            defaults.apply_defaults(rt.group, rt.kind, obj, create=create)
        md = obj["metadata"]
        if not md.get("labels") and "labels" in md:
            del md["labels"]
        if not md.get("annotations") and "annotations" in md:
            del md["annotations"]
        errs = validation.validate(rt.group, rt.kind, rt.namespaced, obj, old)
        if rt.custom is not None:
            errs += _ratcheted(rt.custom.validate(obj), obj, old)
            if old is None and md.get("name") and self._crd_terminating(rt):
                raise errors.ApiError(
                    405,
                    "MethodNotAllowed",
                    "create not allowed while custom resource definition is terminating",
                )
        if errs:
            raise errors.invalid(rt.group, rt.kind, md.get("name", ""), errs)

    def _crd_terminating(self, rt: ResourceType) -> bool:
        crd = self.store.get(
            "apiextensions.k8s.io/customresourcedefinitions", "", rt.custom.crd_name
        )
        return bool(crd and crd["metadata"].get("deletionTimestamp"))

    @staticmethod
    def _status_mode(rt: ResourceType, subresource: str) -> str:
        if subresource == "status":
            return "only"
        return "skip" if rt.has_status else "keep"

    # -- update --------------------------------------------------------------------------------
    def update(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        body: Any,
        *,
        opts: WriteOptions,
        subresource: str = "",
    ) -> Result:
        if subresource == "scale":
            return self._update_scale(rt, namespace, name, body, opts)
        old = self.must(rt, namespace, name)
        warnings: builtins.list[str] = []
        obj = self._admit_body(rt, namespace, body, warnings, opts)
        md = obj["metadata"]
        if md.get("name") and md["name"] != name:
            raise errors.bad_request(
                f"the name of the object ({md['name']}) does not match the name on the URL ({name})"
            )
        md["name"] = name
        rv = md.get("resourceVersion")
        if not rv and rt.custom is not None:
            raise errors.invalid(
                rt.group,
                rt.kind,
                name,
                [
                    errors.invalid_value(
                        "metadata.resourceVersion", "0x0", "must be specified for an update"
                    )
                ],
            )
        return self._write(rt, old, obj, opts=opts, subresource=subresource, warnings=warnings)

    def _write(
        self,
        rt: ResourceType,
        old: Obj,
        obj: Obj,
        *,
        opts: WriteOptions,
        subresource: str,
        warnings: builtins.list[str],
        applied: bool = False,
    ) -> Result:
        """The shared tail of update and patch: preconditions, strategy, no-op, commit."""
        name = old["metadata"]["name"]
        md = obj["metadata"]
        rv = md.get("resourceVersion")
        if rv and rv != old["metadata"].get("resourceVersion"):
            raise errors.conflict(rt.group, rt.plural, name, errors.STALE)
        if md.get("uid") and md["uid"] != old["metadata"].get("uid"):
            raise errors.conflict(
                rt.group,
                rt.plural,
                name,
                f"Precondition failed: UID in precondition: {md['uid']}, UID in object meta: "
                f"{old['metadata'].get('uid')}",
            )
        obj = self._prepare_update(rt, obj, old, subresource)
        self._finish(rt, obj, old, warnings, create=False)
        if not applied:
            ssa.record_update(
                old=old,
                new=obj,
                manager=opts.manager(),
                api_version=rt.api_version,
                subresource=subresource,
                list_type=rt.list_type,
                status_mode=self._status_mode(rt, subresource),
            )
        if not subresource:
            self._bump_generation(rt, obj, old)
        md = obj["metadata"]
        md["resourceVersion"] = old["metadata"].get("resourceVersion")
        if ssa.strip_times(obj) == ssa.strip_times(old):
            return Result(200, to_external(rt, old), warnings)
        if opts.dry_run:
            return Result(200, to_external(rt, obj), warnings)
        if md.get("deletionTimestamp") and not md.get("finalizers") and not _ns_finalizers(rt, obj):
            change = self.store.commit(rt.storage, DELETED, obj, old)
            return Result(200, to_external(rt, change.obj), warnings)
        self.store.commit(rt.storage, MODIFIED, obj, old)
        return Result(200, to_external(rt, obj), warnings)

    def _prepare_update(self, rt: ResourceType, obj: Obj, old: Obj, subresource: str) -> Obj:
        old_md, md = old["metadata"], obj["metadata"]
        for key in (
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ):
            if key in old_md:
                md[key] = old_md[key]
            else:
                md.pop(key, None)
        if subresource == "status":
            status = obj.get("status")
            fresh = clone(old)
            if status is None:
                fresh.pop("status", None)
            else:
                fresh["status"] = status
            if rt.custom is None:
                # Built-in status strategies keep metadata changes other than labels.
                fresh["metadata"] = dict(md)
                if "labels" in old_md:
                    fresh["metadata"]["labels"] = old_md["labels"]
                else:
                    fresh["metadata"].pop("labels", None)
            else:
                fresh["metadata"]["resourceVersion"] = md.get("resourceVersion")
                if "managedFields" in md:
                    fresh["metadata"]["managedFields"] = md["managedFields"]
            return fresh
        if subresource == "finalize" and rt.kind == "Namespace":
            fresh = clone(old)
            fresh["spec"] = obj.get("spec") or {}
            return fresh
        if rt.has_status:
            if "status" in old:
                obj["status"] = old["status"]
            else:
                obj.pop("status", None)
        if rt.kind == "Namespace":
            obj["spec"] = old.get("spec", {})
        return obj

    @staticmethod
    def _bump_generation(rt: ResourceType, obj: Obj, old: Obj) -> None:
        rule = rt.generation
        if rule == "none":
            return
        changed = False
        if rule in ("spec", "spec+annotations"):
            changed = obj.get("spec") != old.get("spec")
            if rule == "spec+annotations":
                changed = changed or (
                    obj["metadata"].get("annotations") != old["metadata"].get("annotations")
                )
        elif rule == "non-metadata":
            skip = {"metadata", "status"} if rt.has_status else {"metadata"}
            changed = {k: v for k, v in obj.items() if k not in skip} != {
                k: v for k, v in old.items() if k not in skip
            }
        generation = int(old["metadata"].get("generation") or 1)
        obj["metadata"]["generation"] = generation + 1 if changed else generation

    # -- patch ---------------------------------------------------------------------------------
    def patch(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        raw: bytes,
        *,
        content_type: str,
        opts: WriteOptions,
        subresource: str = "",
    ) -> Result:
        allowed = PATCH_TYPES_BUILTIN if rt.strategic else PATCH_TYPES_CUSTOM
        if content_type not in allowed:
            raise errors.unsupported_media_type(allowed)
        if content_type == APPLY:
            if not opts.field_manager:
                raise errors.ApiError(
                    422,
                    "Invalid",
                    'PatchOptions.meta.k8s.io "" is invalid: fieldManager: '
                    "Required value: is required for apply patch",
                )
        elif opts.force is not None:
            raise errors.ApiError(
                422,
                "Invalid",
                'PatchOptions.meta.k8s.io "" is invalid: force: Forbidden: may '
                "not be specified for non-apply patch",
            )
        try:
            patch = yaml.safe_load(raw) if content_type == APPLY else json.loads(raw or b"null")
        except (ValueError, yaml.YAMLError) as exc:
            raise errors.bad_request(f"error decoding patch: {exc}") from exc
        if subresource == "scale":
            return self._patch_scale(
                rt, namespace, name, patch, content_type=content_type, opts=opts
            )
        old = self.raw(rt, namespace, name)
        if content_type == APPLY:
            return self._apply(
                rt, namespace, name, patch, old=old, opts=opts, subresource=subresource
            )
        if old is None:
            raise errors.not_found(rt.group, rt.plural, name)
        current = to_external(rt, old)
        if (
            rt.kind == "Secret"
            and rt.group == ""
            and isinstance(patch, dict)
            and "stringData" in patch
        ):
            pass  # stringData merges in and is folded into data by _admit_body
        if content_type == JSON_PATCH:
            result = json_patch(current, patch)
        elif content_type == MERGE:
            if not isinstance(patch, dict):
                raise errors.bad_request("json: cannot unmarshal into object")
            result = merge_patch(current, patch)
        else:
            if not isinstance(patch, dict):
                raise errors.bad_request("json: cannot unmarshal into object")
            result = strategic_merge(current, patch, rt.list_type)
        if not isinstance(result, dict):
            raise errors.bad_request("the patched object is not an object")
        if result.get("metadata", {}).get("resourceVersion") == old["metadata"].get(
            "resourceVersion"
        ):
            # A patch that does not name a resourceVersion is unconditional.
            patch_rv = _patch_rv(patch, content_type)
            if patch_rv is None:
                result.setdefault("metadata", {})["resourceVersion"] = old["metadata"][
                    "resourceVersion"
                ]
        warnings: builtins.list[str] = []
        obj = self._admit_body(rt, namespace, result, warnings, opts)
        obj["metadata"]["name"] = name
        return self._write(rt, old, obj, opts=opts, subresource=subresource, warnings=warnings)

    def _apply(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        patch: Any,
        *,
        old: Obj | None,
        opts: WriteOptions,
        subresource: str,
    ) -> Result:
        if not isinstance(patch, dict):
            raise errors.bad_request("error decoding YAML: the object is not a map")
        if not patch.get("kind") or not patch.get("apiVersion"):
            raise errors.bad_request(f"Object 'Kind' is missing in '{dumps(patch)}'")
        warnings: builtins.list[str] = []
        applied = self._admit_body(rt, namespace, patch, warnings, opts)
        amd = applied["metadata"]
        if amd.get("name") and amd["name"] != name:
            raise errors.bad_request(
                f"the name of the object ({amd['name']}) does not match the name on the "
                f"URL ({name})"
            )
        amd["name"] = name
        rv = amd.pop("resourceVersion", None)
        amd.pop("managedFields", None)
        mode = self._status_mode(rt, subresource)

        def conflict(message: str, causes: builtins.list[Obj]) -> ApiError:
            return ApiError(409, "Conflict", message, {"causes": causes})

        if old is None:
            if subresource:
                raise errors.not_found(rt.group, rt.plural, name)
            if rv:
                raise errors.not_found(rt.group, rt.plural, name)
            if rt.namespaced:
                self._check_namespace(rt, namespace, name)
            obj = ssa.apply(
                live=None,
                applied=applied,
                manager=opts.field_manager,
                api_version=rt.api_version,
                subresource="",
                force=bool(opts.force),
                list_type=rt.list_type,
                status_mode=mode,
                conflict_error=conflict,
            )
            obj["apiVersion"], obj["kind"] = applied["apiVersion"], applied["kind"]
            self._prepare_create(rt, obj)
            self._finish(rt, obj, None, warnings, create=True)
            if opts.dry_run:
                return Result(201, to_external(rt, obj), warnings)
            self.store.commit(rt.storage, ADDED, obj, None)
            return Result(201, to_external(rt, obj), warnings)
        if rv and rv != old["metadata"].get("resourceVersion"):
            raise errors.conflict(rt.group, rt.plural, name, errors.STALE)
        obj = ssa.apply(
            live=old,
            applied=applied,
            manager=opts.field_manager,
            api_version=rt.api_version,
            subresource=subresource,
            force=bool(opts.force),
            list_type=rt.list_type,
            status_mode=mode,
            conflict_error=conflict,
        )
        obj["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        if rt.kind == "Secret" and rt.group == "":
            _fold_string_data(obj)
        return self._write(
            rt, old, obj, opts=opts, subresource=subresource, warnings=warnings, applied=True
        )

    # -- scale ---------------------------------------------------------------------------------
    def scale_of(self, rt: ResourceType, obj: Obj) -> Obj:
        md = obj["metadata"]
        if rt.custom is not None:
            paths = rt.custom.scale or {}
            spec_replicas = json_path(obj, paths.get("specReplicasPath", ".spec.replicas")) or 0
            status_replicas = (
                json_path(obj, paths.get("statusReplicasPath", ".status.replicas")) or 0
            )
            selector = (
                json_path(obj, paths["labelSelectorPath"])
                if paths.get("labelSelectorPath")
                else None
            )
        else:
            spec_replicas = (obj.get("spec") or {}).get("replicas", 0)
            status_replicas = (obj.get("status") or {}).get("replicas", 0)
            selector = selector_string((obj.get("spec") or {}).get("selector"))
        status: Obj = {"replicas": status_replicas}
        if selector:
            status["selector"] = selector
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: md[k]
                for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                if k in md
            },
            "spec": {"replicas": spec_replicas},
            "status": status,
        }

    def _update_scale(
        self, rt: ResourceType, namespace: str, name: str, body: Any, opts: WriteOptions
    ) -> Result:
        old = self.must(rt, namespace, name)
        if not isinstance(body, dict):
            raise errors.bad_request("the object provided is unrecognized (must be of type Scale)")
        replicas = (body.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise errors.invalid(
                "autoscaling",
                "Scale",
                name,
                [
                    errors.invalid_value(
                        "spec.replicas", replicas, "must be greater than or equal to 0"
                    )
                ],
            )
        rv = (body.get("metadata") or {}).get("resourceVersion")
        if rv and rv != old["metadata"].get("resourceVersion"):
            raise errors.conflict(rt.group, rt.plural, name, errors.STALE)
        obj = clone(old)
        if rt.custom is not None:
            path = (
                ((rt.custom.scale or {}).get("specReplicasPath") or ".spec.replicas")
                .lstrip(".")
                .split(".")
            )
            node = obj
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = replicas
        else:
            obj.setdefault("spec", {})["replicas"] = replicas
        result = self._write(rt, old, obj, opts=opts, subresource="", warnings=[])
        stored = self.raw(rt, namespace, name) or result.body
        return Result(200, self.scale_of(rt, stored if not opts.dry_run else obj))

    def _patch_scale(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        patch: Any,
        *,
        content_type: str,
        opts: WriteOptions,
    ) -> Result:
        old = self.must(rt, namespace, name)
        current = self.scale_of(rt, old)
        if content_type == JSON_PATCH:
            result = json_patch(current, patch)
        elif content_type == APPLY:
            result = merge_patch(current, patch)
        else:
            result = merge_patch(current, patch)
        result.setdefault("metadata", {}).pop("resourceVersion", None) if _patch_rv(
            patch, content_type
        ) is None else None
        return self._update_scale(rt, namespace, name, result, opts)

    # -- delete --------------------------------------------------------------------------------
    def delete(
        self, rt: ResourceType, namespace: str, name: str, *, options: Obj, opts: WriteOptions
    ) -> Result:
        obj = self.must(rt, namespace, name)
        md = obj["metadata"]
        pre = options.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != md.get("uid"):
            raise errors.conflict(
                rt.group,
                rt.plural,
                name,
                f"Precondition failed: UID in precondition: {pre['uid']}, "
                f"UID in object meta: {md.get('uid')}",
            )
        if pre.get("resourceVersion") and pre["resourceVersion"] != md.get("resourceVersion"):
            raise errors.conflict(
                rt.group,
                rt.plural,
                name,
                f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, "
                f"ResourceVersion in object meta: {md.get('resourceVersion')}",
            )
        policy = options.get("propagationPolicy")
        orphan = options.get("orphanDependents")
        if policy not in (None, "", "Orphan", "Background", "Foreground"):
            raise errors.invalid(
                "meta.k8s.io",
                "DeleteOptions",
                "",
                [
                    errors.not_supported(
                        "propagationPolicy", policy, ("Foreground", "Background", "Orphan", "nil")
                    )
                ],
            )
        if not policy:
            policy = "Orphan" if orphan is True else "Background"
        grace = options.get("gracePeriodSeconds")
        accepted = 202 if orphan is False else 200
        if rt.kind == "Namespace" and rt.group == "" and name in PROTECTED_NAMESPACES:
            raise errors.forbidden_error(
                f'namespaces "{name}" is forbidden: this namespace may not be deleted',
                "",
                "namespaces",
                name,
            )
        finalizers = list(md.get("finalizers") or [])
        if rt.kind == "CustomResourceDefinition" and CRD_FINALIZER not in finalizers:
            # The CRD store always cleans up the custom resources before the CRD goes.
            finalizers.append(CRD_FINALIZER)
        if md.get("deletionTimestamp"):
            return Result(200, to_external(rt, obj))
        if policy == "Foreground" and "foregroundDeletion" not in finalizers:
            finalizers.append("foregroundDeletion")
        if policy == "Orphan" and "orphan" not in finalizers:
            finalizers.append("orphan")
        if self._graceful_pod(rt, obj, grace):
            seconds = int(
                grace
                if grace is not None
                else (obj.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
            )
            fresh = clone(obj)
            fresh["metadata"]["deletionTimestamp"] = rfc3339(now() + _seconds(seconds))
            fresh["metadata"]["deletionGracePeriodSeconds"] = seconds
            if finalizers:
                fresh["metadata"]["finalizers"] = finalizers
            if opts.dry_run:
                return Result(200, to_external(rt, fresh))
            self.store.commit(rt.storage, MODIFIED, fresh, obj)
            return Result(accepted, to_external(rt, fresh))
        if finalizers or _ns_finalizers(rt, obj):
            fresh = clone(obj)
            fresh["metadata"]["deletionTimestamp"] = rfc3339()
            fresh["metadata"]["deletionGracePeriodSeconds"] = 0
            if finalizers:
                fresh["metadata"]["finalizers"] = finalizers
            if rt.kind == "Namespace" and rt.group == "":
                fresh.setdefault("status", {})["phase"] = "Terminating"
            if opts.dry_run:
                return Result(200, to_external(rt, fresh))
            self.store.commit(rt.storage, MODIFIED, fresh, obj)
            return Result(accepted, to_external(rt, fresh))
        if opts.dry_run:
            return Result(200, self._deleted_body(rt, obj))
        change = self.store.commit(rt.storage, DELETED, clone(obj), obj)
        return Result(200, self._deleted_body(rt, change.obj))

    def _graceful_pod(self, rt: ResourceType, obj: Obj, grace: Any) -> bool:
        if not (self.graceful_pods and rt.kind == "Pod" and rt.group == ""):
            return False
        if grace == 0 or not (obj.get("spec") or {}).get("nodeName"):
            return False
        return (obj.get("status") or {}).get("phase") not in ("Succeeded", "Failed")

    def _deleted_body(self, rt: ResourceType, obj: Obj) -> Obj:
        if rt.return_deleted:
            return to_external(rt, obj)
        details: Obj = {"name": obj["metadata"]["name"]}
        if rt.group:
            details["group"] = rt.group
        details["kind"] = rt.plural
        details["uid"] = obj["metadata"].get("uid")
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": details,
        }

    def finish_deletion(self, rt: ResourceType, obj: Obj) -> None:
        """Remove an object outright (kubelet after grace, namespace controller after teardown)."""
        current = self.raw(rt, obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        if current is not None:
            self.store.commit(rt.storage, DELETED, clone(current), current)

    def delete_collection(
        self,
        rt: ResourceType,
        namespace: str | None,
        query: ListQuery,
        *,
        options: Obj,
        opts: WriteOptions,
    ) -> Result:
        listed = self.list(rt, namespace, ListQuery(query.label_selector, query.field_selector))
        deleted = []
        for item in listed["items"]:
            md = item["metadata"]
            try:
                result = self.delete(
                    rt, md.get("namespace", ""), md["name"], options=options, opts=opts
                )
            except ApiError as exc:
                if exc.code == 404:
                    continue
                raise
            if result.body.get("kind") != "Status":
                deleted.append(self.list_item(rt, result.body))
            else:
                deleted.append(item)
        return Result(
            200,
            {
                "kind": rt.list_kind,
                "apiVersion": rt.api_version,
                "metadata": {"resourceVersion": str(self.store.rv)},
                "items": deleted,
            },
        )


def _ns_finalizers(rt: ResourceType, obj: Obj) -> bool:
    return (
        rt.kind == "Namespace"
        and rt.group == ""
        and bool((obj.get("spec") or {}).get("finalizers"))
    )


def _seconds(n: int) -> dt.timedelta:
    return dt.timedelta(seconds=n)


def _fold_string_data(obj: Obj) -> None:
    """Secret ``stringData`` is write-only: merged into ``data`` (it wins) and dropped."""
    string_data = obj.pop("stringData", None)
    if not string_data:
        return
    data = obj.get("data") or {}
    for key, value in string_data.items():
        data[key] = base64.b64encode(str(value).encode()).decode()
    obj["data"] = data


def _patch_rv(patch: Any, content_type: str) -> str | None:
    if isinstance(patch, dict):
        md = patch.get("metadata")
        if isinstance(md, dict) and md.get("resourceVersion"):
            return str(md["resourceVersion"])
    if isinstance(patch, list):
        for op in patch:
            if (
                isinstance(op, dict)
                and op.get("path") == "/metadata/resourceVersion"
                and op.get("op") in ("replace", "add", "test")
            ):
                return str(op.get("value"))
    return None


def _parse_rv(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise errors.bad_request(f"invalid resource version: {text}") from exc
    if value < 0:
        raise errors.bad_request(f"invalid resource version: {text}")
    return value


def _encode_continue(rv: int, start: str) -> str:
    raw = dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_continue(token: str) -> Obj:
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded))
        int(data["rv"])
        str(data["start"])
    except (ValueError, KeyError, TypeError) as exc:
        raise errors.bad_request(f"continue key is not valid: {exc}") from exc
    result: Obj = data
    return result


_MISSING = object()
_PATH_PART = re.compile(r"\[(\d+)\]|[^.\[\]]+")


def _value_at(obj: Any, field: str) -> Any:
    """The value at a field path such as ``spec.targets[0].kind``, or ``_MISSING``."""
    current = obj
    for match in _PATH_PART.finditer(field):
        index, key = match.group(1), match.group(0)
        if index is not None:
            if not isinstance(current, list) or int(index) >= len(current):
                return _MISSING
            current = current[int(index)]
        elif isinstance(current, dict) and key in current:
            current = current[key]
        else:
            return _MISSING
    return current


def _ratcheted(errs: list[FieldError], obj: Obj, old: Obj | None) -> list[FieldError]:
    """Schema errors less those on values an update leaves unchanged.

    CRD validation ratcheting (beta and on by default since Kubernetes 1.30, GA in 1.33): an
    object stored before its CRD's schema was tightened can still be updated — its status
    written, a label added — as long as the update does not touch the invalid value itself.
    """
    if old is None:
        return errs
    kept = []
    for err in errs:
        value = _value_at(obj, err.field)
        if value is _MISSING or value != _value_at(old, err.field):
            kept.append(err)
    return kept
