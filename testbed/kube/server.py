"""The HTTP face of the emulation: one aiohttp catch-all handler with its own router.

Paths are routed by hand rather than with aiohttp routes because the set of resources changes
at run time (CRDs) and because a flat split is cheaper per request. For each resource request
the handler: parses the path into (type, namespace, name, subresource) and the verb; records it
in the counters; authenticates; fires matching faults; authorises with RBAC; and dispatches to
the registry (or the watch streamer, or the auth APIs). Errors become ``Status`` bodies.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import jwt
import yaml
from aiohttp import web

from testbed.kube import discovery, errors, protobuf, tables
from testbed.kube.auth import access_review, token_request, token_review
from testbed.kube.cluster import Cluster
from testbed.kube.errors import ApiError, expired
from testbed.kube.faults import Fault, Held, RequestRecord
from testbed.kube.kinds import VIRTUAL, ResourceType
from testbed.kube.meta import Obj, dump_bytes, parse_bool
from testbed.kube.rbac import Attributes
from testbed.kube.registry import ListQuery, Result, WriteOptions
from testbed.kube.selectors import parse_field_selector, parse_label_selector
from testbed.kube.tokens import User
from testbed.kube.watching import WatchRequest, error_event, params_timeout, serve_watch

log = logging.getLogger("testbed.kube")

JSON = "application/json"
BODY_TYPES = [JSON, "application/yaml", protobuf.CONTENT_TYPE]


@dataclass
class Route:
    rt: ResourceType
    namespace: str | None  # None: all namespaces (or cluster-scoped)
    name: str
    subresource: str
    legacy_watch: bool = False


def _json(
    body: Any, status: int = 200, headers: dict[str, str] | None = None, content_type: str = JSON
) -> web.Response:
    return web.Response(
        body=dump_bytes(body),
        status=status,
        headers={"Content-Type": content_type, **(headers or {})},
    )


def error_response(err: ApiError) -> web.Response:
    return _json(err.status(), err.code, err.headers)


def _output(request: web.Request) -> tuple[str, str]:
    """("table"|"partial"|"json", includeObject) from the Accept header."""
    accept = request.headers.get("Accept", "")
    if "as=" not in accept:
        return "json", ""
    for media in discovery.media_types(accept):
        kind = media.get("as")
        if (
            kind == "Table"
            and media.get("g") == "meta.k8s.io"
            and media.get("v") in ("v1", "v1beta1")
        ):
            return "table", request.query.get("includeObject", "Metadata")
        if (
            kind in ("PartialObjectMetadata", "PartialObjectMetadataList")
            and media.get("g") == "meta.k8s.io"
        ):
            return "partial", ""
        if media["type"] in (JSON, "*/*", "application/*", protobuf.CONTENT_TYPE):
            return "json", ""
    return "json", ""


class Server:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.app = web.Application(client_max_size=8 * 1024 * 1024)
        self.app.router.add_route("*", "/{tail:.*}", self.handle)
        self._runner: web.AppRunner | None = None
        self.port = 0
        # Open watch requests by id() (a Request is not hashable), for the faults below.
        self._watches: dict[int, web.Request] = {}

    async def start(self, *, port: int | None = None) -> None:
        """Listen on ``settings.port`` (0: any free port), or on ``port`` when given."""
        settings = self.cluster.settings
        self._runner = web.AppRunner(
            self.app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5
        )
        await self._runner.setup()
        site = web.TCPSite(
            self._runner,
            settings.host,
            settings.port if port is None else port,
            reuse_address=True,
            backlog=1024,
        )
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1]
        self.cluster.server_address = f"{settings.host}:{self.port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def restart(self, *, down: float = 0.0) -> None:
        """An API server restart that keeps its state, as a kube-apiserver restart does with
        etcd behind it: every connection is cut (watches end without a last chunk), the port
        refuses connections for ``down`` seconds, then it listens again on the same port with
        the same store, resourceVersions and watch history."""
        port = self.port
        await self.stop()
        await asyncio.sleep(down)
        await self.start(port=port)

    def cut_watches(self) -> int:
        """Cut the connection of every open watch (a dropped watch, as a node or proxy going
        away does); returns how many were open."""
        watches = list(self._watches.values())
        for request in watches:
            if request.transport is not None:
                request.transport.abort()
        return len(watches)

    def expire_watches(self) -> int:
        """410 mid-watch: forget the watch history (as an etcd compaction does) and end every
        open watch with an ERROR 410 event, as the watch cache does to a watcher it dropped.
        A client resuming from its last resourceVersion then gets 410 again and must relist.
        Returns how many watches were open."""
        self.cluster.store.compact(None)
        failure = error_event(expired(f"too old resource version: {self.cluster.store.rv}"))
        # One whole chunk and the last chunk, written between two of the stream's own chunks
        # (each of which aiohttp writes with one transport.write): the stream stays well-formed.
        ending = f"{len(failure):x}\r\n".encode() + failure + b"\r\n0\r\n\r\n"
        watches = list(self._watches.values())
        for request in watches:
            if request.transport is not None:
                request.transport.write(ending)
                request.transport.close()
        return len(watches)

    @property
    def url(self) -> str:
        return f"http://{self.cluster.settings.host}:{self.port}"

    # -- entry ---------------------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._dispatch(request)
        except ApiError as err:
            return error_response(err)
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception as exc:  # a bug in the emulation: answer like the apiserver's 500
            log.exception("kube emulation failed on %s %s", request.method, request.path_qs)
            return error_response(errors.internal(f"{type(exc).__name__}: {exc}"))

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        parts = [p for p in path.split("/") if p]
        if not parts or parts[0] not in ("api", "apis") or _is_discovery(parts):
            return await self._non_resource(request, parts)
        route = self._route(parts, request)
        return await self._resource(request, route)

    # -- non-resource --------------------------------------------------------------------------
    async def _non_resource(self, request: web.Request, parts: list[str]) -> web.StreamResponse:
        cluster = self.cluster
        path = request.path
        user = self._authenticate(request)
        cluster.requests.record(RequestRecord(request.method.lower(), path, "", "", user.name))
        if not user.is_admin:
            cluster.authorizer.check(
                user, Attributes(verb=request.method.lower(), resource_request=False, path=path)
            )
        if request.method != "GET":
            raise errors.method_not_allowed()
        short = path.rstrip("/") or "/"
        if short in ("/healthz", "/readyz", "/livez"):
            return web.Response(text="ok", content_type="text/plain")
        if short == "/version":
            return _json(discovery.VERSION)
        if path == "/.well-known/openid-configuration":
            return _json(
                {
                    "issuer": "https://kubernetes.default.svc.cluster.local",
                    "jwks_uri": f"http://{cluster.server_address}/openid/v1/jwks",
                    "response_types_supported": ["id_token"],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                }
            )
        if path == "/openid/v1/jwks":
            key = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(cluster.signer._key.public_key()))
            key.update({"use": "sig", "kid": cluster.signer.kid, "alg": "RS256"})
            return _json({"keys": [key]}, content_type="application/jwk-set+json")
        if parts[:1] == ["openapi"]:
            return self._openapi(request, parts)
        accept = request.headers.get("Accept", "")
        if parts == ["api"]:
            version = discovery.aggregated_version(accept)
            if version:
                return _json(
                    discovery.aggregated(cluster.catalog, legacy=True, version=version),
                    content_type=_aggregated_type(version),
                )
            return _json(discovery.api_versions(cluster.server_address))
        if parts == ["apis"]:
            version = discovery.aggregated_version(accept)
            if version:
                return _json(
                    discovery.aggregated(cluster.catalog, legacy=False, version=version),
                    content_type=_aggregated_type(version),
                )
            return _json(discovery.api_group_list(cluster.catalog))
        if parts[0] == "apis" and len(parts) == 2:
            group = discovery.api_group(cluster.catalog, parts[1])
            if group is None:
                raise errors.resource_not_found()
            return _json(group)
        if parts[0] == "api" and len(parts) == 2:
            listed = discovery.resource_list(cluster.catalog, "", parts[1])
        elif parts[0] == "apis" and len(parts) == 3:
            listed = discovery.resource_list(cluster.catalog, parts[1], parts[2])
        else:
            listed = None
        if listed is None:
            raise errors.resource_not_found()
        return _json(listed)

    def _openapi(self, request: web.Request, parts: list[str]) -> web.Response:
        if parts[:2] != ["openapi", "v3"]:
            raise errors.resource_not_found()  # /openapi/v2: kubectl tolerates a 404 there
        if len(parts) == 2:
            return _json(self.cluster.openapi.index())
        found = self.cluster.openapi.document("/".join(parts[2:]))
        if found is None:
            raise errors.resource_not_found()
        raw, digest = found
        headers = {"Content-Type": JSON, "Etag": f'"{digest}"'}
        if request.query.get("hash") == digest:
            headers["Cache-Control"] = "public, immutable"
        return web.Response(body=raw, headers=headers)

    # -- routing -------------------------------------------------------------------------------
    def _route(self, parts: list[str], request: web.Request) -> Route:
        if parts[0] == "api":
            if len(parts) < 3:
                raise errors.resource_not_found()
            group, version, rest = "", parts[1], parts[2:]
        else:
            if len(parts) < 4:
                raise errors.resource_not_found()
            group, version, rest = parts[1], parts[2], parts[3:]
        legacy_watch = False
        if rest[0] == "watch":
            legacy_watch, rest = True, rest[1:]
            if not rest:
                raise errors.resource_not_found()
        namespace: str | None = None
        if (
            rest[0] == "namespaces"
            and len(rest) >= 3
            and not (len(rest) == 3 and rest[2] in ("status", "finalize"))
        ):
            namespace, rest = rest[1], rest[2:]
        if len(rest) > 3:
            raise errors.resource_not_found()
        plural = rest[0]
        name = rest[1] if len(rest) > 1 else ""
        sub = rest[2] if len(rest) > 2 else ""
        rt = self.cluster.catalog.lookup(group, version, plural)
        if rt is None:
            raise errors.resource_not_found()
        if sub and rt.subresource(sub) is None:
            raise errors.resource_not_found()
        if not rt.namespaced and namespace is not None:
            raise errors.resource_not_found()
        if rt.namespaced and namespace is None and name:
            raise errors.resource_not_found()
        return Route(rt, namespace, name, sub, legacy_watch)

    def _authenticate(self, request: web.Request) -> User:
        headers = request.headers
        return self.cluster.authn.authenticate(
            headers.get("Authorization"),
            headers.get("Impersonate-User"),
            headers.getall("Impersonate-Group", []),
        )

    @staticmethod
    def _verb(request: web.Request, route: Route) -> str:
        method = request.method
        if method == "GET":
            if route.legacy_watch or parse_bool(request.query.get("watch")):
                return "watch"
            return "get" if route.name else "list"
        if method == "POST":
            if route.name and route.subresource != "token":
                raise errors.method_not_allowed()
            return "create"
        if method == "PUT":
            if not route.name:
                raise errors.method_not_allowed()
            return "update"
        if method == "PATCH":
            if not route.name:
                raise errors.method_not_allowed()
            return "patch"
        if method == "DELETE":
            return "delete" if route.name else "deletecollection"
        raise errors.method_not_allowed()

    # -- resources -----------------------------------------------------------------------------
    async def _resource(self, request: web.Request, route: Route) -> web.StreamResponse:
        cluster = self.cluster
        rt = route.rt
        verb = self._verb(request, route)
        if verb not in rt.verbs and not (
            route.subresource and verb in ("get", "update", "patch", "create")
        ):
            raise errors.method_not_allowed()
        namespace = route.namespace or ""
        user = self._authenticate(request)
        resource = rt.gr + (f"/{route.subresource}" if route.subresource else "")
        record = RequestRecord(verb, resource, namespace, route.name, user.name)
        cluster.requests.record(record)
        fired = (
            cluster.faults.take(verb, resource, namespace, route.name, user.name)
            if cluster.faults
            else []
        )
        watch_faults: list[Fault] = []
        for fault in fired:
            if fault.kind == "latency":
                await _hold(request, fault, record)
            elif fault.kind == "error":
                raise _fault_error(fault.code, rt, route.name)
            elif fault.kind == "throttle":
                raise errors.too_many_requests(fault.retry_after)
            else:
                watch_faults.append(fault)
        if not user.is_admin:
            name = route.name
            if not name and verb in ("list", "watch"):
                name = _selected_name(request.query.get("fieldSelector", ""))
            cluster.authorizer.check(
                user,
                Attributes(
                    verb=verb,
                    api_group=rt.group,
                    resource=rt.plural,
                    subresource=route.subresource,
                    name=name,
                    namespace=namespace,
                ),
            )
        query = request.query
        if verb == "watch":
            return await self._watch(request, route, watch_faults)
        if verb == "list":
            return self._list(request, route)
        if verb == "get" and route.subresource == "log":
            cluster.registry.must(rt, namespace, route.name)
            # No containers really run: their logs are empty.
            return web.Response(text="", content_type="text/plain")
        if verb == "get":
            obj = cluster.registry.get(rt, namespace, route.name, route.subresource)
            return self._object_response(request, rt, Result(200, obj))
        opts = _write_options(request)
        registry = cluster.registry
        if verb == "create":
            body = await _read_body(request)
            if rt.plural in VIRTUAL:
                return _json(self._review(rt, user, body), 201)
            if route.subresource == "token":
                return _json(
                    token_request(cluster.authn, namespace, route.name, body, dry_run=opts.dry_run),
                    201,
                )
            result = registry.create(rt, namespace, body, opts=opts)
        elif verb == "update":
            body = await _read_body(request)
            result = registry.update(
                rt, namespace, route.name, body, opts=opts, subresource=route.subresource
            )
        elif verb == "patch":
            raw = await request.read()
            result = registry.patch(
                rt,
                namespace,
                route.name,
                raw,
                content_type=request.content_type,
                opts=opts,
                subresource=route.subresource,
            )
        elif verb == "delete":
            result = registry.delete(
                rt, namespace, route.name, options=await _delete_options(request), opts=opts
            )
        else:
            result = registry.delete_collection(
                rt,
                route.namespace if rt.namespaced else None,
                ListQuery(query.get("labelSelector", ""), query.get("fieldSelector", "")),
                options=await _delete_options(request),
                opts=opts,
            )
        return self._object_response(request, rt, result)

    def _review(self, rt: ResourceType, user: User, body: Any) -> Obj:
        if rt.plural == "tokenreviews":
            return token_review(self.cluster.authn, body)
        return access_review(
            self.cluster.authorizer, user, body, self_review=rt.plural == "selfsubjectaccessreviews"
        )

    def _object_response(
        self, request: web.Request, rt: ResourceType, result: Result
    ) -> web.Response:
        headers = (
            {"Warning": ", ".join(_warning(w) for w in result.warnings)}
            if result.warnings
            else None
        )
        body = result.body
        output, include = _output(request)
        if body.get("kind") not in ("Status", "Scale") and not body.get("kind", "").endswith(
            "List"
        ):
            if output == "table":
                body = tables.table(
                    rt,
                    [body],
                    include=include,
                    list_meta={"resourceVersion": body["metadata"].get("resourceVersion", "")},
                )
            elif output == "partial":
                body = {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": body.get("metadata", {}),
                }
        return _json(body, result.code, headers)

    def _list(self, request: web.Request, route: Route) -> web.Response:
        q = request.query
        limit = 0
        if q.get("limit"):
            try:
                limit = int(q["limit"])
            except ValueError as exc:
                raise errors.bad_request(f"invalid limit: {q['limit']}") from exc
        query = ListQuery(
            q.get("labelSelector", ""),
            q.get("fieldSelector", ""),
            q.get("resourceVersion", ""),
            q.get("resourceVersionMatch", ""),
            limit,
            q.get("continue", ""),
        )
        rt = route.rt
        listed = self.cluster.registry.list(rt, route.namespace if rt.namespaced else None, query)
        output, include = _output(request)
        if output == "table":
            items = [self._stored(rt, item) for item in listed["items"]]
            return _json(tables.table(rt, items, include=include, list_meta=listed["metadata"]))
        if output == "partial":
            return _json(
                {
                    "kind": "PartialObjectMetadataList",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": listed["metadata"],
                    "items": [
                        {
                            "kind": "PartialObjectMetadata",
                            "apiVersion": "meta.k8s.io/v1",
                            "metadata": i["metadata"],
                        }
                        for i in listed["items"]
                    ],
                }
            )
        return _json(listed)

    def _stored(self, rt: ResourceType, item: Obj) -> Obj:
        """List items lose kind/apiVersion on the wire; Table rows want them back."""
        return {"kind": rt.kind, "apiVersion": rt.api_version, **item}

    async def _watch(
        self, request: web.Request, route: Route, faults: list[Fault]
    ) -> web.StreamResponse:
        q = request.query
        rt = route.rt
        settings = self.cluster.settings
        send_initial = q.get("sendInitialEvents")
        match = q.get("resourceVersionMatch", "")
        if send_initial is not None and parse_bool(send_initial):
            if match != "NotOlderThan":
                raise ApiError(
                    422,
                    "Invalid",
                    'ListOptions.meta.k8s.io "" is invalid: '
                    "resourceVersionMatch: Forbidden: sendInitialEvents requires setting "
                    "resourceVersionMatch to NotOlderThan",
                )
        elif match:
            raise ApiError(
                422,
                "Invalid",
                'ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: '
                "Forbidden: resourceVersionMatch is forbidden for watch unless "
                "sendInitialEvents is provided",
            )
        fields_text = q.get("fieldSelector", "")
        if route.legacy_watch and route.name:
            fields_text = f"metadata.name={route.name}" + (f",{fields_text}" if fields_text else "")
        output, include = _output(request)
        req = WatchRequest(
            rt=rt,
            namespace=route.namespace if rt.namespaced else None,
            labels=parse_label_selector(q.get("labelSelector", "")),
            fields=parse_field_selector(fields_text, rt.field_label),
            resource_version=q.get("resourceVersion", ""),
            allow_bookmarks=parse_bool(q.get("allowWatchBookmarks")),
            send_initial_events=parse_bool(send_initial) if send_initial is not None else None,
            timeout=params_timeout(q.get("timeoutSeconds"), settings.watch_timeout),
            bookmark_interval=settings.bookmark_interval,
            output=output,
            include_object=include or "Metadata",
        )
        self._watches[id(request)] = request
        try:
            return await serve_watch(
                request,
                registry=self.cluster.registry,
                req=req,
                encoder=self.cluster.encoder,
                faults=faults,
                on_open=self.cluster.watch_opened,
                on_close=self.cluster.watch_closed,
            )
        finally:
            self._watches.pop(id(request), None)


def _warning(text: str) -> str:
    """An RFC 7234 warning value, as the apiserver sends for fieldValidation=Warn."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'299 - "{escaped}"'


