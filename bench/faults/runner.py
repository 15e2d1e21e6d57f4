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
import contextlib
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.faults.checker import Checker, Ledger, RateSampler, rss_slope, vault_syncd_requests
from bench.faults.control import Control, HttpControl
from bench.faults.leaks import count, sweep, with_encodings
from bench.faults.report import Row, write
from bench.faults.scenarios import BY_NAME, SCENARIOS, Scenario
from bench.faults.suite import Rotator, Suite, bounds, run_scenario
from bench.harness import Bench, Syncd, running_bench
from bench.kube_server import GROUP_VERSION, NAMESPACE, SYNCD_NAMESPACE, static_secret

SYNCD_USER = f"system:serviceaccount:{SYNCD_NAMESPACE}:vault-syncd"
DEPLOYMENTS = 5  #: Deployments restarted by the first secrets (rolloutRestartTargets)
DEBOUNCE = 2.0  #: syncd's --rollout-debounce
HOLD = 5.0  #: syncd-sigkill: how long the API server holds syncd's Secret writes (the kill
#: comes while one of the leader's is held)


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

    async def kill_leader(self, leader: Syncd | None = None) -> Syncd:
        """SIGKILL the leader (``leader``, or whichever leads now); returns once it is gone."""
        leader = leader or await self.wait_leader()
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


def client_ports(pids: Iterable[int]) -> set[int]:
    """The local TCP ports of the sockets ``pids`` hold (``/proc``): whose connection a
    request the API server holds came from."""
    inodes = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    link = os.readlink(fd)
                    if link.startswith("socket:["):
                        inodes.add(int(link[8:-1]))
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[9]) in inodes:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


@dataclass
class Kills:
    """The SIGKILLs of ``syncd-sigkill``: how many landed while the leader's write was held."""

    hold: float = HOLD
    deadline: float = 30.0  #: longest wait for the leader to write a Secret
    done: int = 0
    mid_write: int = 0

    async def kill_mid_write(self, replicas: Replicas, control: Control) -> str:
        """Hold syncd's Secret writes at the API server, wait until one of the leader's is
        held, SIGKILL the leader, and confirm the hold had not ended when it was gone."""
        leader = await replicas.wait_leader()
        await control.kube_fault("latency", seconds=self.hold, resource="secrets",
                                 verbs=["create", "update", "patch"], user=SYNCD_USER)
        try:
            async with asyncio.timeout(self.deadline):
                while True:
                    held = await control.kube_held()
                    ports = client_ports(leader.pids()) if held else set()
                    mine = [h for h in held if h.peer_port in ports]
                    if mine:
                        break
                    await asyncio.sleep(0.02)
            await replicas.kill_leader(leader)
            gone = time.time()
        finally:
            await control.kube_clear()
        self.done += 1
        # The write was received before the kill; it was still held when the process was gone.
        landed = gone < mine[-1].until
        self.mid_write += landed
        write = f"{mine[-1].verb} secrets/{mine[-1].name}"
        return f"killed {'during' if landed else 'AFTER'} {write} (held {self.hold:g} s)"


async def process_fault(replicas: Replicas, control: Control, scenario: Scenario,
                        kills: Kills) -> str:
    """The scenarios that kill syncd; returns a note."""
    if scenario.name == "syncd-sigkill":
        note = await kills.kill_mid_write(replicas, control)
        await replicas.start()  # the supervisor's replacement
        await replicas.wait_leader()
        return note
    killed = await replicas.kill_leader()
    began = time.monotonic()
    await replicas.wait_leader(other_than=killed)
    took = time.monotonic() - began
    await replicas.start()  # the Deployment's replacement, a standby
    return f"standby led {took:.1f} s after the kill"


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


@dataclass
class Run:
    """One run's bench, replicas and suite: the scenarios are run against it in turn."""

    bench: Bench
    replicas: Replicas
    suite: Suite
    kills: Kills
    names: dict[str, str]  #: Secret -> Vault path
    init: dict[str, Any]  #: Vault's bootstrap (keys, root token)
    cold_sync_s: float

    async def leaks(self) -> dict[str, list[str]]:
        """Every value written, both Vault tokens, the unseal keys and syncd's token, searched
        in every replica's log, the Events and the statuses."""
        bench, init = self.bench, self.init
        secrets = with_encodings([
            *self.suite.ledger.values, bench.vault_token, init["root_token"], *init["keys"],
            *init["keys_base64"], bench.syncd_token, bench.syncd_token.rsplit(".", 1)[-1]])
        return sweep(await _texts(bench, [*self.replicas.running, *(
            s for s in bench._syncds if s not in self.replicas.running)]), secrets)


