"""The outage gate: one probe per VaultConnection, parked objects, and their resumption."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator

from plumbing.vault import VaultPool, make_client
from syncd.outages import PATH_FAILURES, Outages, Verdict, path_failure
from syncd.sources import SourceForbidden, SourceMissing, VaultSealed, VaultUnavailable
from syncd.specs import VaultConnection
from syncd.vault_health import HEALTH_QUERY, health_blocking
from testbed.vault import running_vault
from testbed.waiting import until

Key = tuple[str, str]
KIND = "vaultstaticsecrets"
SEALED: Verdict = ("VaultSealed", "Vault is sealed")


def connection(name: str = "default", *, namespace: str = "vault-syncd",
               address: str = "https://vault.vault.svc:8200",
               generation: int = 1) -> VaultConnection:
    return VaultConnection(namespace=namespace, name=name, generation=generation,
                           uid=f"uid-{namespace}-{name}", address=address,
                           ca_cert_secret_ref=None, tls_server_name=None, skip_tls_verify=False,
                           timeout_seconds=None)


class FakeVault:
    """Answers probes per VaultConnection name; counts them."""

    def __init__(self) -> None:
        self.verdicts: dict[str, Verdict] = {}
        self.probes: list[str] = []
        self.gate: asyncio.Event | None = None  # set: probes wait for it

    async def probe(self, connection: VaultConnection) -> Verdict:
        self.probes.append(connection.name)
        if self.gate is not None:
            await self.gate.wait()
        return self.verdicts.get(connection.name)


@contextlib.asynccontextmanager
async def gate(vault: FakeVault, *, quiet_for: float = 0.0,
               ) -> AsyncIterator[tuple[Outages, list[Key]]]:
    outages = Outages(probe=vault.probe, base=0.01, cap=0.02, healthy_for=60,
                      quiet_for=quiet_for, rng=random.Random(1))
    resumed: list[Key] = []
    outages.resume_with(KIND, resumed.append)
    try:
        yield outages, resumed
    finally:
        await outages.close()


async def test_concurrent_failures_cost_one_probe_and_an_answer_is_reused() -> None:
    vault = FakeVault()
    vault.gate = asyncio.Event()
    async with gate(vault) as (outages, _):
        waiting = [asyncio.create_task(outages.confirm(connection())) for _ in range(10)]
        await until(lambda: len(vault.probes) == 1)
        vault.gate.set()
        assert await asyncio.gather(*waiting) == [None] * 10  # Vault answers: their own errors
        assert await outages.confirm(connection()) is None
        assert vault.probes == ["default"]  # the answer stands for a while (healthy_for)
        assert outages.down(connection()) is None


async def test_a_down_connection_parks_its_objects_and_one_probe_resumes_them_all() -> None:
    vault = FakeVault()
    vault.verdicts["default"] = SEALED
    async with gate(vault) as (outages, resumed):
        outage = await outages.confirm(connection())
        assert outage is not None and outage.reason == "VaultSealed"
        assert outages.down(connection()) is outage
        keys = [("app", f"s{i}") for i in range(50)]
        assert all(outages.park(outage, kind=KIND, key=key) for key in keys)
        # Parked again (a user's edit, a notice): no second status write.
        assert not any(outages.park(outage, kind=KIND, key=key) for key in keys)
        assert all(outages.holds(KIND, key) for key in keys)
        # Later failures of the same connection cost no probe of their own.
        assert await outages.confirm(connection()) is outage
        await until(lambda: outage.probes >= 5)
        assert resumed == []
        probes_while_down = len(vault.probes)
        assert probes_while_down == outage.probes + 1  # the confirmation and the loop: no more

        vault.verdicts["default"] = None  # Vault answers again
        await until(lambda: len(resumed) == 50)
        assert sorted(resumed) == sorted(keys)  # each once
        assert outages.down(connection()) is None
        assert not any(outages.holds(KIND, key) for key in keys)
        assert outages.probing == []


async def test_a_short_outage_writes_no_status_and_a_long_one_says_so_once() -> None:
    """A Vault restarted and unsealed within the quiet time costs the API server nothing:
    no object is told to write its status (twice: parked, then resumed). Past it, every
    parked object goes through its queue once more, and is told to say so, once."""
    vault = FakeVault()
    vault.verdicts["default"] = SEALED
    keys = [("app", f"s{i}") for i in range(20)]
    async with gate(vault, quiet_for=0.3) as (outages, resumed):
        outage = await outages.confirm(connection())
        assert outage is not None
        assert not any(outages.park(outage, kind=KIND, key=key) for key in keys)
        vault.verdicts["default"] = None  # back within the quiet time
        await until(lambda: len(resumed) == 20)
        assert not outage.announced and outage.told == set()

    vault.verdicts["default"] = SEALED
    async with gate(vault, quiet_for=0.3) as (outages, resumed):
        outage = await outages.confirm(connection())
        assert outage is not None
        assert not any(outages.park(outage, kind=KIND, key=key) for key in keys)
        await until(lambda: len(resumed) == 20)  # the announcement: each once, still down
        assert outage.announced and outages.down(connection()) is outage
        assert sorted(resumed) == sorted(keys)
        assert all(outages.park(outage, kind=KIND, key=key) for key in keys)  # say so
        assert not any(outages.park(outage, kind=KIND, key=key) for key in keys)  # once
        late = ("app", "late")  # parked after the announcement: says so at once
        assert outages.park(outage, kind=KIND, key=late)
        vault.verdicts["default"] = None
        await until(lambda: len(resumed) == 20 + 21)
        assert outages.down(connection()) is None


async def test_connections_are_told_apart_by_their_object_not_their_address() -> None:
    """A tenant's VaultConnection to the shared Vault's address, broken by its own settings
    (a wrong CA, a tiny timeout), parks that tenant's objects only."""
    vault = FakeVault()
    vault.verdicts["tenant"] = ("VaultUnavailable", "Vault unreachable: SSLError")
    shared, tenant = connection(), connection("tenant", namespace="team-a")
    assert shared.address == tenant.address
    async with gate(vault) as (outages, _):
        outage = await outages.confirm(tenant)
        assert outage is not None
        outages.park(outage, kind=KIND, key=("team-a", "x"))
        assert outages.down(shared) is None
        assert await outages.confirm(shared) is None
        # A new generation of the same VaultConnection (fixed by its owner) is another one.
        assert outages.down(connection("tenant", namespace="team-a", generation=2)) is None


