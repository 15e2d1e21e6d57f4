"""The unsealer's faults (issue 16): power loss, the unsealer killed mid-unseal, a custodian down.

Each scenario runs against a testbed in this process (the Kubernetes emulation, three Vault
nodes over TLS as the pods of StatefulSet ``vault``, see :mod:`testbed.statefulset`) and the
unsealer as real ``python -m unsealer run`` processes under the ``vault-unsealer``
ServiceAccount (the manifests' RBAC), so a kill is a real SIGKILL. What is judged, the
checker reads from Vault and the API server only (and from what the processes printed):

- every Vault pod is unsealed at the end, within the scenario's deadline;
- no share reached anything but a verified Vault pod: an impostor pod wearing Vault's labels
  (not the StatefulSet's) listens at its own IP on Vault's port and counts connections (0), and
  while too few custodians answer no ``sys/unseal`` request reaches Vault at all (a partial set
  sent is a partial set exposed);
- the request rate to Vault and to the API server stays bounded during an outage (sampled each
  second; a hot loop shows as hundreds per second);
- no log line or Event carries a share (hex or base64) or the root token.

With ``--secrets N`` (1,000; 0 for none) each scenario runs while N VaultStaticSecrets rotate
(``--rate`` writes per second to Vault) under syncd, judged by the fault suite's checker
(:mod:`bench.faults.checker`, see :class:`Load`): a write Vault refuses while sealed is not a
rotation, and writes must resume after the unseal; every rotation written is delivered, no
Secret is blanked, deleted or sent back, nothing is left behind what Vault serves, each
Deployment restarts once per change of its Secret, and syncd's request rate stays bounded (the
fault suite's bound). The request rates judged for the unsealer are its own (its
ServiceAccount's requests to the API server, ``sys/seal-status``/``sys/unseal``/``sys/init`` to
Vault), so the load does not hide a hot loop, nor makes one.

A scenario returns one :class:`Row` per fault; :func:`run` runs them all (``python -m bench
unsealer-faults``, or ``python -m bench.unsealer_faults`` standalone) and the fast cases in
``tests/unsealer/e2e/test_faults.py`` run each once with short timings. The testbed shares this
process, so its CPU is not separated from the driver's: the figures here are times, not CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import functools
import os
import shutil
import signal
import ssl
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import hvac

from bench.faults.checker import Checker, Ledger, RateSampler, vault_syncd_requests
from bench.faults.leaks import count, sweep, with_encodings
from bench.faults.suite import Rotator, Window, bounds, open_window, verdict
from bench.harness import ROOT, free_port, percentile, report
from bench.unseal import HOSTS, custody_configs
from testbed.kube import Kube, running_kube
from testbed.statefulset import LABELS, VaultPods, vault_pods
from testbed.vault import RunningVault, running_vault
from testbed.waiting import until

#: Requests per second (to Vault, or to the API server; over 5 s) above which a loop is hot.
MAX_RATE = 10.0
VAULT_NS = "vault"
CUSTODY_NS = "vault-custody"
IMPOSTOR_IP = "127.0.0.6"
TARGETS = {"violations": "none",
           "max_request_rate": f"≤ {MAX_RATE:g} requests/s (over 5 s) during an outage"}
THRESHOLD = 3
#: syncd beside the unsealer (power loss): one VaultStaticSecret ``apps/power`` of Vault's
#: ``secret/power``, refreshed every 2 s, read from vault-0 over TLS.
SYNCD_NS = "vault-syncd"
APPS_NS = "apps"
GROUP_VERSION = "secrets.vault-syncd.dev/v1beta1"
REFRESH = "2s"
UNSEALER_USER = f"system:serviceaccount:{VAULT_NS}:vault-unsealer"
UNSEALER_PATHS = ("GET /v1/sys/seal-status", "PUT /v1/sys/unseal", "PUT /v1/sys/init")
SYNCD_USER = f"system:serviceaccount:{SYNCD_NS}:vault-syncd"
DEBOUNCE = 2.0  #: syncd's --rollout-debounce (its default)
WORKLOADS = 2  #: Deployments restarted by the first rotating secrets


@dataclass
class Row:
    """One scenario's figures and the invariants it broke (``violations``: empty is good)."""

    scenario: str
    faults_injected: int
    unseals_expected: int
    unseals_done: int
    violations: list[str]
    recovery_s: dict[str, float]
    max_request_rate: dict[str, float]
    notes: str = ""
    #: What the scenario saw on the way, for the tests (not shown in the table).
    facts: dict[str, Any] = field(default_factory=dict)
    #: The rotating secrets' figures (:meth:`Load.judge`), empty without a load.
    load: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        shown = dataclasses.asdict(self)
        shown.pop("facts")
        return shown


def _recovery(times: list[float]) -> dict[str, float]:
    if not times:
        return {}
    return {"p50": round(percentile(times, 0.5), 3), "p99": round(percentile(times, 0.99), 3),
            "max": round(max(times), 3)}


