"""The catalog of served resource types: built-ins plus whatever the stored CRDs define.

It follows the CRD storage directly (a store subscription, so a CRD is served the moment it is
committed, as the real apiextensions server does once names are accepted) and keeps a generation
counter that discovery and OpenAPI use as their cache-busting hash.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from testbed.kube import crds
from testbed.kube.kinds import ResourceType, builtin_types
from testbed.kube.store import DELETED, Change, Store

CRD_STORAGE = "apiextensions.k8s.io/customresourcedefinitions"

# Discovery order of the built-in groups (the real server's priority order, roughly).
GROUP_ORDER = (
    "",
    "apps",
    "events.k8s.io",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "coordination.k8s.io",
    "policy",
    "networking.k8s.io",
    "rbac.authorization.k8s.io",
    "apiextensions.k8s.io",
)


class Catalog:
    def __init__(self, store: Store) -> None:
        self.generation = 0
        self._by_gvr: dict[tuple[str, str, str], ResourceType] = {}
        self._custom: dict[str, list[ResourceType]] = {}  # CRD name -> types
        for rt in builtin_types():
            self._by_gvr[(rt.group, rt.version, rt.plural)] = rt
        store.subscribe(CRD_STORAGE, self._on_crd)

    def _on_crd(self, _storage: str, change: Change) -> None:
        name = change.obj["metadata"]["name"]
        for rt in self._custom.pop(name, []):
            self._by_gvr.pop((rt.group, rt.version, rt.plural), None)
        if change.type != DELETED:
            types = crds.types_for(change.obj)
            for rt in types:
                # A CRD may not shadow a built-in type.
                self._by_gvr.setdefault((rt.group, rt.version, rt.plural), rt)
            self._custom[name] = types
        self.generation += 1

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._by_gvr.get((group, version, plural))

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        group, _, version = api_version.rpartition("/")
        for rt in self._by_gvr.values():
            if rt.group == group and rt.version == version and rt.kind == kind:
                return rt
        return None

    def by_storage(self, storage: str) -> list[ResourceType]:
        return [rt for rt in self._by_gvr.values() if rt.storage == storage]

    def preferred(self, storage: str) -> ResourceType | None:
        """The ResourceType naming a storage (the core one for events)."""
        types = self.by_storage(storage)
        for rt in types:
            if rt.custom is None or not rt.custom.crd_name:
                return rt
        return types[0] if types else None

    def __iter__(self) -> Iterator[ResourceType]:
        return iter(self._by_gvr.values())

    def groups(self) -> list[tuple[str, list[str]]]:
        """Groups with their versions (preferred first), in discovery order."""
        found: dict[str, list[str]] = {}
        for rt in self._by_gvr.values():
            versions = found.setdefault(rt.group, [])
            if rt.version not in versions:
                versions.append(rt.version)
        ordered = [g for g in GROUP_ORDER if g in found]
        ordered += sorted(g for g in found if g not in GROUP_ORDER)
        return [(g, _sort_versions(found[g])) for g in ordered]

    def resources(self, group: str, version: str) -> list[ResourceType]:
        return [rt for rt in self._by_gvr.values() if rt.group == group and rt.version == version]


def _sort_versions(versions: list[str]) -> list[str]:
    """Kubernetes version priority: GA > beta > alpha, higher numbers first."""

    def key(v: str) -> tuple[int, int, int]:
        m = re.match(r"^v(\d+)(?:(alpha|beta)(\d+))?$", v)
        if not m:
            return (3, 0, 0)
        stage = {"": 0, "beta": 1, "alpha": 2}[m.group(2) or ""]
        return (stage, -int(m.group(1)), -int(m.group(3) or 0))

    return sorted(versions, key=key)