async def test_the_last_object_leaving_stops_the_probes() -> None:
    vault = FakeVault()
    vault.verdicts["default"] = SEALED
    async with gate(vault) as (outages, resumed):
        outage = await outages.confirm(connection())
        assert outage is not None
        outages.park(outage, kind=KIND, key=("app", "a"))
        outages.park(outage, kind=KIND, key=("app", "b"))
        outages.release(kind=KIND, key=("app", "a"))  # deleted
        assert outages.down(connection()) is outage and len(outages.probing) == 1
        outages.release(kind=KIND, key=("app", "b"))  # now reads through another connection
        assert outages.down(connection()) is None
        await until(lambda: outages.probing == [])
        assert resumed == []


async def test_a_probe_that_fails_holds_nobody_back() -> None:
    async def broken(connection: VaultConnection) -> Verdict:
        raise RuntimeError("bug")

    outages = Outages(probe=broken)
    try:
        assert await outages.confirm(connection()) is None
    finally:
        await outages.close()


async def test_close_stops_every_probe() -> None:
    vault = FakeVault()
    vault.verdicts["default"] = SEALED
    outages = Outages(probe=vault.probe, base=0.01, cap=0.02)
    outage = await outages.confirm(connection())
    assert outage is not None
    await until(lambda: len(vault.probes) >= 2)
    assert len(outages.probing) == 1
    await outages.close()
    assert outages.probing == []


