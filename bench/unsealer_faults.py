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
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import hvac

from bench.harness import ROOT, percentile, report
from bench.unseal import HOSTS, custody_configs, free_port
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
                       "--log-level", "info", "--health-address", ""]
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
        auth with the root token, and VaultStaticSecret ``apps/power``; its value ``v0``."""
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
    """Requests per second to Vault and to the API server: the highest average over any
    ``window`` seconds (sampled each second). A burst when pods seal (a look at each, an Event
    each) is fine; a retry loop shows as a rate that stays high."""

    def __init__(self, rig: Rig, *, window: int = 5) -> None:
        self._rig = rig
        self._window = window
        self.max = {"vault": 0.0, "kube": 0.0}
        self._samples: list[tuple[int, int, float]] = []
        self._task: asyncio.Task[None] | None = None

    def _counts(self) -> tuple[int, int, float]:
        return self._rig.vault_requests(), self._rig.kube.requests.total, time.monotonic()

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
    names = [*rig.configs, *(["syncd"] if rig.syncd_kubeconfig else [])]
    await asyncio.gather(*(rig.start(name) for name in names))  # as after a power cut


async def _guard_secret(rig: Rig, seen: list[str]) -> None:
    """Note every moment syncd's Secret is missing or blank (it must never be)."""
    while True:
        value = rig.synced_value()
        if not value and not seen:
            seen.append(f"Secret {APPS_NS}/power {'deleted' if value is None else 'blanked'}")
        await asyncio.sleep(0.02)


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
async def _scratch() -> AsyncIterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="bench-unsealer-faults-"))
    try:
        yield directory
    finally:
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(directory, ignore_errors=True)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every scenario, each on a fresh testbed, with the unsealer's default timings."""
    rows: list[Row] = []
    cycles, outage_s = args.cycles, args.outage
    async with _scratch() as directory, rig(directory / "power") as bed:
        rows.append(await power_loss(bed, cycles=cycles, syncd=True))
    async with _scratch() as directory, rig(directory / "kill") as bed:
        rows.append(await killed_mid_unseal(bed, cycles=cycles))
    for outage in OUTAGES.values():
        async with _scratch() as directory, rig(directory, peer=outage.peer) as bed:
            rows.append(await custodian_down(bed, outage, seconds=outage_s))
    return {"rows": [row.as_dict() for row in rows]}


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| scenario | faults | unseals done / expected | violations | recovery s"
             " (p50 / p99 / max) | max requests/s (Vault, API server) |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        recovery = row["recovery_s"]
        shown = " / ".join(str(recovery.get(k, "-")) for k in ("p50", "p99", "max"))
        lines.append(
            f"| {row['scenario']} | {row['faults_injected']} | {row['unseals_done']} /"
            f" {row['unseals_expected']} | {'; '.join(row['violations']) or 'none'} |"
            f" {shown} | {row['max_request_rate']['vault']}, {row['max_request_rate']['kube']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench unsealer-faults",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=5,
                        help="power cuts, and kills mid-unseal (default 5 each)")
    parser.add_argument("--outage", type=float, default=30.0,
                        help="seconds each custodian stays down (default 30)")
    args = parser.parse_args(argv)
    results = asyncio.run(run(args))
    report("unsealer-faults", parameters={"cycles": args.cycles, "outage_s": args.outage},
           results=results, rows=[(r["scenario"], r["violations"] or "none", "none")
                                  for r in results["rows"]])
    print("\n" + table(results["rows"]))


if __name__ == "__main__":
    main()
