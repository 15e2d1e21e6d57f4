"""Parsed specs are reused only while everything they were parsed from is unchanged.

The controller keeps the parsed VaultStaticSecret (its SecretTransformations folded in), the
parsed VaultAuth (its VaultAuthGlobal merged in) and the parsed VaultConnection between
reconciles (:mod:`syncd.spec_cache`). Each test edits one input the way the API server does (a
new object with a new resourceVersion) and checks the next parse sees it.
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any, cast

import pytest
import structlog

from plumbing.kube import JSON
from syncd.controller import Caches, Controller, NotReady
from syncd.spec_cache import SpecCache
from syncd.specs import parse_vault_static_secret

GV = "secrets.vault-syncd.dev/v1beta1"
OPERATOR_NS = "vault-syncd"
_versions = itertools.count(1)


class FakeInformer:
    """What the controller reads of an Informer: a store by (namespace, name)."""

    def __init__(self) -> None:
        self.store: dict[tuple[str, str], JSON] = {}
        self.namespaces: tuple[str, ...] = ()

    def put(self, kind: str, namespace: str, name: str, spec: dict[str, Any],
            uid: str | None = None) -> JSON:
        """Create or replace, as a watch event would: a new dict, a new resourceVersion."""
        old = self.store.get((namespace, name))
        obj = {"apiVersion": GV, "kind": kind, "metadata": {
            "name": name, "namespace": namespace, "generation": 1,
            "uid": uid or (old["metadata"]["uid"] if old else f"uid-{kind}-{name}"),
            "resourceVersion": str(next(_versions))}, "spec": spec}
        self.store[(namespace, name)] = obj
        return obj

    def get(self, namespace: str, name: str) -> JSON | None:
        return self.store.get((namespace, name))

    def delete(self, namespace: str, name: str) -> None:
        del self.store[(namespace, name)]

    def __len__(self) -> int:
        return len(self.store)


class World:
    def __init__(self) -> None:
        self.vss, self.auths, self.connections = FakeInformer(), FakeInformer(), FakeInformer()
        self.globals, self.transformations = FakeInformer(), FakeInformer()
        caches = Caches(static_secrets=cast(Any, self.vss), auths=cast(Any, self.auths),
                        connections=cast(Any, self.connections), secrets=cast(Any, None),
                        auth_globals=cast(Any, self.globals),
                        transformations=cast(Any, self.transformations))
        none = cast(Any, None)
        status = cast(Any, SimpleNamespace(forget=lambda key: None))
        self.controller = Controller(
            caches=caches, clients=none, pool=none, recorder=none, status=status, kube=none,
            hmac_key=b"k" * 32, operator_namespace=OPERATOR_NS, templates=none)
        self.connections.put("VaultConnection", OPERATOR_NS, "default",
                             {"address": "http://vault-a:8200"})
        self.auths.put("VaultAuth", "app", "a", {
            "method": "kubernetes", "mount": "kubernetes", "vaultAuthGlobalRef": {"name": "g"},
            "kubernetes": {"role": "web", "serviceAccount": "default"}})
        self.globals.put("VaultAuthGlobal", "app", "g",
                         {"defaultVaultNamespace": "tenant-1"})
        self.transformations.put("SecretTransformation", "app", "t",
                                 {"templates": {"url": {"text": '{{ "one" }}'}}})
        self.put_vss(path="web")

    def put_vss(self, *, path: str) -> JSON:
        return self.vss.put("VaultStaticSecret", "app", "web", {
            "mount": "secret", "path": path, "type": "kv-v2", "vaultAuthRef": "a",
            "destination": {"name": "web", "create": True,
                            "transformation": {"transformationRefs": [{"name": "t"}]}}})

    async def parse(self) -> Any:
        obj = self.vss.get("app", "web")
        assert obj is not None
        return await self.controller._parse(obj, parse=parse_vault_static_secret,
                                            log=structlog.get_logger("test"))

    async def resolve(self) -> Any:
        return self.controller.resolve(await self.parse())


def _url_template(spec: Any) -> str:
    return str(spec.destination.transformation.templates["url"].text)


async def test_an_unchanged_refresh_reuses_every_parsed_spec() -> None:
    world = World()
    spec = await world.parse()
    auth, connection = world.controller.resolve(spec)
    assert await world.parse() is spec
    again = world.controller.resolve(spec)
    assert again[0] is auth and again[1] is connection


async def test_an_edited_vault_static_secret_is_parsed_again() -> None:
    world = World()
    assert (await world.parse()).path == "web"
    world.put_vss(path="api")
    assert (await world.parse()).path == "api"


async def test_an_edited_transformation_is_seen_by_the_next_reconcile() -> None:
    world = World()
    assert '"one"' in _url_template(await world.parse())
    world.transformations.put("SecretTransformation", "app", "t",
                              {"templates": {"url": {"text": '{{ "two" }}'}}})
    assert '"two"' in _url_template(await world.parse())


async def test_a_deleted_transformation_is_a_failure_not_a_cached_spec() -> None:
    world = World()
    await world.parse()
    world.transformations.delete("app", "t")
    failures: list[str] = []

    async def fail(obj: JSON, *, reason: str, message: str, ready_only: bool = False) -> None:
        failures.append(reason)

    world.controller._fail = fail  # type: ignore[method-assign]
    with pytest.raises(Exception, match="TransformationNotFound"):
        await world.parse()
    assert failures == ["TransformationNotFound"]


async def test_an_edited_vault_auth_is_seen_by_the_next_reconcile() -> None:
    world = World()
    auth, _ = await world.resolve()
    assert auth.kubernetes.role == "web"
    world.auths.put("VaultAuth", "app", "a", {
        "method": "kubernetes", "mount": "kubernetes", "vaultAuthGlobalRef": {"name": "g"},
        "kubernetes": {"role": "api", "serviceAccount": "default"}})
    auth, _ = await world.resolve()
    assert auth.kubernetes.role == "api"


async def test_an_edited_or_recreated_global_is_seen_by_the_next_reconcile() -> None:
    world = World()
    assert (await world.resolve())[0].vault_namespace == "tenant-1"
    world.globals.put("VaultAuthGlobal", "app", "g", {"defaultVaultNamespace": "tenant-2"})
    assert (await world.resolve())[0].vault_namespace == "tenant-2"
    # Deleted and recreated: same spec, another uid; the merged auth says which global.
    world.globals.delete("app", "g")
    with pytest.raises(NotReady, match="not found"):
        await world.resolve()
    world.globals.put("VaultAuthGlobal", "app", "g", {"defaultVaultNamespace": "tenant-3"},
                      uid="another")
    assert (await world.resolve())[0].vault_namespace == "tenant-3"


async def test_a_default_global_created_later_is_seen() -> None:
    """A lookup that found nothing is an input too: the object appearing changes the parse."""
    world = World()
    world.auths.put("VaultAuth", "app", "a", {
        "method": "kubernetes", "mount": "kubernetes",
        "vaultAuthGlobalRef": {"allowDefault": True},
        "kubernetes": {"role": "web", "serviceAccount": "default"}})
    with pytest.raises(NotReady, match="not found"):
        await world.resolve()
    world.globals.put("VaultAuthGlobal", OPERATOR_NS, "default",
                      {"defaultVaultNamespace": "from-default"})
    assert (await world.resolve())[0].vault_namespace == "from-default"


async def test_an_edited_vault_connection_is_seen_by_the_next_reconcile() -> None:
    world = World()
    assert (await world.resolve())[1].address == "http://vault-a:8200"
    world.connections.put("VaultConnection", OPERATOR_NS, "default",
                          {"address": "http://vault-b:8200"})
    assert (await world.resolve())[1].address == "http://vault-b:8200"


async def test_entries_go_with_their_objects() -> None:
    world = World()
    await world.resolve()
    assert len(world.controller._specs) == 1
    world.controller.forget(("app", "web"))
    assert len(world.controller._specs) == 0


def test_entries_of_deleted_referents_are_swept() -> None:
    """Nobody tells the controller a VaultAuth is gone: the cache sweeps when it has doubled."""
    live = FakeInformer()
    cache: SpecCache[tuple[str, str]] = SpecCache()
    for i in range(100):
        obj = live.put("VaultAuth", "app", f"a{i}", {})
        cache.parsed(("app", f"a{i}"), obj, parse=lambda o, _: o, lookup=live.get)
        cache.prune_gone(live.get)
        if i >= 10:
            live.delete("app", f"a{i - 10}")  # ten alive at any time
    assert len(cache) <= 2 * 11 + 16  # twice the live ones (10, 11 mid-step), plus the floor
    for i in range(90, 100):
        assert ("app", f"a{i}") in cache._entries  # the live ones are kept


def test_objects_without_a_version_are_parsed_every_time() -> None:
    cache: SpecCache[str] = SpecCache()
    calls: list[JSON] = []

    def parse(obj: JSON, lookup: Any) -> int:
        calls.append(obj)
        return len(calls)

    hand_made: JSON = {"metadata": {"name": "x"}}
    assert cache.parsed("x", hand_made, parse=parse, lookup=lambda ns, n: None) == 1
    assert cache.parsed("x", hand_made, parse=parse, lookup=lambda ns, n: None) == 2
    assert len(cache) == 0