RESET = VaultUnavailable("kv-v2 secret/app: Vault unreachable: ConnectionError",
                         transport="ConnectionError")


def test_what_says_the_way_to_vault_is_broken_and_what_is_one_path() -> None:
    for broken in (RESET, VaultUnavailable("x", transport="ConnectTimeout"),
                   VaultUnavailable("x", transport="SSLError"),
                   VaultUnavailable("x", status=502), VaultUnavailable("x", status=503),
                   VaultUnavailable("x", status=504), VaultSealed("x")):
        assert path_failure(broken), broken
    for own in (VaultUnavailable("x", status=500), VaultUnavailable("x", status=429),
                VaultUnavailable("x", status=307),  # a redirect refused: that answer's
                VaultUnavailable("x", transport="ReadTimeout"),  # a slow mount
                VaultUnavailable("x", transport="ResponseTooLarge"),
                SourceForbidden("x"), SourceMissing("x"), RuntimeError("x")):
        assert not path_failure(own), own


async def test_reads_failing_on_the_way_park_the_connection_behind_one_canary() -> None:
    """sys/health answers, the reads do not: after PATH_FAILURES distinct objects failed
    with no answer between, the connection is down; one parked object at a time goes back
    to read for all (taken in turn), and the first answer resumes every other one."""
    vault = FakeVault()
    async with gate(vault) as (outages, resumed):
        keys = [("app", f"s{i}") for i in range(10)]
        for key in keys[:PATH_FAILURES - 1]:
            assert outages.report(connection(), kind=KIND, key=key, error=RESET) is None
        outage = outages.report(connection(), kind=KIND, key=keys[PATH_FAILURES - 1],
                                error=RESET)
        assert outage is not None and outage.path and outage.reason == "VaultUnavailable"
        assert "ConnectionError" in outage.message and "one object's read" in outage.message
        assert outages.down(connection()) is outage
        for key in keys:
            outages.park(outage, kind=KIND, key=key)
        # Later failures of the connection's objects park them too; no sys/health probe.
        assert outages.report(connection(), kind=KIND, key=keys[0], error=RESET) is outage
        assert vault.probes == []

        # Canaries, one at a time, each failing: every one a different object.
        tried = []
        for _ in range(3):
            await until(lambda: outage.canary is not None and outage.canary not in tried)
            canary = outage.canary
            assert canary is not None
            tried.append(canary)
            assert resumed == [c[1] for c in tried]  # only the canaries went back to work
            assert outages.report(connection(), kind=KIND, key=canary[1],
                                  error=RESET) is outage
            assert not outages.park(outage, kind=KIND, key=canary[1])  # as the reconcile does
        assert len(set(tried)) == 3

        # The next canary's read is answered (a 404 is an answer too): everyone resumes.
        await until(lambda: outage.canary is not None and outage.canary not in tried)
        canary = outage.canary
        assert canary is not None
        assert outages.report(connection(), kind=KIND, key=canary[1],
                              error=SourceMissing("x")) is None
        assert outages.down(connection()) is None
        resumed_after = resumed[len(tried) + 1:]
        assert sorted(resumed_after) == sorted(k for k in keys if k != canary[1])
        assert not any(outages.holds(KIND, key) for key in keys)
        await until(lambda: outages.probing == [])


async def test_a_canary_deleted_or_stuck_before_its_read_hands_over_at_once() -> None:
    """A canary whose try ends without a read (deleted; parked again by a failing login)
    is followed by the next object at the probes' cadence, not after CANARY_WAIT."""
    async with gate(FakeVault()) as (outages, _):
        keys = [("app", f"s{i}") for i in range(3)]
        outage = None
        for key in keys:
            outage = outages.report(connection(), kind=KIND, key=key, error=RESET)
        assert outage is not None
        for key in keys:
            outages.park(outage, kind=KIND, key=key)
        await until(lambda: outage.canary is not None)
        first = outage.canary
        assert first is not None
        outages.release(kind=first[0], key=first[1])  # deleted
        await until(lambda: outage.canary not in (None, first), deadline=1)
        second = outage.canary
        assert second is not None
        assert not outages.park(outage, kind=KIND, key=second[1])  # its login failed
        await until(lambda: outage.canary not in (None, second), deadline=1)
        assert outage.canary != first  # gone: never tried again
        assert outages.down(connection()) is outage


