"""The reconcile's side of an outage: a login or read failing because Vault is away parks the
object (one status write), later reconciles send nothing, and the probe resumes them all; a
failure that is the request's own is retried by the queue as before."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from plumbing.kube import JSON
from syncd.controller import Caches, Controller, NotReady
from syncd.outages import Outages, Verdict
from syncd.specs import GROUP, VAULT_STATIC_SECRET, VaultAuth, VaultConnection
from syncd.vault_clients import AuthError
from testbed.waiting import until

OPS = "vault-syncd"
Key = tuple[str, str]


def _obj(kind: str, name: str, namespace: str, spec: JSON) -> JSON:
    return {"apiVersion": f"{GROUP}/v1beta1", "kind": kind,
            "metadata": {"name": name, "namespace": namespace, "generation": 1,
                         "uid": f"uid-{name}", "resourceVersion": "1"},
            "spec": spec}


class Cache:
    def __init__(self, *objects: JSON) -> None:
        self.objects = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in objects}
        self.namespaces: tuple[str, ...] = ()
        self.resource = VAULT_STATIC_SECRET

    def get(self, namespace: str, name: str) -> JSON | None:
        return self.objects.get((namespace, name))

    def __iter__(self) -> Iterator[JSON]:
        return iter(self.objects.values())


@dataclass
class Status:
    writes: list[JSON] = field(default_factory=list)

    def current(self, obj: JSON) -> JSON:
        return dict(obj.get("status") or {})

    async def update(self, obj: JSON, change: Callable[[JSON], JSON]) -> bool:
        fields = change(self.current(obj))
        obj["status"] = {**self.current(obj), **fields}
        self.writes.append(fields)
        return True

    def forget(self, key: Key) -> None:
        return None


@dataclass
class Recorder:
    events: list[tuple[str, str]] = field(default_factory=list)

    async def post(self, obj: JSON, *, type: str, reason: str, message: str) -> None:
        self.events.append((reason, message))


@dataclass
class Clients:
    """A login that fails as ``error`` says."""

    error: AuthError
    logins: int = 0

    async def get(self, *, namespace: str, auth: VaultAuth,
                  connection: VaultConnection) -> Any:
        self.logins += 1
        raise self.error


@dataclass
class World:
    controller: Controller
    clients: Clients
    status: Status
    recorder: Recorder
    verdicts: list[Verdict]
    probes: list[str]
    resumed: list[Key]
    outages: Outages


def _vss(name: str) -> JSON:
    return _obj("VaultStaticSecret", name, "app", {
        "mount": "secret", "path": name, "type": "kv-v2", "refreshAfter": "7s",
        "destination": {"name": name, "create": True}})


@pytest.fixture
async def world() -> Any:
    auth = _obj("VaultAuth", "default", OPS, {"method": "appRole", "mount": "approle",
                                              "appRole": {"roleId": "r", "secretRef": "s"}})
    connection = _obj("VaultConnection", "default", OPS, {"address": "https://vault:8200"})
    owners = Cache(_vss("a"), _vss("b"))
    caches = Caches(static_secrets=cast(Any, owners), auths=cast(Any, Cache(auth)),
                    connections=cast(Any, Cache(connection)), secrets=cast(Any, Cache()))
    verdicts: list[Verdict] = [("VaultSealed", "Vault is sealed")]
    probes: list[str] = []

    async def probe(connection: VaultConnection) -> Verdict:
        probes.append(connection.name)
        return verdicts[-1]

    outages = Outages(probe=probe, base=0.01, cap=0.02, healthy_for=0, quiet_for=0,
                      rng=random.Random(2))
    status, recorder = Status(), Recorder()
    clients = Clients(AuthError("VaultAuth vault-syncd/default: login at auth/approle: Vault is"
                                " sealed", reason="VaultSealed"))
    unused = cast(Any, None)
    controller = Controller(caches=caches, clients=cast(Any, clients), pool=unused,
                            recorder=cast(Any, recorder), status=cast(Any, status),
                            kube=unused, hmac_key=b"k" * 32, operator_namespace=OPS,
                            templates=unused, outages=outages)
    resumed: list[Key] = []
    outages.resume_with(controller.kind, resumed.append)
    try:
        yield World(controller, clients, status, recorder, verdicts, probes, resumed, outages)
    finally:
        await outages.close()


async def test_a_login_refused_by_a_sealed_vault_parks_the_objects_until_it_answers(
    world: World,
) -> None:
    assert await world.controller.reconcile(("app", "a")) is None  # parked: no retry of its own
    assert world.clients.logins == 1 and world.probes == ["default"]
    [fields] = world.status.writes
    ready = {c["type"]: c for c in fields["conditions"]}["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "VaultSealed")
    assert "waiting for Vault to answer again" in ready["message"]
    assert world.recorder.events[0][0] == "VaultSealed"

    # Again (an edit, a notice), and another object: no login, no status write for the first.
    assert await world.controller.reconcile(("app", "a")) is None
    assert await world.controller.reconcile(("app", "b")) is None
    assert world.clients.logins == 1
    assert len(world.status.writes) == 2  # the first time of "b"
    assert world.outages.holds(world.controller.kind, ("app", "a"))

    world.verdicts.append(None)  # Vault answers
    await until(lambda: sorted(world.resumed) == [("app", "a"), ("app", "b")])
    assert not world.outages.holds(world.controller.kind, ("app", "a"))


async def test_a_failure_that_is_the_requests_own_is_retried_by_the_queue(
    world: World,
) -> None:
    world.verdicts.append(None)  # sys/health answers: Vault is there
    world.clients.error = AuthError("login at auth/approle: Vault answered 500: plugin crashed",
                                    reason="VaultUnavailable")
    with pytest.raises(AuthError):
        await world.controller.reconcile(("app", "a"))
    assert world.probes == ["default"]
    assert not world.outages.holds(world.controller.kind, ("app", "a"))
    assert world.status.writes[-1]["conditions"][-1]["message"].endswith("plugin crashed")
    # A refusal of the credentials is never a reason to probe.
    world.clients.error = AuthError("login refused: permission denied")
    with pytest.raises(AuthError):
        await world.controller.reconcile(("app", "b"))
    assert world.probes == ["default"]


async def test_the_retry_bound_is_the_objects_refresh_after(world: World) -> None:
    assert world.controller.retry_bound(("app", "a")) == 7.0
    assert world.controller.retry_bound(("app", "gone")) is None


async def test_an_object_whose_connection_is_gone_waits_on_no_outage(world: World) -> None:
    assert await world.controller.reconcile(("app", "a")) is None
    assert world.outages.holds(world.controller.kind, ("app", "a"))
    cast(Cache, world.controller._caches.connections).objects.clear()
    with pytest.raises(NotReady):
        await world.controller.reconcile(("app", "a"))
    assert not world.outages.holds(world.controller.kind, ("app", "a"))
    assert world.outages.probing == []  # nobody waits for it: its probe stopped