class Impostor:
    """A pod with Vault's labels that the StatefulSet does not control, and a listener at its
    IP on Vault's port counting connections: the unsealer must never connect."""

    def __init__(self, *, port: int) -> None:
        self.port = port
        self.connections = 0
        self._server: asyncio.Server | None = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.close()

    async def start(self, kube: Kube) -> None:
        self._server = await asyncio.start_server(self._accept, IMPOSTOR_IP, self.port)
        kube.kubelet.assign_ip(VAULT_NS, "vault-impostor", IMPOSTOR_IP)
        kube.admin.create({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "vault-impostor", "namespace": VAULT_NS, "labels": LABELS},
            "spec": {"containers": [{"name": "vault", "image": "attacker/vault:latest"}]},
        })

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@dataclass
class Rig:
    """The testbed, custody and unsealer processes of one scenario (see the module doc)."""

    kube: Kube
    vault: RunningVault
    pods: VaultPods
    keys: list[bytes]
    root_token: str
    directory: Path
    port: int
    impostor: Impostor
    #: Custody configs of unsealer "a" (unseals) and, with a peer, "b" (``--peer-only``).
    configs: dict[str, Path]
    poll: str
    backoff_max: str
    kubeconfig: Path
    processes: dict[str, asyncio.subprocess.Process] = field(default_factory=dict)
    starts: int = 0
    #: syncd's kubeconfig, once :meth:`prepare_syncd` ran (then "syncd" is a process name).
    syncd_kubeconfig: Path | None = None

    # --- the unsealer processes --------------------------------------------------------

    async def start(self, name: str = "a") -> None:
        """Start unsealer ``name``, or syncd (output appended to ``unsealer-<name>.log``)."""
        health = f"127.0.0.1:{free_port()}"
        if name == "syncd":
            command = ["-m", "syncd", "run", "--kubeconfig", str(self.syncd_kubeconfig),
                       "--log-level", "info", "--health-address", "",
                       "--rollout-debounce", f"{DEBOUNCE:g}s"]
        else:
            command = [
                "-m", "unsealer", "run", "--kubeconfig", str(self.kubeconfig),
                "--namespace", VAULT_NS, "--address-template", f"https://{{ip}}:{self.port}",
                "--ca-file", str(self.vault.ca_file), "--custody-config", str(self.configs[name]),
                "--poll-interval", self.poll, "--backoff-max", self.backoff_max,
                "--health-address", health, *(("--peer-only",) if name == "b" else ())]
        path = self.directory / f"unsealer-{name}.log"
        with path.open("ab") as log:
            self.processes[name] = await asyncio.create_subprocess_exec(
                sys.executable, *command, "--log-format", "json",
                cwd=ROOT, stdout=log, stderr=log, stdin=asyncio.subprocess.DEVNULL,
                env={**os.environ, "PYTHONPATH": str(ROOT), "OTEL_TRACES_EXPORTER": "none",
                     "OTEL_METRICS_EXPORTER": "none"})
        self.starts += name != "syncd"
        if name != "syncd":
            # Ready (custody checked, pod and StatefulSet caches listed): a fault injected
            # earlier would test its start-up instead (a share file 0644 at start is refused
            # outright; an API server failing before the first list leaves nothing to poll).
            await until(functools.partial(self._ready, name, f"http://{health}/readyz"),
                        deadline=60, every=0.05)

    async def _ready(self, name: str, url: str) -> bool:
        if self.processes[name].returncode is not None:
            raise RuntimeError(f"unsealer {name} exited; see {self.directory}/unsealer-{name}.log")
        with contextlib.suppress(aiohttp.ClientError):
            async with aiohttp.ClientSession() as session, session.get(url) as response:
                return response.status == 200
        return False

    # --- syncd -------------------------------------------------------------------------

    async def prepare_syncd(self) -> None:
        """syncd's CRDs, RBAC, a VaultConnection to vault-0 (TLS, the emulation's CA), token
        auth with the root token, and VaultStaticSecret ``apps/power``; its value ``v0``.
        Once only (a :class:`Load` prepares it before the scenario does)."""
        if self.syncd_kubeconfig is not None:
            return
        admin = self.kube.admin
        for path in sorted((ROOT / "manifests" / "crds").glob("*.yaml")):
            admin.apply_yaml(path.read_text())
        for namespace in (SYNCD_NS, APPS_NS):
            admin.create_namespace(namespace)
        admin.apply_yaml((ROOT / "manifests" / "syncd" / "rbac.yaml").read_text())
        admin.apply({"apiVersion": "v1", "kind": "Secret",
                     "metadata": {"name": "vault-token", "namespace": APPS_NS},
                     "type": "secrets.vault-syncd.dev/vault-token",
                     "stringData": {"token": self.root_token}})
        admin.apply({"apiVersion": GROUP_VERSION, "kind": "VaultConnection",
                     "metadata": {"name": "default", "namespace": SYNCD_NS},
                     "spec": {"address": self.vault.addresses[0],
                              "caCertPath": str(self.vault.ca_file)}})
        admin.apply({"apiVersion": GROUP_VERSION, "kind": "VaultAuth",
                     "metadata": {"name": "default", "namespace": SYNCD_NS},
                     "spec": {"method": "token", "token": {"secretRef": {
                         "name": "vault-token", "key": "token"}}}})
        admin.apply({"apiVersion": GROUP_VERSION, "kind": "VaultStaticSecret",
                     "metadata": {"name": "power", "namespace": APPS_NS},
                     "spec": {"mount": "secret", "path": "power", "type": "kv-v2",
                              "refreshAfter": REFRESH,
                              "destination": {"name": "power", "create": True}}})
        token = admin.mint_token(SYNCD_NS, "vault-syncd", expiration_seconds=24 * 3600)
        self.syncd_kubeconfig = self.kube.write_kubeconfig(
            self.directory / "syncd.kubeconfig", token=token)
        await self.write_secret("v0")

    async def write_secret(self, value: str) -> None:
        client = hvac.Client(url=self.vault.addresses[0], token=self.root_token,
                             verify=self.vault.verify)
        await asyncio.to_thread(client.secrets.kv.v2.create_or_update_secret,
                                path="power", secret={"VALUE": value}, mount_point="secret")

    def synced(self, value: str) -> bool:
        return self.synced_value() == value

    def synced_value(self) -> str | None:
        """VALUE of Secret ``apps/power`` (None: no Secret; "" : the key is missing)."""
        obj = self.kube.admin.get("v1", "Secret", "power", APPS_NS)
        if obj is None:
            return None
        return base64.b64decode((obj.get("data") or {}).get("VALUE", "")).decode()

    async def stop(self, name: str = "a", *, sig: signal.Signals = signal.SIGTERM) -> None:
        process = self.processes.pop(name, None)
        if process is None or process.returncode is not None:
            return
        process.send_signal(sig)
        await asyncio.wait_for(process.wait(), 30)

    async def stop_all(self, *, sig: signal.Signals = signal.SIGTERM) -> None:
        for name in list(self.processes):
            await self.stop(name, sig=sig)

    # --- Vault, read from the testbed --------------------------------------------------

    def sealed(self) -> list[bool]:
        return [bool(node.sealed) for node in self.vault.nodes]

    async def until_unsealed(self, *, deadline: float) -> float | None:
        """Seconds until every pod reads unsealed (every 10 ms), or None past ``deadline``."""
        began = time.monotonic()
        try:
            await until(lambda: not any(self.sealed()), deadline=deadline, every=0.01)
        except TimeoutError:
            return None
        return time.monotonic() - began

    def mid_unseal(self, index: int) -> bool:
        """Whether node ``index`` is sealed with part of a share set submitted."""
        node = self.vault.nodes[index]
        return bool(node.sealed and node.progress)

    def vault_requests(self) -> int:
        return sum(self.vault.admin.request_counts().values())

    def unsealer_vault_requests(self) -> int:
        """The unsealer's requests to Vault (every pod): the ``sys/`` endpoints it speaks."""
        return sum(n for key, n in self.vault.admin.request_counts().items()
                   if key.startswith(UNSEALER_PATHS))

    def unseal_requests(self) -> int:
        return self.vault.admin.request_count(method="PUT", path="/v1/sys/unseal")

    # --- the invariants ----------------------------------------------------------------

    def share_forms(self) -> list[str]:
        forms = [self.root_token]
        for key in self.keys:
            forms += [key.hex(), base64.b64encode(key).decode()]
        return forms

    def leaks(self) -> int:
        """Shares and the root token found in the processes' output and in Vault's Events."""
        text = "\n".join(path.read_text(errors="replace")
                         for path in sorted(self.directory.glob("unsealer-*.log")))
        text += repr(self.kube.admin.list("v1", "Event", VAULT_NS))
        return sum(text.count(form) for form in self.share_forms())

    def violations(self, *, unsealed: bool = True) -> list[str]:
        """The invariants every scenario ends on (see the module docstring)."""
        found = []
        if unsealed and any(self.sealed()):
            found.append(f"still sealed at the end: {self.sealed()}")
        if self.impostor.connections:
            found.append(f"{self.impostor.connections} connections to the impostor pod")
        leaks = self.leaks()
        if leaks:
            found.append(f"{leaks} shares or tokens in logs or Events")
        return found


