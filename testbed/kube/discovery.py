"""Discovery: ``/version``, ``/api``, ``/apis`` and per-group-version resource lists.

kubectl 1.32 asks ``/api`` and ``/apis`` for *aggregated* discovery (apidiscovery.k8s.io/v2, by
Accept header) and decides which format it got from the response Content-Type alone, so the
aggregated answer must carry exactly ``application/json;g=apidiscovery.k8s.io;v=v2;as=
APIGroupDiscoveryList``. Older clients (kubectl 1.29 only speaks v2beta1, ``kubectl auth can-i``
reads ``/api/v1``) use the legacy APIVersions / APIGroupList / APIResourceList documents; both
are served from the same catalog.
"""

from __future__ import annotations

from typing import Any

from testbed.kube.catalog import Catalog
from testbed.kube.kinds import ResourceType
from testbed.kube.meta import Obj

VERSION = {
    "major": "1",
    # The kubectl on this machine is Google's dispatcher: it picks the kubectl binary matching
    # the server's minor version, so this must say 32 to get kubectl 1.32.
    "minor": "32",
    "gitVersion": "v1.32.4",
    "gitCommit": "59526cd4867447956156ae3a602fcbac10a2c335",
    "gitTreeState": "clean",
    "buildDate": "2025-04-22T15:56:21Z",
    "goVersion": "go1.23.6",
    "compiler": "gc",
    "platform": "linux/amd64",
}

AGGREGATED_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
AGGREGATED_V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"


def media_types(accept: str) -> list[dict[str, str]]:
    """Parse an Accept header into ordered media ranges with their parameters."""
    out = []
    for part in accept.split(","):
        pieces = [p.strip() for p in part.split(";")]
        if not pieces[0]:
            continue
        params = {"type": pieces[0].lower()}
        for piece in pieces[1:]:
            key, _, value = piece.partition("=")
            params[key.strip()] = value.strip()
        out.append(params)
    return out


def aggregated_version(accept: str) -> str | None:
    """ "v2" / "v2beta1" when the client asked for aggregated discovery, else None."""
    for media in media_types(accept):
        if media.get("as") == "APIGroupDiscoveryList" and media.get("g") == "apidiscovery.k8s.io":
            if media.get("v") in ("v2", "v2beta1"):
                return media["v"]
        elif media["type"] in ("application/json", "*/*", "application/*"):
            return None
    return None


def _response_kind(rt: ResourceType) -> Obj:
    return {"group": rt.group, "version": rt.version, "kind": rt.kind}


def _aggregated_resource(rt: ResourceType) -> Obj:
    entry: Obj = {
        "resource": rt.plural,
        "responseKind": _response_kind(rt),
        "scope": "Namespaced" if rt.namespaced else "Cluster",
        "singularResource": rt.singular,
        "verbs": sorted(rt.verbs),
    }
    if rt.short_names:
        entry["shortNames"] = list(rt.short_names)
    if rt.categories:
        entry["categories"] = list(rt.categories)
    if rt.subresources:
        entry["subresources"] = [
            {
                "subresource": sub.name,
                "responseKind": {
                    "group": sub.group,
                    "version": sub.version,
                    "kind": sub.kind or rt.kind,
                },
                "verbs": list(sub.verbs),
            }
            for sub in rt.subresources
        ]
    return entry


def aggregated(catalog: Catalog, *, legacy: bool, version: str) -> Obj:
    items = []
    for group, versions in catalog.groups():
        if (group == "") != legacy:
            continue
        entry: Obj = {"metadata": {"creationTimestamp": None}, "versions": []}
        if group:
            entry["metadata"]["name"] = group
        for v in versions:
            entry["versions"].append(
                {
                    "version": v,
                    "resources": [
                        _aggregated_resource(rt)
                        for rt in sorted(catalog.resources(group, v), key=lambda r: r.plural)
                    ],
                    "freshness": "Current",
                }
            )
        items.append(entry)
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": f"apidiscovery.k8s.io/{version}",
        "metadata": {},
        "items": items,
    }


def api_versions(server_address: str) -> Obj:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def _group(group: str, versions: list[str]) -> Obj:
    listed = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": listed, "preferredVersion": listed[0]}


def api_group_list(catalog: Catalog) -> Obj:
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group(g, vs) for g, vs in catalog.groups() if g],
    }


def api_group(catalog: Catalog, group: str) -> Obj | None:
    for g, versions in catalog.groups():
        if g == group and g:
            return {"kind": "APIGroup", "apiVersion": "v1", **_group(g, versions)}
    return None


def resource_list(catalog: Catalog, group: str, version: str) -> Obj | None:
    types = sorted(catalog.resources(group, version), key=lambda r: r.plural)
    if not types:
        return None
    resources: list[dict[str, Any]] = []
    for rt in types:
        entry: Obj = {
            "name": rt.plural,
            "singularName": rt.singular,
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": sorted(rt.verbs),
        }
        if rt.short_names:
            entry["shortNames"] = list(rt.short_names)
        if rt.categories:
            entry["categories"] = list(rt.categories)
        resources.append(entry)
        for sub in rt.subresources:
            sub_entry: Obj = {
                "name": f"{rt.plural}/{sub.name}",
                "singularName": "",
                "namespaced": rt.namespaced,
                "kind": sub.kind or rt.kind,
                "verbs": list(sub.verbs),
            }
            if (sub.group, sub.version) != (rt.group, rt.version) and sub.kind:
                sub_entry["group"], sub_entry["version"] = sub.group, sub.version
            resources.append(sub_entry)
    gv = f"{group}/{version}" if group else version
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv,
        "resources": resources,
    }