def _is_discovery(parts: list[str]) -> bool:
    if parts[0] == "api":
        return len(parts) <= 2
    return len(parts) <= 3


def _aggregated_type(version: str) -> str:
    return discovery.AGGREGATED_V2 if version == "v2" else discovery.AGGREGATED_V2BETA1


def _selected_name(field_selector: str) -> str:
    for part in field_selector.split(","):
        key, sep, value = part.partition("=")
        if sep and key.strip() == "metadata.name" and not key.endswith("!"):
            return value.lstrip("=")
    return ""


async def _hold(request: web.Request, fault: Fault, record: RequestRecord) -> None:
    """A latency fault: the request waits, announced in ``fault.holding`` meanwhile. When its
    client goes away the handler is cancelled here, and the request never carried out."""
    peer = request.transport.get_extra_info("peername") if request.transport else None
    held = Held(
        record.verb,
        record.resource,
        record.namespace,
        record.name,
        record.user,
        peer_port=int(peer[1]) if isinstance(peer, tuple) else 0,
        until=time.time() + fault.seconds,
    )
    fault.holding.append(held)
    try:
        await asyncio.sleep(fault.seconds)
    finally:
        fault.holding.remove(held)


def _fault_error(code: int, rt: ResourceType, name: str) -> ApiError:
    reasons = {500: "InternalError", 502: "BadGateway", 503: "ServiceUnavailable", 504: "Timeout"}
    if code == 409:  # an optimistic-concurrency conflict, the usual 409 of a busy object
        return errors.conflict(
            rt.group,
            rt.plural,
            name,
            "the object has been modified; please apply your latest changes and try again",
        )
    if code == 503:
        return errors.service_unavailable()
    if code == 504:
        return errors.timeout_error(
            "the server was unable to return a response in the time allotted, "
            "but may still be processing the request"
        )
    if code == 500:
        return errors.internal("injected fault")
    return ApiError(code, reasons.get(code, "InternalError"), "injected fault", {})