class RateMeter:
    """The unsealer's requests per second to Vault and to the API server (what syncd and the
    driver ask is theirs): the highest average over any
    ``window`` seconds (sampled each second). A burst when pods seal (a look at each, an Event
    each) is fine; a retry loop shows as a rate that stays high."""

    def __init__(self, rig: Rig, *, window: int = 5) -> None:
        self._rig = rig
        self._window = window
        self.max = {"vault": 0.0, "kube": 0.0}
        self._samples: list[tuple[int, int, float]] = []
        self._task: asyncio.Task[None] | None = None

    def _counts(self) -> tuple[int, int, float]:
        return (self._rig.unsealer_vault_requests(),
                self._rig.kube.requests.users[UNSEALER_USER], time.monotonic())

    def _update(self, first: tuple[int, int, float], last: tuple[int, int, float]) -> None:
        seconds = last[2] - first[2]
        for index, what in enumerate(("vault", "kube")):
            rate = round((last[index] - first[index]) / seconds, 1)
            self.max[what] = max(self.max[what], rate)

    async def _sample(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self._samples = [*self._samples[-self._window:], self._counts()]
            if len(self._samples) > self._window:
                self._update(self._samples[0], self._samples[-1])

    async def __aenter__(self) -> RateMeter:
        self._samples = [self._counts()]
        self._task = asyncio.create_task(self._sample(), name="rate meter")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if len(self._samples) <= self._window:  # shorter than a window: over all of it
            self._update(self._samples[0], self._counts())

    def violations(self) -> list[str]:
        return [f"{what} requests reached {rate}/s (> {MAX_RATE:g}/s): a hot loop"
                for what, rate in self.max.items() if rate > MAX_RATE]


def write_private(path: Path, text: str) -> None:
    """Write a 0600 file (created so: never readable by others, not even for a moment)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)


def install_unsealer(kube: Kube, keys: Sequence[bytes], kubeconfig: Path) -> Path:
    """What a cluster holds for the unsealer: Secret ``vault-custody/unseal-shares`` with the
    first two shares (as ``init`` writes them), the manifests' RBAC, and at ``kubeconfig`` the
    credentials of ServiceAccount ``vault/vault-unsealer`` (a TokenRequest token)."""
    kube.admin.create_namespace(CUSTODY_NS)
    kube.admin.apply({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "unseal-shares", "namespace": CUSTODY_NS},
        "data": {f"share-{i + 1}": base64.b64encode(keys[i].hex().encode()).decode()
                 for i in range(2)},
    })
    for manifest in ("rbac.yaml", "custody-rbac.yaml"):
        kube.admin.apply_yaml((ROOT / "manifests" / "unsealer" / manifest).read_text())
    token = kube.admin.mint_token(VAULT_NS, "vault-unsealer", expiration_seconds=24 * 3600)
    return kube.write_kubeconfig(kubeconfig, token=token)


@contextlib.asynccontextmanager
async def rig(directory: Path, *, peer: bool = False, poll: str = "10s",
              backoff_max: str = "5m") -> AsyncIterator[Rig]:
    """A testbed with Vault initialised (5 shares, threshold 3, unsealed, kv-v2 at secret/), its
    shares in custody as ``bench unseal`` lays them out (:func:`bench.unseal.custody_configs`):
    local, a Secret (2) and two files (2 and 1); or with ``peer``, a Secret (2) and unsealer
    "b" (2, in its file, released over mutual TLS). No unsealer runs yet."""
    port = free_port()
    async with running_kube(pod_ready_delay=0.05) as kube, \
            running_vault(nodes=3, hosts=HOSTS.split(","), port=port, tls=True,
                          tls_dir=directory / "vault-tls") as vault, \
            vault_pods(kube, vault, namespace=VAULT_NS) as pods:
        init = vault.admin.bootstrap(shares=5, threshold=THRESHOLD)  # unsealed, kv-v2
        keys = list(init.keys)
        kubeconfig = install_unsealer(kube, keys, directory / "unsealer.kubeconfig")
        _initial, a, b = custody_configs(directory, peer_port=free_port() if peer else None)
        files = {"disk-b": keys[2:4], "backup": keys[4:]} if peer else \
            {"disk-a": keys[2:4], "disk-b": keys[4:]}
        for name, held in files.items():
            write_private(directory / name, "".join(f"{k.hex()}\n" for k in held))
        impostor = Impostor(port=port)
        await impostor.start(kube)
        configs = {"a": a} | ({"b": b} if b is not None else {})
        found = Rig(kube=kube, vault=vault, pods=pods, keys=keys, root_token=init.root_token,
                    directory=directory, port=port, impostor=impostor, configs=configs,
                    poll=poll, backoff_max=backoff_max, kubeconfig=kubeconfig)
        try:
            yield found
        finally:
            await found.stop_all(sig=signal.SIGKILL)
            await impostor.close()


async def _start_all(rig: Rig) -> None:
    """Start every process that is not running (all of them after a power cut)."""
    names = [name for name in [*rig.configs, *(["syncd"] if rig.syncd_kubeconfig else [])]
             if name not in rig.processes or rig.processes[name].returncode is not None]
    await asyncio.gather(*(rig.start(name) for name in names))


async def _guard_secret(rig: Rig, seen: list[str]) -> None:
    """Note every moment syncd's Secret is missing or blank (it must never be)."""
    while True:
        value = rig.synced_value()
        if not value and not seen:
            seen.append(f"Secret {APPS_NS}/power {'deleted' if value is None else 'blanked'}")
        await asyncio.sleep(0.02)


# --- the load: secrets rotating under syncd while a scenario runs -----------------------------


@dataclass
class Load:
    """N VaultStaticSecrets ``apps/r<i>`` (Vault ``secret/load/<i>``, read from vault-0)
    rotating at a steady rate under syncd, and the fault suite's checker following them;
    ``apps/d0`` and ``apps/d1`` are restarted by the changes of ``r0`` and ``r1``. Around a
    scenario: :meth:`begin`, then :meth:`judge` once every pod is unsealed again."""

    rig: Rig
    secrets: int
    rate: float
    refresh: float
    ledger: Ledger
    rotator: Rotator
    checker: Checker
    sampler: RateSampler
    workloads: dict[str, str]  #: Deployment -> the Secret whose changes restart it
    settle: float = 120.0
    #: Exit codes of syncd's exits on its own (restarted by :func:`_supervise_syncd`).
    syncd_exits: list[int] = field(default_factory=list)
    _mark: int = 0
    _refused: int = 0
    _window: Window = field(default_factory=lambda: Window(0, {}, Counter()))

    async def begin(self) -> None:
        self._mark, self._refused = len(self.ledger.written), self.rotator.refused
        self._window = await open_window(self.checker, self.workloads)
        self.sampler.arm()

    async def judge(self) -> tuple[dict[str, Any], list[str]]:
        """The load's figures and the invariants it broke, over the scenario: writes resumed
        after the unseal (a write refused while Vault was sealed is no rotation); one change
        of each workload's Secret; then every rotation delivered and nothing behind Vault
        within ``settle``, no Secret blanked, deleted or sent back on the way, one restart
        per change, syncd's request rate within the fault suite's bound, no value in syncd's
        output or the Events."""
        checker, ledger = self.checker, self.ledger
        rates = await self.sampler.disarm()
        ended = time.monotonic()
        violations = []
        try:
            await until(lambda: any(at > ended for *_, at in ledger.written[self._mark:]),
                        deadline=30, every=0.05)
        except TimeoutError:
            violations.append("no rotation written for 30 s after the unseal")
        for secret in self.workloads.values():
            await self.rotator.write(secret)
        writes = ledger.written[self._mark:]
        recovery, undelivered, found = await verdict(
            checker, self._window, writes=writes, workloads=self.workloads,
            settle=self.settle, debounce=DEBOUNCE, since=ended, after="the scenario")
        violations += found
        bound = bounds(secrets=self.secrets, refresh=self.refresh, rate=self.rate,
                       window=self.sampler.window)
        violations += [f"syncd hot loop: {rates[server]:g} requests/s to {server} (bound"
                       f" {limit:g})" for server, limit in bound.items() if rates[server] > limit]
        texts = {"syncd output": (self.rig.directory / "unsealer-syncd.log").read_text(
            errors="replace"), "Events": repr(self.rig.kube.admin.list("v1", "Event", APPS_NS))}
        leaked = count(sweep(texts, with_encodings(list(ledger.values))))
        if leaked:
            violations.append(f"{leaked} rotated values in syncd's output or Events")
        return {"secrets": self.secrets, "rotations_written": len(writes),
                "rotations_delivered": len(writes) - undelivered,
                "writes_refused": self.rotator.refused - self._refused,
                "recovery_s": recovery, "syncd_max_request_rate": rates,
                "syncd_restarted_after_exiting": len(self.syncd_exits)}, violations


@contextlib.asynccontextmanager
async def loaded(rig: Rig, *, secrets: int, rate: float = 10.0, refresh: float = 10.0,
                 settle: float = 120.0) -> AsyncIterator[Load]:
    """syncd running with ``secrets`` VaultStaticSecrets synced, and rotating from now on."""
    await rig.prepare_syncd()
    names = {f"r{i}": f"load/{i}" for i in range(secrets)}
    address = rig.vault.addresses[0]
    tls = ssl.create_default_context(cafile=str(rig.vault.ca_file))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls, limit=0)) as session:
        ledger = Ledger()
        rotator = Rotator(session=session, vault_address=address, token=rig.root_token,
                          ledger=ledger, paths=names, rate=rate)
        await rotator.write_all(list(names))
        workloads = {}
        admin = rig.kube.admin
        for index, name in enumerate(names):
            spec: dict[str, Any] = {
                "mount": "secret", "path": names[name], "type": "kv-v2",
                "refreshAfter": f"{refresh:g}s", "destination": {"name": name, "create": True}}
            if index < WORKLOADS:
                workload = f"d{index}"
                admin.apply({
                    "apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": workload, "namespace": APPS_NS},
                    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": workload}},
                             "template": {"metadata": {"labels": {"app": workload}}, "spec": {
                                 "containers": [{"name": "app", "image": "app:1", "envFrom": [
                                     {"secretRef": {"name": name}}]}]}}}})
                spec["rolloutRestartTargets"] = [{"kind": "Deployment", "name": workload}]
                workloads[workload] = name
            admin.apply({"apiVersion": GROUP_VERSION, "kind": "VaultStaticSecret",
                         "metadata": {"name": name, "namespace": APPS_NS}, "spec": spec})
            if index % 50 == 0:
                await asyncio.sleep(0)  # let the API server answer meanwhile
        checker = Checker(session=session, kube_url=rig.kube.url, namespace=APPS_NS,
                          vault_address=address, vault_token=rig.root_token, paths=names,
                          ledger=ledger)
        await checker.start()

        async def counts() -> tuple[int, int]:
            snapshot = rig.vault.admin.request_counts()
            return rig.kube.requests.users[SYNCD_USER], vault_syncd_requests(
                {key: n for key, n in snapshot.items() if not key.startswith(UNSEALER_PATHS)})

        load = Load(rig=rig, secrets=secrets, rate=rate, refresh=refresh, ledger=ledger,
                    rotator=rotator, checker=checker, sampler=RateSampler(counts=counts),
                    workloads=workloads, settle=settle)
        supervisor = asyncio.create_task(_supervise_syncd(load), name="syncd supervisor")
        try:
            await rig.start("syncd")
            if not await checker.wait(lambda: len(checker.held) == secrets, deadline=300):
                raise RuntimeError(f"{len(checker.held)} of {secrets} Secrets synced after"
                                   f" 300 s; see {rig.directory}/unsealer-syncd.log")
            rotator.start(names=[n for n in names if n not in workloads.values()])
            yield load
        finally:
            supervisor.cancel()
            await asyncio.gather(supervisor, return_exceptions=True)
            await rotator.stop()
            await checker.stop()


