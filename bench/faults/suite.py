"""One scenario, start to verdict: the part the bench and the fast cases share.

:func:`run_scenario` injects the fault (through :class:`~bench.faults.control.Control`),
changes the Secret of each Deployment once while it holds, clears it, waits for recovery and
asks the checker. The bench (``runner.py``) builds a :class:`Suite` over processes, the fast
cases (``tests/faults/``) over the in-process testbed; the row is the same.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp

from bench.faults.checker import Checker, Ledger, RateSampler, restart_violations
from bench.faults.control import Control
from bench.faults.report import Row
from bench.faults.scenarios import Scenario


class Rotator:
    """Writes a new value to a random secret at a fixed rate, whatever Vault answers."""

    def __init__(self, *, session: aiohttp.ClientSession, vault_address: str, token: str,
                 ledger: Ledger, paths: dict[str, str], rate: float,
                 mount: str = "secret") -> None:
        self._session, self._ledger, self._rate = session, ledger, rate
        self._url = f"{vault_address}/v1/{mount}/data/"
        self._headers = {"X-Vault-Token": token}
        self._paths = paths
        self._names = sorted(paths)
        self._random = random.Random(16)
        self._task: asyncio.Task[None] | None = None
        self._writes: set[asyncio.Task[None]] = set()
        self.refused = 0

    def start(self, *, names: list[str] | None = None) -> None:
        """Rotate ``names`` (default: all) from now on."""
        self._names = sorted(names if names is not None else self._paths)
        self._task = asyncio.create_task(self._run(), name="rotator")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await asyncio.gather(*(t for t in (self._task, *self._writes) if t),
                             return_exceptions=True)

    async def _run(self) -> None:
        began = time.monotonic()
        for number in range(1_000_000_000):
            # A fixed rate: write k goes at k / rate, however long the others take.
            await asyncio.sleep(max(0.0, began + number / self._rate - time.monotonic()))
            task = asyncio.create_task(self.write(self._random.choice(self._names)))
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)

    async def write(self, name: str) -> None:
        """One new value for ``name``; in the ledger's ``written`` once Vault said yes."""
        value = self._ledger.new_value(name)
        try:
            async with self._session.post(
                    self._url + self._paths[name], json={"data": {"VALUE": value}},
                    headers=self._headers, timeout=aiohttp.ClientTimeout(total=10)) as response:
                if response.status < 300:
                    self._ledger.answered(value)
                    return
        except (aiohttp.ClientError, TimeoutError):
            pass
        self.refused += 1

    async def write_all(self, names: list[str], *, concurrency: int = 32) -> None:
        for start in range(0, len(names), concurrency):
            await asyncio.gather(*(self.write(n) for n in names[start:start + concurrency]))


@dataclass
class Suite:
    """What every scenario of one run shares."""

    control: Control
    checker: Checker
    ledger: Ledger
    rotator: Rotator
    sampler: RateSampler
    workloads: dict[str, str]  #: Deployment -> the Secret whose changes restart it
    bounds: dict[str, float]  #: highest request rate per server while a fault holds
    fault_seconds: float
    settle: float
    debounce: float  #: syncd's rollout debounce: a restart comes this long after a change
    #: Longest recovery that is not a violation (None: reported, not judged). A rotation
    #: written just before the fault cleared may wait one refreshAfter anyway, so a bound
    #: of twice refreshAfter flags the outage's own delay, not the schedule's.
    recovery_bound: float | None = None
    #: The scenarios that need syncd as processes (the bench's): inject, return a note.
    process_fault: Callable[[Scenario], Awaitable[str]] | None = None
    #: Notes the harness gathered meanwhile (a replica that exited), read after each scenario.
    incidents: list[str] = field(default_factory=list)
    mark: int = 0  #: ledger.written index where the current window starts


@dataclass
class Window:
    """Where a scenario's verdict starts: the checker's violations, the Deployments'
    generations and the Secrets' changes seen so far (:func:`open_window`)."""

    seen: int
    generations: dict[str, int]
    changes: Counter[str]


async def open_window(checker: Checker, workloads: dict[str, str]) -> Window:
    return Window(seen=len(checker.violations),
                  generations=await checker.generations(workloads),
                  changes=Counter(checker.changes))