def _write_options(request: web.Request) -> WriteOptions:
    q = request.query
    dry = q.getall("dryRun", [])
    for value in dry:
        if value != "All":
            raise errors.bad_request(
                f'dryRun: Unsupported value: "{value}": supported values: "All"'
            )
    validation = q.get("fieldValidation", "")
    if validation not in ("", "Ignore", "Warn", "Strict"):
        raise errors.bad_request(
            f'invalid fieldValidation directive: "{validation}" '
            "(must be one of Ignore, Warn, Strict)"
        )
    force = q.get("force")
    return WriteOptions(
        dry_run=bool(dry),
        field_manager=q.get("fieldManager", ""),
        field_validation=validation or "Warn",
        user_agent=request.headers.get("User-Agent", ""),
        force=parse_bool(force) if force is not None else None,
    )


async def _read_body(request: web.Request) -> Any:
    raw = await request.read()
    content_type = request.content_type
    if content_type == protobuf.CONTENT_TYPE:
        return protobuf.decode(raw)
    if content_type in ("application/yaml", "application/x-yaml"):
        try:
            return yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise errors.bad_request(f"error converting YAML to JSON: {exc}") from exc
    if content_type not in (JSON, "application/octet-stream", "text/plain", ""):
        raise errors.unsupported_media_type(BODY_TYPES)
    try:
        return json.loads(raw) if raw else {}
    except ValueError as exc:
        raise errors.bad_request(f"couldn't get version/kind; json parse error: {exc}") from exc


async def _delete_options(request: web.Request) -> Obj:
    options: Obj = {}
    if request.can_read_body:
        raw = await request.read()
        if raw.strip():
            try:
                parsed = (
                    protobuf.decode_delete_options(raw)
                    if request.content_type == protobuf.CONTENT_TYPE
                    else json.loads(raw)
                )
            except ValueError as exc:
                raise errors.bad_request(
                    f"couldn't get version/kind; json parse error: {exc}"
                ) from exc
            if isinstance(parsed, dict):
                options.update(parsed)
    q = request.query
    if q.get("propagationPolicy"):
        options["propagationPolicy"] = q["propagationPolicy"]
    if q.get("gracePeriodSeconds") not in (None, ""):
        try:
            options["gracePeriodSeconds"] = int(q["gracePeriodSeconds"])
        except ValueError as exc:
            raise errors.bad_request("invalid gracePeriodSeconds") from exc
    if q.get("orphanDependents") not in (None, ""):
        options["orphanDependents"] = parse_bool(q["orphanDependents"])
    return options