async def _supervise_syncd(load: Load) -> None:
    """Start syncd again when it exits on its own (as the kubelet restarts a container): it
    does when it cannot renew its Lease for the renew deadline (the API server failing
    10 s). A syncd the scenario stopped (a power cut) is the scenario's to start."""
    while True:
        await asyncio.sleep(0.5)
        process = load.rig.processes.get("syncd")
        if process is not None and process.returncode is not None:
            load.syncd_exits.append(process.returncode)
            await load.rig.start("syncd")


async def under_load(rig: Rig, scenario: Callable[[], Awaitable[Row]], *, secrets: int,
                     rate: float = 10.0, refresh: float = 10.0, settle: float = 120.0) -> Row:
    """``scenario`` run while ``secrets`` rotate (none: alone); the load's verdict joins its
    row."""
    if not secrets:
        return await scenario()
    async with loaded(rig, secrets=secrets, rate=rate, refresh=refresh, settle=settle) as load:
        await load.begin()
        row = await scenario()
        row.load, violations = await load.judge()
    row.violations += violations
    if load.syncd_exits:
        row.notes += (f"; syncd exited on its own {len(load.syncd_exits)} time(s) (the Lease"
                      " not renewed) and was restarted")
    return row


# --- the scenarios -----------------------------------------------------------------------------


