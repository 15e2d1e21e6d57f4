"""The outage gate's tenant boundary, tried as the hostile tenant would.

Tenant B holds ``edit`` in its namespace and nothing else. With its own token it creates
VaultConnections to the very address tenant A reads through, but broken by its own hand: one
trusts the wrong CA (every request, sys/health included, fails with an SSLError: an outage
the sys/health probe confirms), and the other reads paths whose reads are reset on the way
while sys/health answers (an outage the reads themselves show: a path outage). B's objects
park and say so; A's objects keep following their rotations within ``refreshAfter`` and
their statuses, Events and Secrets never hear of an outage. A gate keyed by address would
park A's objects on B's outage (and, for the CA, never let them go: the probe is made
through B's connection).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import hvac

from testbed.pki import Authority
from testbed.vault import running_vault
from tests.syncd.e2e.test_vault_access_boundaries import TOKEN_SECRET_TYPE, _allow
from tests.syncd.e2e.world import APP_NS, GROUP_VERSION, World

B_NS = "team-b"
A_OBJECTS = 5
B_OBJECTS = 4
REFRESH = 1.0
WAITING = "waiting for Vault to answer again"


def _objects(namespace: str, *, connection: str, ca: str, prefix: str, count: int,
             address: str) -> list[dict[str, Any]]:
    """A VaultConnection (trusting the CA in Secret ``ca``), a token VaultAuth, and ``count``
    VaultStaticSecrets reading ``<prefix>-<i>``."""
    meta = {"namespace": namespace}
    objects: list[dict[str, Any]] = [
        {"kind": "VaultConnection", "metadata": {"name": connection, **meta},
         "spec": {"address": address, "caCertSecretRef": ca, "timeout": "2s"}},
        {"kind": "VaultAuth", "metadata": {"name": connection, **meta},
         "spec": {"method": "token", "vaultConnectionRef": connection,
                  "token": {"secretRef": {"name": "tenant-token", "key": "token"}}}},
    ]
    objects += [
        {"kind": "VaultStaticSecret", "metadata": {"name": f"{prefix}-{i}", **meta},
         "spec": {"vaultAuthRef": connection, "mount": "secret", "path": f"{prefix}-{i}",
                  "type": "kv-v2", "refreshAfter": f"{REFRESH:g}s",
                  "destination": {"name": f"{prefix}-{i}", "create": True}}}
        for i in range(count)]
    return objects


def _ready(world: World, name: str, namespace: str) -> dict[str, Any]:
    obj = world.kube.admin.get(GROUP_VERSION, "VaultStaticSecret", name, namespace) or {}
    return next((c for c in (obj.get("status") or {}).get("conditions") or []
                 if c["type"] == "Ready"), {})


async def test_a_tenants_broken_connection_to_the_shared_address_parks_only_its_objects(
    world: World, tmp_path: Path,
) -> None:
    async with running_vault(tls=True, tls_dir=tmp_path / "tls") as vault:
        root = vault.admin.bootstrap(shares=1, threshold=1, kv_v2_path="secret").root_token
        world.secret_values.add(root)
        client = hvac.Client(url=vault.address, token=root, verify=vault.verify)

        async def write(path: str, label: str) -> str:
            value = world.value(label)
            await world.vault_call(client.secrets.kv.v2.create_or_update_secret, path=path,
                                   secret={"password": value})
            return value

        a_names = [f"a-{i}" for i in range(A_OBJECTS)]
        for name in [*a_names, *(f"b-{i}" for i in range(B_OBJECTS))]:
            await write(name, f"first-{name}")
        _allow(world, vault.address)
        right_ca = Path(vault.verify).read_text()
        wrong_ca = Authority.create("elsewhere", tmp_path).ca_file.read_text()
        world.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": B_NS}})

        for namespace, objects in (
            (APP_NS, _objects(APP_NS, connection="shared", ca="vault-ca", prefix="a",
                              count=A_OBJECTS, address=vault.address)),
            (B_NS, [
                *_objects(B_NS, connection="wrong-ca", ca="wrong-ca", prefix="wrong",
                          count=B_OBJECTS, address=vault.address),
                *_objects(B_NS, connection="reset", ca="vault-ca", prefix="b",
                          count=B_OBJECTS, address=vault.address)]),
        ):
            async with world.tenant(namespace=namespace) as tenant:
                await tenant.create({"kind": "Secret", "metadata": {"name": "tenant-token"},
                                     "type": TOKEN_SECRET_TYPE,
                                     "stringData": {"token": root}})
                await tenant.create({"kind": "Secret", "metadata": {"name": "vault-ca"},
                                     "stringData": {"ca.crt": right_ca}})
                await tenant.create({"kind": "Secret", "metadata": {"name": "wrong-ca"},
                                     "stringData": {"ca.crt": wrong_ca}})
                for obj in objects:
                    await tenant.create(obj)
        # B's reads through "reset" are cut on the way (sys/health answers 200 meanwhile).
        vault.admin.add_fault(method="GET", path="/v1/secret/data/b-*", reset=True)
        world.start_syncd()

        for name in a_names:
            await world.synced(name)
        # B's objects park: each one's status says that it waits.
        b_names = [f"{prefix}-{i}" for prefix in ("wrong", "b") for i in range(B_OBJECTS)]
        for name in b_names:
            await world.eventually(
                lambda n=name: (found := _ready(world, n, B_NS)).get(
                    "reason") == "VaultUnavailable" and WAITING in found.get("message", ""),
                deadline=15, message=f"{name} parked")

        # Meanwhile A rotates, and each rotation arrives within refreshAfter + a margin.
        for round_ in range(3):
            values = {name: await write(name, f"rot{round_}-{name}") for name in a_names}
            written = time.monotonic()
            await world.eventually(
                lambda v=values: all((world.secret_data(n) or {}).get("password") == value
                                     for n, value in v.items()),
                deadline=REFRESH + 3, message=f"A's rotation {round_} delivered")
            assert time.monotonic() - written <= REFRESH + 3

        # A never heard of an outage: not in a status, not in an Event.
        for name in a_names:
            ready = _ready(world, name, APP_NS)
            assert ready.get("status") == "True", ready
        a_events = [e for e in world.kube.admin.list("v1", "Event", APP_NS)
                    if e["involvedObject"].get("name", "").startswith("a-")]
        assert not [e for e in a_events if e.get("type") == "Warning"], a_events
        # B still waits (A's reads being answered did not let B's objects go), each on its
        # own connection's outage, named.
        for prefix, problem in (("wrong", "VaultConnection team-b/wrong-ca"),
                                ("wrong", "SSLError"),
                                ("b", "VaultConnection team-b/reset"),
                                ("b", "reads fail without an answer (ConnectionError)")):
            for i in range(B_OBJECTS):
                message = _ready(world, f"{prefix}-{i}", B_NS).get("message", "")
                assert WAITING in message and problem in message, message
        await world.stop_syncd()