async def test_one_object_failing_alone_or_answered_failures_park_nobody() -> None:
    vault = FakeVault()
    async with gate(vault) as (outages, _):
        for _ in range(10):  # one bad path, failing again and again
            assert outages.report(connection(), kind=KIND, key=("app", "bad"),
                                  error=RESET) is None
        for i in range(10):  # Vault's own answers about each path: a 500, a 403
            for error in (VaultUnavailable("x", status=500), SourceForbidden("x")):
                assert outages.report(connection(), kind=KIND, key=("app", f"s{i}"),
                                      error=error) is None
        # Failures of distinct objects, each followed by an answered read: no outage.
        for i in range(10):
            assert outages.report(connection(), kind=KIND, key=("app", f"r{i}"),
                                  error=RESET) is None
            assert outages.report(connection(), kind=KIND, key=("app", "ok"),
                                  error=None) is None
        assert outages.down(connection()) is None and outages.probing == []


async def test_one_tenants_failing_reads_never_park_another_tenants_objects() -> None:
    """The evidence is counted per VaultConnection object: tenant B's reads failing through
    its own (broken) VaultConnection to the shared address are not tenant A's."""
    vault = FakeVault()
    shared, tenant = connection(), connection("broken", namespace="team-b")
    async with gate(vault) as (outages, _):
        outages.report(shared, kind=KIND, key=("team-a", "x"), error=RESET)
        for i in range(PATH_FAILURES):
            outage = outages.report(tenant, kind=KIND, key=("team-b", f"s{i}"), error=RESET)
        assert outage is not None and outages.down(tenant) is outage
        assert outages.down(shared) is None
        assert outages.report(shared, kind=KIND, key=("team-a", "y"), error=RESET) is None
        assert outages.parked() == {("team-b", "broken"): 0}  # counted once parked
        outages.park(outage, kind=KIND, key=("team-b", "s0"))
        assert outages.parked() == {("team-b", "broken"): 1}


async def test_sys_health_verdicts_against_the_vault_emulation() -> None:
    pool = VaultPool(max_workers=1)
    async with running_vault() as vault:
        init = vault.admin.bootstrap(shares=1, threshold=1)
        client = make_client(address=vault.address, timeout=2)

        async def verdict() -> Verdict:
            return await pool.run(health_blocking, client)

        assert await verdict() is None
        vault.admin.seal()
        assert await verdict() == ("VaultSealed", "Vault is sealed")
        vault.admin.unseal(init.keys)
        assert await verdict() is None

        for fault, expected in (
            ({"reset": True}, "Vault unreachable: ConnectionError"),
            ({"status": 502}, "Vault answered sys/health with 502"),
            ({"status": 503, "errors": ["no healthy upstream"]},  # a proxy, not Vault
             "Vault answered sys/health with 503"),
        ):
            vault.admin.add_fault(path="/v1/sys/health", times=1, **fault)
            assert await verdict() == ("VaultUnavailable", expected)
        # A proxy hiding sys/health (403, 404) cannot tell: not an outage.
        vault.admin.add_fault(path="/v1/sys/health", status=404, times=1)
        assert await verdict() is None
        assert vault.admin.request_count(path="/v1/sys/health") == 7
        # Standbys count as up (they forward): the query says so.
        assert HEALTH_QUERY == {"standbyok": "true", "perfstandbyok": "true"}
    pool.shutdown()