async def power_loss(rig: Rig, *, cycles: int = 3, deadline: float = 60.0,
                     syncd: bool = False) -> Row:
    """Every Vault pod loses power and so do the unsealer processes (SIGKILL, no shutdown);
    everything comes back at once, nobody touches anything: timed from the cut to every pod
    unsealed (the unsealer's own start included). With ``syncd``, syncd dies and comes back
    too: a value written to Vault once it is unsealed must reach the Secret (timed), and the
    Secret is never deleted or blanked meanwhile."""
    if syncd:
        await rig.prepare_syncd()
    await _start_all(rig)
    first = await rig.until_unsealed(deadline=deadline)
    times: list[float] = []
    resumed: list[float] = []
    violations: list[str] = [] if first is not None else ["never unsealed at the start"]
    if syncd:
        try:
            await until(functools.partial(rig.synced, "v0"), deadline=deadline)
        except TimeoutError:
            violations.append(f"syncd never synced v0 within {deadline:g} s")
            cycles = 0
    bad_secret: list[str] = []
    guard = asyncio.create_task(_guard_secret(rig, bad_secret)) if syncd else None
    async with RateMeter(rig) as meter:
        for number in range(cycles if first is not None else 0):
            began = time.monotonic()
            await rig.stop_all(sig=signal.SIGKILL)
            rig.pods.power_cut()
            if not all(rig.sealed()):
                violations.append("the power cut left a pod unsealed (testbed)")
            await _start_all(rig)
            took = await rig.until_unsealed(deadline=deadline)
            if took is None:
                violations.append(f"not unsealed {deadline:g} s after a power cut")
                break
            times.append(time.monotonic() - began)
            if syncd:
                value, written = f"v{number + 1}", time.monotonic()
                await rig.write_secret(value)
                try:
                    await until(functools.partial(rig.synced, value), deadline=deadline,
                                every=0.01)
                except TimeoutError:
                    violations.append(f"{value}, written once Vault was unsealed, not in the"
                                      f" Secret {deadline:g} s later")
                    break
                resumed.append(time.monotonic() - written)
    if guard is not None:
        guard.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await guard
    notes = "from the cut to every pod unsealed, the unsealer's start included"
    if syncd:
        notes += (f"; syncd killed too: a value written at the unseal reached the Secret in"
                  f" {_recovery(resumed)} s (refreshAfter {REFRESH})")
    # The rate is reported, not judged: here it is the work of starting and unsealing.
    return Row("power loss of every pod, the unsealer" + (" and syncd" if syncd else ""),
               faults_injected=cycles, unseals_expected=3 * cycles,
               unseals_done=3 * len(times), violations=violations + bad_secret +
               rig.violations(), recovery_s=_recovery(times), max_request_rate=meter.max,
               notes=notes, facts={"syncd_resumed_s": resumed})


