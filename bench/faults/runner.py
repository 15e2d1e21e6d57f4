"""``python -m bench faults``: the fault suite against real processes, one row per scenario.

N secrets (``--secrets``) rotate at ``--rate`` writes per second from start to end; two syncd
replicas run with leader election, as a highly available Deployment would, under a supervisor
that restarts a replica that exits (as the kubelet would, counted in the notes). Each scenario
injects its fault, holds it for ``--fault-seconds`` while one Secret per Deployment also
changes, clears it, and waits (at most ``--settle`` seconds) until every rotation written up to
then is delivered and no Secret is behind what Vault served when the fault ended. The checker
(``checker.py``) reads only the API server and Vault; the leak sweep (``leaks.py``) runs once
over everything captured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.faults.checker import (
    Checker,
    Ledger,
    RateSampler,
    restart_violations,
    rss_slope,
    vault_syncd_requests,
)
from bench.faults.control import HttpControl
from bench.faults.leaks import count, sweep
from bench.faults.report import Row, write
from bench.faults.scenarios import BY_NAME, SCENARIOS, Scenario
from bench.harness import Bench, Syncd, running_bench
from bench.kube_server import GROUP_VERSION, NAMESPACE, SYNCD_NAMESPACE, static_secret

SYNCD_USER = f"system:serviceaccount:{SYNCD_NAMESPACE}:vault-syncd"
DEPLOYMENTS = 5  #: Deployments restarted by the first secrets (rolloutRestartTargets)
DEBOUNCE = 2.0  #: syncd's --rollout-debounce


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench faults",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--secrets", type=int, default=1000, help="VaultStaticSecrets (1,000)")
    parser.add_argument("--rate", type=float, default=10.0, help="Vault writes per second (10)")
    parser.add_argument("--refresh", type=float, default=10.0, help="refreshAfter, s (10)")
    parser.add_argument("--fault-seconds", type=float, default=10.0,
                        help="how long each fault holds (10)")
    parser.add_argument("--settle", type=float, default=120.0,
                        help="longest wait for recovery after a fault, s (120)")
    parser.add_argument("--scenarios", default=",".join(s.name for s in SCENARIOS),
                        help="comma-separated, in order (default: all)")
    parser.add_argument("--replicas", type=int, default=2, help="syncd replicas (2)")
    return parser


@dataclass
class Replicas:
    """syncd replicas with leader election, restarted when one exits (as the kubelet would)."""

    bench: Bench
    args: tuple[str, ...]
    env: dict[str, str]
    running: list[Syncd] = field(default_factory=list)
    killed: set[int] = field(default_factory=set)
    unexpected_exits: list[str] = field(default_factory=list)
    rss: dict[int, list[tuple[float, float]]] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None

    async def start(self, count: int = 1) -> None:
        for _ in range(count):
            self.running.append(await self.bench.start_syncd(args=self.args, env=self.env))

    def leader(self) -> Syncd | None:
        alive = [s for s in self.running if s.process.returncode is None
                 and b"leader election won" in s.log.read_bytes()]
        return alive[-1] if alive else None

    async def wait_leader(self, *, other_than: Syncd | None = None,
                          deadline: float = 90.0) -> Syncd:
        async with asyncio.timeout(deadline):
            while True:
                leader = self.leader()
                if leader is not None and leader is not other_than:
                    return leader
                await asyncio.sleep(0.1)

    async def kill_leader(self) -> Syncd:
        leader = await self.wait_leader()
        self.killed.add(leader.pid)
        leader.process.send_signal(signal.SIGKILL)
        await leader.process.wait()
        return leader

    def supervise(self) -> None:
        self._task = asyncio.create_task(self._supervise(), name="replicas")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _supervise(self) -> None:
        began = time.monotonic()
        while True:
            await asyncio.sleep(1.0)
            for syncd in list(self.running):
                if syncd.process.returncode is None or syncd.pid in self.killed:
                    continue
                self.running.remove(syncd)
                self.unexpected_exits.append(f"replica {syncd.pid} exited"
                                             f" {syncd.process.returncode}")
                await self.start()
            leader = self.leader()
            if leader is not None:
                self.rss.setdefault(leader.pid, []).append(
                    (time.monotonic() - began, leader.rss()))


class Rotator:
    """Writes a new value to a random secret at a fixed rate, whatever Vault answers."""

    def __init__(self, *, bench: Bench, ledger: Ledger, names: list[str], rate: float) -> None:
        self._bench, self._ledger, self._names, self._rate = bench, ledger, names, rate
        self._random = random.Random(16)
        self._task: asyncio.Task[None] | None = None
        self._writes: set[asyncio.Task[None]] = set()
        self.refused = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="rotator")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await asyncio.gather(*(t for t in (self._task, *self._writes) if t),
                             return_exceptions=True)

    async def _run(self) -> None:
        began = time.monotonic()
        for number in range(1_000_000_000):
            await asyncio.sleep(max(0.0, began + number / self._rate - time.monotonic()))
            task = asyncio.create_task(self.write(self._random.choice(self._names)))
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)

    async def write(self, name: str) -> None:
        value = self._ledger.new_value(name)
        try:
            async with self._bench.session.post(
                    f"{self._bench.vault_address}/v1/secret/data/app/{name[1:]}",
                    json={"data": {"VALUE": value}},
                    headers={"X-Vault-Token": self._bench.vault_token},
                    timeout=aiohttp.ClientTimeout(total=10)) as response:
                if response.status < 300:
                    self._ledger.answered(value)
                    return
        except (aiohttp.ClientError, TimeoutError):
            pass
        self.refused += 1


async def _workloads(bench: Bench, *, count: int, refresh: float) -> dict[str, str]:
    """Deployment ``d<i>`` restarted on changes of Secret ``s<i>`` (its VaultStaticSecret's
    rolloutRestartTargets)."""
    workloads = {}
    for index in range(count):
        name = f"d{index}"
        await bench.apply({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": {
                         "containers": [{"name": "app", "image": "app:1", "envFrom": [
                             {"secretRef": {"name": f"s{index}"}}]}]}}},
        })
        owner = static_secret(index, refresh=refresh)
        owner["spec"]["rolloutRestartTargets"] = [{"kind": "Deployment", "name": name}]
        await bench.apply(owner)
        workloads[name] = f"s{index}"
    return workloads


@dataclass
class Run:
    """What every scenario shares."""

    bench: Bench
    args: argparse.Namespace
    control: HttpControl
    checker: Checker
    ledger: Ledger
    rotator: Rotator
    replicas: Replicas
    sampler: RateSampler
    workloads: dict[str, str]
    mark: int = 0  #: ledger.written index where the current window starts

    def bounds(self) -> dict[str, float]:
        """Highest mean request rate (over the sampler's window) allowed while a fault holds:
        three times the steady load (a refresh of every object each refreshAfter; a Secret
        and a status write per rotation), one pass over every object in the window (a relist,
        a new leader's first sync), and 20/s."""
        window = self.sampler.window
        steady = {"kube": 2 * self.args.rate, "vault": self.args.secrets / self.args.refresh}
        return {server: round(3 * rate + self.args.secrets / window + 20, 1)
                for server, rate in steady.items()}


async def _process_fault(run: Run, scenario: Scenario) -> str:
    """The scenarios that kill syncd; returns a note."""
    if scenario.name == "syncd-sigkill":
        # Slow syncd's Secret writes so that one is in flight when the leader dies.
        await run.control.kube_fault("latency", seconds=1.0, verbs=["update", "patch"],
                                     resource="secrets")
        await asyncio.sleep(1.5)
        killed = await run.replicas.kill_leader()
        await run.control.kube_clear()
        await run.replicas.start()
        leader = await run.replicas.wait_leader(other_than=killed)
        return f"killed {killed.pid}; {leader.pid} leads {time.monotonic() - killed.started:.0f}" \
               " s after the killed one started"
    killed = await run.replicas.kill_leader()
    began = time.monotonic()
    leader = await run.replicas.wait_leader(other_than=killed)
    took = time.monotonic() - began
    await run.replicas.start()  # the Deployment's replacement, a standby
    return f"standby {leader.pid} led {took:.1f} s after the kill"


async def _scenario(run: Run, scenario: Scenario) -> Row:
    args, checker, ledger = run.args, run.checker, run.ledger
    seen_violations = len(checker.violations)
    generations = await checker.generations(run.workloads)
    changes = Counter(checker.changes)
    exits = len(run.replicas.unexpected_exits)
    run.sampler.arm()
    began = time.monotonic()
    note = ""
    if scenario.needs_processes:
        note = await _process_fault(run, scenario)
    else:
        await scenario.inject(run.control)
    for secret in run.workloads.values():  # one change each, during the fault
        await run.rotator.write(secret)
    await asyncio.sleep(max(0.0, began + args.fault_seconds - time.monotonic()))
    rates = await run.sampler.disarm()
    await scenario.clear(run.control)
    cleared = time.monotonic()
    writes = ledger.written[run.mark:]
    run.mark = len(ledger.written)
    readable = await checker.readable()
    recovered = await checker.wait(
        lambda: not checker.undelivered(writes) and not checker.behind(readable),
        deadline=args.settle)
    recovery = round(time.monotonic() - cleared, 2) if recovered else None
    await asyncio.sleep(2.5 * DEBOUNCE + 1)  # a restart comes after the debounce; a second?
    violations = [text for _, text in checker.violations[seen_violations:]]
    undelivered = checker.undelivered(writes)
    if undelivered:
        violations.append(f"{len(undelivered)} rotations not delivered after {args.settle:g} s"
                          f" (e.g. {', '.join(undelivered[:3])})")
    behind = checker.behind(readable)
    if behind:
        violations.append(f"{len(behind)} Secrets older than what Vault served when the fault"
                          f" ended (e.g. {', '.join(behind[:3])})")
    violations += restart_violations(
        before=generations, after=await checker.generations(run.workloads),
        changes=checker.changes - changes, secret_of=run.workloads)
    for server, bound in run.bounds().items():
        if rates[server] > bound:
            violations.append(f"hot loop: {rates[server]:g} requests/s to {server}"
                              f" (bound {bound:g})")
    exited = run.replicas.unexpected_exits[exits:]
    notes = "; ".join(filter(None, [note, *exited]))
    row = Row(scenario=scenario.name, faults_injected=scenario.injected,
              rotations_written=len(writes),
              rotations_delivered=len(writes) - len(undelivered), violations=violations,
              recovery_s=recovery, max_request_rate=rates, notes=notes)
    print(f"{scenario.name}: {row.rotations_delivered}/{row.rotations_written} delivered,"
          f" {len(violations)} violations, recovery {recovery} s, rates {rates}", flush=True)
    return row


async def _texts(bench: Bench, replicas: Iterable[Syncd]) -> dict[str, str]:
    texts = {f"syncd log {s.log.name}": s.log.read_text(errors="replace") for s in replicas}
    for what, path in (("Events", "/api/v1/events"),
                       ("VaultStaticSecret status",
                        f"/apis/{GROUP_VERSION}/vaultstaticsecrets")):
        async with bench.session.get(bench.kube_url + path) as response:
            body = await response.json()
        texts[what] = json.dumps(
            [item.get("status") for item in body["items"]] if "status" in what
            else body["items"])
    return texts


async def run_all(args: argparse.Namespace) -> tuple[list[Row], dict[str, Any]]:
    chosen = [BY_NAME[name] for name in args.scenarios.split(",") if name]
    names = {f"s{i}": f"app/{i}" for i in range(args.secrets)}
    ledger = Ledger()
    async with running_bench() as bench:
        init = json.loads((bench.directory / "vault-init.json").read_text())
        control = HttpControl(session=bench.session, vault_address=bench.vault_address,
                              unseal_keys=init["keys"], kube_control=bench.control)
        rotator = Rotator(bench=bench, ledger=ledger, names=list(names), rate=args.rate)
        first = list(names)
        await asyncio.gather(*(rotator.write(name) for name in first[:64]))
        for start in range(64, len(first), 64):
            await asyncio.gather(*(rotator.write(name) for name in first[start:start + 64]))
        await bench.create_static_secrets(count=args.secrets, refresh=args.refresh)
        workloads = await _workloads(bench, count=min(DEPLOYMENTS, args.secrets),
                                     refresh=args.refresh)
        checker = Checker(session=bench.session, kube_url=bench.kube_url, namespace=NAMESPACE,
                          vault_address=bench.vault_address, vault_token=bench.vault_token,
                          paths=names, ledger=ledger)
        await checker.start()
        replicas = Replicas(bench=bench, args=(
            "--rollout-debounce", f"{DEBOUNCE:g}s", "--leader-elect=true"),
            env={"OTEL_TRACES_EXPORTER": "console"})
        await replicas.start(args.replicas)
        replicas.supervise()
        began = time.monotonic()
        if not await checker.wait(lambda: all(
                checker.held.get(n) is not None for n in names), deadline=300):
            raise SystemExit(f"cold sync incomplete after 300 s: see {bench.directory}")
        cold = time.monotonic() - began
        rotator = Rotator(bench=bench, ledger=ledger,
                          names=[n for n in names if n not in workloads.values()],
                          rate=args.rate)

        async def counts() -> tuple[int, int]:
            async with bench.session.get(f"{bench.control}/requests/users") as response:
                kube = (await response.json()).get(SYNCD_USER, 0)
            return kube, vault_syncd_requests(await bench.vault_requests())

        run = Run(bench=bench, args=args, control=control, checker=checker, ledger=ledger,
                  rotator=rotator, replicas=replicas, sampler=RateSampler(counts=counts),
                  workloads=workloads, mark=len(ledger.written))
        rotator.start()
        soak = time.monotonic()
        rows = []
        try:
            for scenario in chosen:
                try:
                    rows.append(await _scenario(run, scenario))
                except Exception as exc:  # the suite goes on; the row says what went wrong
                    await scenario.clear(run.control)
                    rows.append(Row(scenario=scenario.name, faults_injected=scenario.injected,
                                    rotations_written=0, rotations_delivered=0,
                                    violations=[f"the scenario failed: {exc!r}"]))
        finally:
            await rotator.stop()
            await replicas.stop()
            await checker.stop()
        minutes = (time.monotonic() - soak) / 60
        slopes = {pid: rss_slope(samples) for pid, samples in replicas.rss.items()}
        longest = max(replicas.rss, key=lambda pid: len(replicas.rss[pid]), default=None)
        secrets = [*ledger.values, bench.vault_token, init["root_token"], *init["keys"],
                   *init["keys_base64"], bench.syncd_token,
                   bench.syncd_token.rsplit(".", 1)[-1]]
        found = sweep(await _texts(bench, [*replicas.running, *(
            s for s in bench._syncds if s not in replicas.running)]), secrets)
        results = {
            "cold_sync_s": round(cold, 1),
            "soak_minutes": round(minutes, 1),
            "rotations_written": len(ledger.written),
            "writes_refused_by_vault": rotator.refused,
            "rss_slope_mib_per_min": slopes.get(longest) if longest else None,
            "rss_mib_end": round(replicas.rss[longest][-1][1], 1) if longest else None,
            "rss_minutes_measured": round(replicas.rss[longest][-1][0] / 60, 1)
            if longest else None,
            "leaks": count(found),
            "leaked_where": found,
            "violations": sum(len(row.violations) for row in rows),
            "bench_directory": str(bench.directory),
        }
    return rows, results


def main(argv: list[str]) -> None:
    args = _parser().parse_args(argv)
    rows, results = asyncio.run(run_all(args))
    write(rows, parameters={"secrets": args.secrets, "rate_per_s": args.rate,
                            "refreshAfter_s": args.refresh, "fault_s": args.fault_seconds,
                            "replicas": args.replicas}, results=results)