async def verdict(checker: Checker, window: Window, *, writes: list[tuple[str, int, float]],
                 workloads: dict[str, str], settle: float, debounce: float, since: float,
                 after: str = "the fault") -> tuple[float | None, int, list[str]]:
    """Wait (at most ``settle`` s) until every write is delivered and no Secret is behind what
    Vault serves now, then judge the window: (seconds from ``since`` until then or None,
    writes not delivered, violations)."""
    readable = await checker.readable()
    recovered = await checker.wait(
        lambda: not checker.undelivered(writes) and not checker.behind(readable),
        deadline=settle)
    recovery = round(time.monotonic() - since, 2) if recovered else None
    await asyncio.sleep(2.5 * debounce + 1)  # a restart comes after the debounce; two?
    violations = [text for _, text in checker.violations[window.seen:]]
    undelivered = checker.undelivered(writes)
    if undelivered:
        violations.append(f"{len(undelivered)} rotations not delivered {settle:g} s after"
                          f" {after} (e.g. {', '.join(undelivered[:3])})")
    behind = checker.behind(readable)
    if behind:
        violations.append(f"{len(behind)} Secrets older than what Vault served when {after}"
                          f" ended (e.g. {', '.join(behind[:3])})")
    violations += restart_violations(
        before=window.generations, after=await checker.generations(workloads),
        changes=checker.changes - window.changes, secret_of=workloads)
    return recovery, len(undelivered), violations


async def run_scenario(suite: Suite, scenario: Scenario) -> Row:
    """Inject, hold, clear, settle, check: one row."""
    checker, ledger = suite.checker, suite.ledger
    seen_incidents = len(suite.incidents)
    window = await open_window(checker, suite.workloads)
    suite.sampler.arm()
    began = time.monotonic()
    note = ""
    if scenario.needs_processes:
        if suite.process_fault is None:
            raise ValueError(f"{scenario.name} needs syncd as processes (the bench)")
        note = await suite.process_fault(scenario)
    else:
        await scenario.inject(suite.control)
    for secret in suite.workloads.values():  # one change each, while the fault holds
        await suite.rotator.write(secret)
    hold = suite.fault_seconds if scenario.hold is None else scenario.hold
    await asyncio.sleep(max(0.0, began + hold - time.monotonic()))
    rates = await suite.sampler.disarm()
    await scenario.clear(suite.control)
    cleared = time.monotonic()
    writes = ledger.written[suite.mark:]
    suite.mark = len(ledger.written)
    recovery, undelivered, violations = await verdict(
        checker, window, writes=writes, workloads=suite.workloads, settle=suite.settle,
        debounce=suite.debounce, since=cleared)
    if recovery is not None and suite.recovery_bound is not None \
            and recovery > suite.recovery_bound:
        violations.append(f"slow recovery: everything delivered {recovery:g} s after the"
                          f" fault cleared (bound {suite.recovery_bound:g} s)")
    for server, bound in suite.bounds.items():
        if rates[server] > bound:
            violations.append(f"hot loop: {rates[server]:g} requests/s to {server}"
                              f" (bound {bound:g})")
    notes = "; ".join(filter(None, [note, *suite.incidents[seen_incidents:]]))
    return Row(scenario=scenario.name, faults_injected=scenario.injected,
               rotations_written=len(writes),
               rotations_delivered=len(writes) - undelivered, violations=violations,
               recovery_s=recovery, max_request_rate=rates, notes=notes)


def bounds(*, secrets: int, refresh: float, rate: float, window: float) -> dict[str, float]:
    """Highest mean request rate (over the sampler's window) allowed while a fault holds:
    three times the steady load (a refresh of every object each refreshAfter; a Secret and a
    status write per rotation), one pass over every object in the window (a relist, a new
    leader's first sync, every object turning failed at once: a Vault read each, or a status
    write and an Event each), and 20/s."""
    steady = {"kube": 2 * rate, "vault": secrets / refresh}
    per_object = {"kube": 2, "vault": 1}
    return {server: round(3 * load + per_object[server] * secrets / window + 20, 1)
            for server, load in steady.items()}