async def killed_mid_unseal(rig: Rig, *, cycles: int = 3, latency: float = 1.0,
                            deadline: float = 60.0) -> Row:
    """A pod restarts; while the unsealer is between two shares (each ``sys/unseal`` made
    ``latency`` slow), it is SIGKILLed: Vault is left with part of a share set (progress 1 or
    2 of 3, a nonce the next process never saw). The restarted unsealer must still unseal it.
    Timed from the new process's start to the pod unsealed."""
    await _start_all(rig)
    violations: list[str] = []
    if await rig.until_unsealed(deadline=deadline) is None:
        violations.append("never unsealed at the start")
        cycles = 0
    times: list[float] = []
    left: list[int] = []
    async with RateMeter(rig) as meter:
        for number in range(cycles):
            index = number % 3
            node = rig.vault.admin.node(index)
            rig.vault.admin.add_fault(method="PUT", path="/v1/sys/unseal", latency=latency,
                                      node=index)
            rig.pods.restart(f"vault-{index}")
            try:
                await until(functools.partial(rig.mid_unseal, index), deadline=deadline)
            except TimeoutError:
                violations.append(f"vault-{index}: no share submitted within {deadline:g} s")
                break
            await rig.stop("a", sig=signal.SIGKILL)
            left.append(node.progress if node.sealed else THRESHOLD)
            rig.vault.admin.clear_faults()
            # The share in flight when the process died still lands (the server read it):
            # wait for it, so the next process meets the half-way state, not a race.
            await asyncio.sleep(latency + 0.1)
            left[-1] = node.progress if node.sealed else THRESHOLD
            if not 0 < left[-1] < THRESHOLD:
                violations.append(f"vault-{index}: progress {left[-1]} after the kill, not"
                                  " half-way (the scenario measured nothing)")
            began = time.monotonic()
            await rig.start("a")
            if await rig.until_unsealed(deadline=deadline) is None:
                violations.append(f"vault-{index} still sealed {deadline:g} s after the"
                                  f" unsealer restarted (progress {node.progress})")
                break
            times.append(time.monotonic() - began)
    return Row("unsealer SIGKILLed mid-unseal", faults_injected=len(left),
               unseals_expected=cycles, unseals_done=len(times),
               violations=violations + rig.violations(),
               recovery_s=_recovery(times), max_request_rate=meter.max,
               notes=f"progress left by the killed process: {left}; timed from the new"
               " process's start", facts={"progress_left": left})