@contextlib.asynccontextmanager
async def running(args: argparse.Namespace, *, replica_args: tuple[str, ...] = (),
                  ) -> AsyncIterator[Run]:
    """The bench with ``args.secrets`` rotating and ``args.replicas`` syncd replicas, synced;
    ``replica_args``: more of syncd's flags (shorter leases for the fast cases)."""
    names = {f"s{i}": f"app/{i}" for i in range(args.secrets)}
    ledger = Ledger()
    async with running_bench() as bench:
        init = json.loads((bench.directory / "vault-init.json").read_text())
        control = HttpControl(session=bench.session, vault_address=bench.vault_address,
                              unseal_keys=init["keys"], kube_control=bench.control)
        rotator = Rotator(session=bench.session, vault_address=bench.vault_address,
                          token=bench.vault_token, ledger=ledger, paths=names, rate=args.rate)
        await rotator.write_all(list(names))
        await bench.create_static_secrets(count=args.secrets, refresh=args.refresh)
        workloads = await _workloads(bench, count=min(DEPLOYMENTS, args.secrets),
                                     refresh=args.refresh)
        checker = Checker(session=bench.session, kube_url=bench.kube_url, namespace=NAMESPACE,
                          vault_address=bench.vault_address, vault_token=bench.vault_token,
                          paths=names, ledger=ledger)
        await checker.start()
        replicas = Replicas(bench=bench, args=(
            "--rollout-debounce", f"{DEBOUNCE:g}s", "--leader-elect=true", *replica_args),
            env={"OTEL_TRACES_EXPORTER": "console"})
        kills = Kills()
        try:
            await replicas.start(args.replicas)
            replicas.supervise()
            began = time.monotonic()
            if not await checker.wait(lambda: all(
                    checker.held.get(n) is not None for n in names), deadline=300):
                raise SystemExit(f"cold sync incomplete after 300 s: see {bench.directory}")
            cold = time.monotonic() - began

            async def counts() -> tuple[int, int]:
                async with bench.session.get(f"{bench.control}/requests/users") as response:
                    kube = (await response.json()).get(SYNCD_USER, 0)
                return kube, vault_syncd_requests(await bench.vault_requests())

            sampler = RateSampler(counts=counts)

            async def kill(scenario: Scenario) -> str:
                return await process_fault(replicas, control, scenario, kills)

            suite = Suite(
                control=control, checker=checker, ledger=ledger, rotator=rotator,
                sampler=sampler, workloads=workloads, fault_seconds=args.fault_seconds,
                settle=args.settle, debounce=DEBOUNCE, process_fault=kill,
                incidents=replicas.unexpected_exits, recovery_bound=2 * args.refresh,
                bounds=bounds(secrets=args.secrets, refresh=args.refresh, rate=args.rate,
                              window=sampler.window),
                mark=len(ledger.written))
            rotator.start(names=[n for n in names if n not in workloads.values()])
            yield Run(bench=bench, replicas=replicas, suite=suite, kills=kills, names=names,
                      init=init, cold_sync_s=round(cold, 1))
        finally:
            await rotator.stop()
            await replicas.stop()
            await checker.stop()


async def run_all(args: argparse.Namespace) -> tuple[list[Row], dict[str, Any]]:
    chosen = [BY_NAME[name] for name in args.scenarios.split(",") if name]
    async with running(args) as run:
        suite, replicas = run.suite, run.replicas
        soak = time.monotonic()
        rows = []
        for scenario in chosen:
            try:
                row = await run_scenario(suite, scenario)
            except Exception as exc:  # the suite goes on; the row says what went wrong
                await scenario.clear(suite.control)
                rows.append(Row(scenario=scenario.name, faults_injected=scenario.injected,
                                rotations_written=0, rotations_delivered=0,
                                violations=[f"the scenario failed: {exc!r}"]))
                continue
            rows.append(row)
            print(f"{row.scenario}: {row.rotations_delivered}/{row.rotations_written}"
                  f" delivered, {len(row.violations)} violations, recovery"
                  f" {row.recovery_s} s, rates {row.max_request_rate}", flush=True)
        await suite.rotator.stop()
        minutes = (time.monotonic() - soak) / 60
        # The first minute of a replica is its warm-up (caches filled, pools grown): the
        # slope is taken after it.
        slopes = {pid: rss_slope([(t, mib) for t, mib in samples if t - samples[0][0] >= 60])
                  for pid, samples in replicas.rss.items()}
        longest = max(replicas.rss, key=lambda pid: len(replicas.rss[pid]), default=None)
        found = await run.leaks()
        results: dict[str, Any] = {
            "cold_sync_s": run.cold_sync_s,
            "soak_minutes": round(minutes, 1),
            "rotations_written": len(suite.ledger.written),
            "writes_refused_by_vault": suite.rotator.refused,
            "syncd_kills_mid_write": f"{run.kills.mid_write} of {run.kills.done}",
            "rss_slope_after_1_min_mib_per_min": slopes.get(longest) if longest else None,
            "rss_mib_end": round(replicas.rss[longest][-1][1], 1) if longest else None,
            "rss_minutes_measured": round(replicas.rss[longest][-1][0] / 60, 1)
            if longest else None,
            "rss_mib_every_30_s": [round(mib, 1) for _, mib in replicas.rss[longest][::30]]
            if longest else [],
            "leaks": count(found),
            "leaked_where": found,
            "violations": sum(len(row.violations) for row in rows),
        }
        if os.environ.get("BENCH_KEEP"):
            results["bench_directory"] = str(run.bench.directory)
    return rows, results


async def _interruptible(args: argparse.Namespace) -> tuple[list[Row], dict[str, Any]]:
    """``run_all``, cancelled by SIGTERM or SIGINT so that every process it started is stopped
    (a background job started by a shell ignores SIGINT, hence SIGTERM too)."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, task.cancel)
    return await run_all(args)


def main(argv: list[str]) -> None:
    args = _parser().parse_args(argv)
    try:
        rows, results = asyncio.run(_interruptible(args))
    except asyncio.CancelledError:
        raise SystemExit("interrupted: nothing written") from None
    write(rows, parameters={"secrets": args.secrets, "rate_per_s": args.rate,
                            "refreshAfter_s": args.refresh, "fault_s": args.fault_seconds,
                            "replicas": args.replicas}, results=results)
