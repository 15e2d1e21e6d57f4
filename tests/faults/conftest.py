"""The fast cases of the fault suite: the bench's scenarios and checker, in-process.

The ``world`` of the end-to-end tests (both emulations and syncd in this event loop, syncd
under its real RBAC) with 50 VaultStaticSecrets rotating at 20 writes per second; each test
injects one fault through the same :class:`~bench.faults.control.Control` the bench uses and
asks the same checker (which reads only the API server and Vault). syncd runs with its
production backoff cap (5 minutes), as in a cluster.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest

from bench.faults.checker import Checker, Ledger, RateSampler, vault_syncd_requests
from bench.faults.control import InProcessControl
from bench.faults.report import Row
from bench.faults.scenarios import Scenario
from bench.faults.suite import Rotator, Suite, bounds, run_scenario
from tests.syncd.e2e.conftest import world  # noqa: F401  (the fixture)
from tests.syncd.e2e.world import APP_NS, SYNCD_USER, World

SECRETS = 50
REFRESH = 1.0
RATE = 20.0
DEBOUNCE = 0.3  # the world's rollout debounce
WORKLOADS = 2


@dataclass
class Faulted:
    world: World
    suite: Suite

    async def run(self, scenario: Scenario) -> Row:
        return await run_scenario(self.suite, scenario)

    def leaks(self) -> list[str]:
        """Every value written, searched in what syncd said (the world's own sweep at the end
        also runs: logs, spans, Events, statuses)."""
        self.world.secret_values.update(self.suite.ledger.values)
        return self.world.leaks([self.world.captured()])


@pytest.fixture
async def faulted(world: World) -> AsyncIterator[Faulted]:  # noqa: F811  (the fixture)
    names = {f"f{i}": f"kv-secret/f{i}" for i in range(SECRETS)}
    ledger = Ledger()
    async with aiohttp.ClientSession() as session:
        rotator = Rotator(session=session, vault_address=world.vault.address,
                          token=world.root_token, ledger=ledger, paths=names, rate=RATE)
        await rotator.write_all(list(names))
        workloads = {}
        for index, name in enumerate(names):
            spec = {"path": names[name], "refreshAfter": f"{REFRESH:g}s"}
            if index < WORKLOADS:
                world.deployment(f"d{index}", secret=name)
                spec["rolloutRestartTargets"] = [{"kind": "Deployment", "name": f"d{index}"}]
                workloads[f"d{index}"] = name
            world.vss(name, **spec)
        checker = Checker(session=session, kube_url=world.kube.url, namespace=APP_NS,
                          vault_address=world.vault.address, vault_token=world.root_token,
                          paths=names, ledger=ledger)
        await checker.start()
        world.start_syncd(dataclasses.replace(world.settings, backoff_max_seconds=300.0))
        assert await checker.wait(lambda: len(checker.held) == SECRETS, deadline=30), \
            f"{len(checker.held)} of {SECRETS} Secrets synced"

        async def counts() -> tuple[int, int]:
            return (world.kube.requests.users[SYNCD_USER],
                    vault_syncd_requests(world.vault.admin.request_counts()))

        sampler = RateSampler(counts=counts, interval=0.5, window=2.0)
        suite = Suite(
            control=InProcessControl(kube=world.kube, vault=world.vault,
                                     unseal_keys=world.unseal_keys),
            checker=checker, ledger=ledger, rotator=rotator, sampler=sampler,
            # Delivery within ``settle`` is the bound here: after an outage of a few seconds
            # the failing objects' backoff (1, 2, 4 s) decides, not the fault.
            workloads=workloads, fault_seconds=2.0, settle=8.0, debounce=DEBOUNCE,
            bounds=bounds(secrets=SECRETS, refresh=REFRESH, rate=RATE, window=sampler.window),
            mark=len(ledger.written))
        rotator.start(names=[n for n in names if n not in workloads.values()])
        try:
            yield Faulted(world=world, suite=suite)
        finally:
            await rotator.stop()
            await checker.stop()