@dataclass(frozen=True)
class Outage:
    """A custodian fault: ``down`` takes it away, ``back`` restores it."""

    name: str
    down: Callable[[Rig], Awaitable[None]]
    back: Callable[[Rig], Awaitable[None]]
    peer: bool = False


async def _secret_forbidden(rig: Rig) -> None:
    rig.kube.faults.error(403, resource="secrets", namespace=CUSTODY_NS)
    (rig.directory / "disk-b").rename(rig.directory / "disk-b.away")


async def _api_server_failing(rig: Rig) -> None:
    rig.kube.faults.error(503)  # every request: watches, the Secret, Events
    (rig.directory / "disk-b").rename(rig.directory / "disk-b.away")


async def _kube_back(rig: Rig) -> None:
    rig.kube.faults.clear()
    (rig.directory / "disk-b.away").rename(rig.directory / "disk-b")


async def _file_unreadable(rig: Rig) -> None:
    # Readable by others: refused by the mode check at every read, as an unreadable file is.
    (rig.directory / "disk-a").chmod(0o644)
    (rig.directory / "disk-b").rename(rig.directory / "disk-b.away")


async def _file_back(rig: Rig) -> None:
    (rig.directory / "disk-a").chmod(0o600)
    (rig.directory / "disk-b.away").rename(rig.directory / "disk-b")


async def _peer_down(rig: Rig) -> None:
    await rig.stop("b", sig=signal.SIGKILL)


async def _peer_back(rig: Rig) -> None:
    await rig.start("b")


OUTAGES = {
    "secret-forbidden": Outage("Secret custodian forbidden (403), one file missing",
                               _secret_forbidden, _kube_back),
    "api-server-failing": Outage("API server failing (503 to everything), one file missing",
                                 _api_server_failing, _kube_back),
    "file-unreadable": Outage("file custodian refused (mode 0644), the other missing",
                              _file_unreadable, _file_back),
    "peer-down": Outage("peer unsealer down (killed)", _peer_down, _peer_back, peer=True),
}


async def custodian_down(rig: Rig, outage: Outage, *, seconds: float = 20.0,
                         deadline: float = 60.0) -> Row:
    """Every pod unsealed, then too few custodians answer and the power is cut: the unsealer
    must wait calmly (no share to Vault, bounded requests) for ``seconds``; then the custodian
    comes back and every pod must be unsealed, timed from its return."""
    await _start_all(rig)
    violations: list[str] = []
    if await rig.until_unsealed(deadline=deadline) is None:
        violations.append("never unsealed at the start")
    await outage.down(rig)
    submitted = rig.unseal_requests()
    rig.pods.power_cut()
    async with RateMeter(rig) as meter:
        await asyncio.sleep(seconds)
    partial = rig.unseal_requests() - submitted
    if partial:
        violations.append(f"{partial} sys/unseal requests while too few custodians answered")
    if not all(rig.sealed()):
        violations.append("a pod was unsealed without the missing custodian")
    await outage.back(rig)
    took = await rig.until_unsealed(deadline=deadline)
    if took is None:
        violations.append(f"still sealed {deadline:g} s after the custodian came back")
    return Row(f"custodian down then back: {outage.name}", faults_injected=1,
               unseals_expected=3, unseals_done=0 if took is None else 3,
               violations=violations + rig.violations() + meter.violations(),
               recovery_s=_recovery([took] if took is not None else []),
               max_request_rate=meter.max,
               notes=f"down {seconds:g} s with every pod sealed; timed from its return;"
               f" poll {rig.poll}, backoff max {rig.backoff_max}",
               facts={"partial_unseals": partial})


# --- the command -------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _scratch(rows: list[Row]) -> AsyncIterator[Path]:
    """A directory for one scenario's processes and logs: removed afterwards, unless
    ``BENCH_KEEP`` is set or the scenario's row has a violation (its logs explain it)."""
    directory = Path(tempfile.mkdtemp(prefix="bench-unsealer-faults-"))
    before = len(rows)
    try:
        yield directory
    finally:
        if os.environ.get("BENCH_KEEP") or any(row.violations for row in rows[before:]):
            print(f"kept {directory}: the processes' logs", file=sys.stderr)
        else:
            shutil.rmtree(directory, ignore_errors=True)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every scenario, each on a fresh testbed, with the unsealer's default timings, each while
    ``args.secrets`` rotate."""
    rows: list[Row] = []
    cycles, outage_s = args.cycles, args.outage
    load = {"secrets": args.secrets, "rate": args.rate, "refresh": args.refresh,
            "settle": args.settle}
    async with _scratch(rows) as directory, rig(directory / "power") as bed:
        rows.append(await under_load(bed, functools.partial(
            power_loss, bed, cycles=cycles, syncd=True), **load))
    async with _scratch(rows) as directory, rig(directory / "kill") as bed:
        rows.append(await under_load(bed, functools.partial(
            killed_mid_unseal, bed, cycles=cycles), **load))
    for outage in OUTAGES.values():
        async with _scratch(rows) as directory, rig(directory, peer=outage.peer) as bed:
            rows.append(await under_load(bed, functools.partial(
                custodian_down, bed, outage, seconds=outage_s), **load))
    return {"rows": [row.as_dict() for row in rows]}


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| scenario | faults | unseals done / expected | violations | recovery s"
             " (p50 / p99 / max) | max requests/s (Vault, API server) | rotations written /"
             " delivered (refused while sealed) | syncd max requests/s (Vault, API server) |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        recovery = row["recovery_s"]
        shown = " / ".join(str(recovery.get(k, "-")) for k in ("p50", "p99", "max"))
        load = row.get("load") or {}
        rotations, syncd = "-", "-"
        if load:
            rotations = (f"{load['rotations_written']} / {load['rotations_delivered']}"
                         f" ({load['writes_refused']})")
            rates = load["syncd_max_request_rate"]
            syncd = f"{rates['vault']}, {rates['kube']}"
        lines.append(
            f"| {row['scenario']} | {row['faults_injected']} | {row['unseals_done']} /"
            f" {row['unseals_expected']} | {'; '.join(row['violations']) or 'none'} |"
            f" {shown} | {row['max_request_rate']['vault']}, {row['max_request_rate']['kube']} |"
            f" {rotations} | {syncd} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench unsealer-faults",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=5,
                        help="power cuts, and kills mid-unseal (default 5 each)")
    parser.add_argument("--outage", type=float, default=30.0,
                        help="seconds each custodian stays down (default 30)")
    parser.add_argument("--secrets", type=int, default=1000,
                        help="VaultStaticSecrets rotating under syncd meanwhile (1,000; 0: none)")
    parser.add_argument("--rate", type=float, default=10.0,
                        help="rotations (Vault writes) per second (10)")
    parser.add_argument("--refresh", type=float, default=10.0, help="refreshAfter, s (10)")
    parser.add_argument("--settle", type=float, default=120.0,
                        help="longest wait for every rotation to be delivered, s (120)")
    args = parser.parse_args(argv)
    results = asyncio.run(run(args))
    report("unsealer-faults", parameters={"cycles": args.cycles, "outage_s": args.outage,
                                          "secrets": args.secrets, "rate_per_s": args.rate,
                                          "refreshAfter_s": args.refresh},
           results=results, rows=[(r["scenario"], r["violations"] or "none", "none")
                                  for r in results["rows"]])
    print("\n" + table(results["rows"]))


if __name__ == "__main__":
    main()
