"""What every scenario shares: the testbed in processes of its own, syncd as a real process,
a watch on the destination Secrets, and the report (JSON in ``bench/results/``, Markdown on
stdout).

Process layout, so that each CPU second lands on the right account:

- the Kubernetes emulation (``python -m bench.kube_server``) and the Vault emulation
  (``python -m testbed.vault --vault-bootstrap``), one process each;
- syncd (``python -m syncd run``) under its own ServiceAccount (a TokenRequest token, the
  manifests' RBAC), measured from ``/proc`` together with every process it starts (a template
  worker, say), as a container limit would count them;
- ``syncd audit-relay`` (``rotation --source audit``), Vault's sidecar, measured the same way;
- this driver: creates objects, writes to Vault, and follows the Secrets through one watch
  (a poll of 10,000 Secrets would load the API server more than syncd does).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import aiohttp

from bench.kube_server import NAMESPACE

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGESIZE") // 1024


# --- processes --------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                tree.setdefault(parent, []).append(int(entry.name))
    return tree


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants alive now."""
    tree, found, stack = _children(), [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(tree.get(current, []))
    return found


def cpu_seconds(pids: Iterable[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / TICKS


def rss_mib(pids: Iterable[int]) -> float:
    """Resident memory of ``pids``, summed (shared pages counted in each, as RSS is)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KIB
    return total / 1024


def pss_mib(pids: Iterable[int]) -> float:
    """Proportional memory of ``pids``, summed: a page shared by n of them counts 1/n in
    each, so the sum counts it once, as the container's memory cgroup does."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
    return total / 1024


@dataclass
class Syncd:
    """A running ``syncd run`` and the /proc readings of its process tree."""

    process: asyncio.subprocess.Process
    log: Path
    started: float

    @property
    def pid(self) -> int:
        return self.process.pid

    def pids(self) -> list[int]:
        return process_tree(self.pid)

    def cpu(self) -> float:
        return cpu_seconds(self.pids())

    def rss(self) -> float:
        return rss_mib(self.pids())

    def pss(self) -> float:
        return pss_mib(self.pids())

    def processes(self) -> int:
        return len(self.pids())

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


def _spawn(module: str, *args: str, directory: Path, log: str) -> subprocess.Popen[bytes]:
    with (directory / log).open("wb") as output:
        return subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, stderr=output,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})


async def _wait_for_file(path: Path, process: subprocess.Popen[bytes], what: str) -> None:
    async with asyncio.timeout(60):
        while not path.exists():
            if process.poll() is not None:
                raise RuntimeError(f"{what} exited before it was ready")
            await asyncio.sleep(0.05)


# --- the bench --------------------------------------------------------------------------


@dataclass
class Bench:
    """The testbed processes, the admin sessions to them, and the Secrets watch."""

    directory: Path
    kube_url: str = ""
    control: str = ""
    vault_address: str = ""
    vault_token: str = ""
    syncd_kubeconfig: str = ""
    syncd_token: str = ""
    session: aiohttp.ClientSession = field(init=False)
    secrets: SecretWatch = field(init=False)
    _processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _syncds: list[Syncd] = field(default_factory=list)
    _relays: list[Syncd] = field(default_factory=list)

    def testbed_cpu(self) -> dict[str, float]:
        """CPU seconds used so far by the Kubernetes and the Vault emulation."""
        kube, vault = self._processes[:2]
        return {"kube": cpu_seconds([kube.pid]), "vault": cpu_seconds([vault.pid])}

    async def write_secrets(self, indexes: Iterable[int], value: str,
                            *, concurrency: int = 16) -> dict[int, float]:
        """Write ``{"VALUE": value}`` at ``app/<i>``; returns when each write was answered."""
        pending = list(indexes)
        done: dict[int, float] = {}
        headers = {"X-Vault-Token": self.vault_token}

        async def writer() -> None:
            while pending:
                index = pending.pop()
                async with self.session.post(
                    f"{self.vault_address}/v1/secret/data/app/{index}",
                    json={"data": {"VALUE": value}}, headers=headers,
                ) as response:
                    response.raise_for_status()
                done[index] = time.monotonic()

        await asyncio.gather(*(writer() for _ in range(concurrency)))
        return done

    async def create_static_secrets(self, *, count: int, refresh: float, start: int = 0,
                                    templates: int = 0, instant: bool = False) -> None:
        """``s<start>``... ``s<start+count-1>``; the first ``templates`` with a template; with
        ``instant``, all with ``syncConfig.instantUpdates``."""
        async with self.session.post(f"{self.control}/static-secrets", json={
                "count": count, "start": start, "refresh": refresh,
                "templates": templates, "instant": instant}) as response:
            response.raise_for_status()

    async def apply(self, obj: Mapping[str, Any]) -> None:
        async with self.session.post(f"{self.control}/apply", json=obj) as response:
            response.raise_for_status()

    async def kube_requests(self, *, reset: bool = False) -> dict[str, int]:
        async with self.session.request("DELETE" if reset else "GET",
                                        f"{self.control}/requests") as response:
            return dict(await response.json())

    async def vault_requests(self, *, reset: bool = False) -> dict[str, int]:
        async with self.session.request("DELETE" if reset else "GET",
                                        f"{self.vault_address}/_testbed/requests") as response:
            body = await response.json() if response.content_type == "application/json" else {}
        return dict(body.get("requests") or {})

    async def start_syncd(self, *, args: Iterable[str] = (), cpu: int | None = None,
                          env: Mapping[str, str] | None = None) -> Syncd:
        log = self.directory / f"syncd-{len(self._syncds)}.log"
        handle = log.open("wb")
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "syncd", "run", "--kubeconfig", self.syncd_kubeconfig,
            "--health-address", "", "--log-level", "info", *args,
            stdout=handle, stderr=handle, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), "OTEL_TRACES_EXPORTER": "none",
                 "OTEL_METRICS_EXPORTER": "none", **(env or {})},
            preexec_fn=(lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None,
        )
        handle.close()
        syncd = Syncd(process=process, log=log, started=time.monotonic())
        self._syncds.append(syncd)
        return syncd

    async def vault(self, method: str, path: str, body: Mapping[str, Any] | None = None,
                    ) -> dict[str, Any]:
        """One Vault API call with the root token (``sys/audit/...``); raises on an error."""
        async with self.session.request(
                method, f"{self.vault_address}/v1/{path}", json=body,
                headers={"X-Vault-Token": self.vault_token}) as response:
            text = await response.text()
            if response.status >= 400:
                raise RuntimeError(f"Vault {method} {path}: {response.status} {text}")
            return dict(json.loads(text)) if text.strip() else {}

    async def write_latencies(self, count: int, *, path: str = "latency/probe") -> list[float]:
        """Seconds each of ``count`` sequential KV writes at ``secret/<path>`` took, as this
        driver saw them (the same client and connection each time)."""
        latencies = []
        for number in range(count):
            began = time.perf_counter()
            await self.vault("POST", f"secret/data/{path}", {"data": {"N": str(number)}})
            latencies.append(time.perf_counter() - began)
        return latencies

    async def start_relay(self, *, listen: Path, syncd: str, token_file: Path) -> Syncd:
        """``syncd audit-relay`` as Vault's sidecar would run it (measured like syncd; stopped
        with the bench). ``syncd``: where syncd accepts relays."""
        log = self.directory / f"relay-{len(self._relays)}.log"
        handle = log.open("wb")
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "syncd", "audit-relay", "--listen", str(listen),
            "--syncd", syncd, "--token-file", str(token_file),
            "--vault-address", self.vault_address,
            stdout=handle, stderr=handle, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), "OTEL_TRACES_EXPORTER": "none",
                 "OTEL_METRICS_EXPORTER": "none"},
        )
        handle.close()
        relay = Syncd(process=process, log=log, started=time.monotonic())
        self._relays.append(relay)
        return relay

    @staticmethod
    async def wait_log(process: Syncd, text: bytes, *, deadline: float = 60.0) -> float:
        """Seconds until ``process`` logs ``text`` (raises TimeoutError after ``deadline``)."""
        began = time.monotonic()
        async with asyncio.timeout(deadline):
            while text not in process.log.read_bytes():
                if process.process.returncode is not None:
                    raise RuntimeError(f"exited: see {process.log}")
                await asyncio.sleep(0.05)
        return time.monotonic() - began

    async def wait_ready(self, syncd: Syncd, *, deadline: float = 120.0) -> float:
        """Seconds from start until syncd logs that it is ready (caches listed, leading)."""
        async with asyncio.timeout(deadline):
            while b'"event": "ready"' not in syncd.log.read_bytes():
                if syncd.process.returncode is not None:
                    raise RuntimeError(f"syncd exited: see {syncd.log}")
                await asyncio.sleep(0.05)
        return time.monotonic() - syncd.started


@contextlib.asynccontextmanager
async def running_bench(*, keep: bool = bool(os.environ.get("BENCH_KEEP"))) -> AsyncIterator[Bench]:
    """Start the Kubernetes and Vault emulations (each its own process) and set them up."""
    directory = Path(tempfile.mkdtemp(prefix="bench-"))
    bench = Bench(directory=directory)
    try:
        kube = _spawn("bench.kube_server", "--dir", str(directory), directory=directory,
                      log="kube.log")
        bench._processes.append(kube)
        vault = _spawn("testbed.vault", "--dir", str(directory), "--vault-bootstrap",
                       directory=directory, log="vault.log")
        bench._processes.append(vault)
        await _wait_for_file(directory / "kube.json", kube, "the Kubernetes emulation")
        await _wait_for_file(directory / "ready", vault, "the Vault emulation")
        info = json.loads((directory / "kube.json").read_text())
        bench.kube_url, bench.control = info["url"], info["control"]
        variables = dict(line.split("=", 1)
                         for line in (directory / "vault.env").read_text().split())
        bench.vault_address, bench.vault_token = variables["VAULT_ADDR"], variables["VAULT_TOKEN"]
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            bench.session = session
            async with session.post(f"{bench.control}/setup", json={
                    "vault_address": bench.vault_address,
                    "vault_token": bench.vault_token}) as response:
                response.raise_for_status()
                setup = await response.json()
            bench.syncd_kubeconfig, bench.syncd_token = setup["kubeconfig"], setup["token"]
            bench.secrets = SecretWatch(session=session, base=bench.kube_url)
            await bench.secrets.start()
            try:
                yield bench
            finally:
                await bench.secrets.stop()
                for syncd in [*bench._syncds, *bench._relays]:
                    await syncd.stop()
    finally:
        for process in bench._processes:
            process.send_signal(signal.SIGTERM)
        for process in bench._processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
        if not keep:
            shutil.rmtree(directory, ignore_errors=True)


class SecretWatch:
    """Follows the managed Secrets of the bench namespace: each one's VALUE and when it was
    last seen to change (the driver's clock, ``time.monotonic``)."""

    def __init__(self, *, session: aiohttp.ClientSession, base: str) -> None:
        self._session = session
        self._path = f"{base}/api/v1/namespaces/{NAMESPACE}/secrets"
        self.values: dict[str, str] = {}
        self.changed: dict[str, float] = {}
        self._counts: collections.Counter[str] = collections.Counter()
        self._task: asyncio.Task[None] | None = None
        self._listed = asyncio.Event()
        self._news = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="secret-watch")
        await asyncio.wait_for(self._listed.wait(), 30)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def _see(self, obj: Mapping[str, Any], *, deleted: bool = False) -> None:
        name = obj["metadata"]["name"]
        old = self.values.get(name)
        if deleted:
            if old is not None:
                del self.values[name]
                self._counts[old] -= 1
            return
        encoded = (obj.get("data") or {}).get("VALUE")
        value = base64.b64decode(encoded).decode() if encoded else ""
        if old != value:
            if old is not None:
                self._counts[old] -= 1
            self._counts[value] += 1
            self.values[name] = value
            self.changed[name] = time.monotonic()
            self._news.set()

    async def _run(self) -> None:
        while True:
            async with self._session.get(self._path) as response:
                listing = await response.json()
            for item in listing.get("items") or []:
                self._see(item)
            version = listing["metadata"]["resourceVersion"]
            self._listed.set()
            url = (f"{self._path}?watch=true&allowWatchBookmarks=true"
                   f"&resourceVersion={version}&timeoutSeconds=3600")
            with contextlib.suppress(aiohttp.ClientPayloadError):
                async with self._session.get(url) as response:
                    async for line in response.content:
                        if not line.strip():
                            continue
                        event = json.loads(line)
                        if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                            self._see(event["object"], deleted=event["type"] == "DELETED")
                        elif event["type"] == "ERROR":
                            break  # 410: list again

    def count(self, value: str) -> int:
        return self._counts[value]

    async def wait_count(self, value: str, count: int, *, deadline: float) -> float:
        """Seconds until ``count`` Secrets hold ``value``; raise TimeoutError after ``deadline``."""
        began = time.monotonic()
        async with asyncio.timeout(deadline):
            while self.count(value) < count:
                self._news.clear()
                await self._news.wait()
        return time.monotonic() - began


# --- numbers and reports ----------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile (no interpolation: a figure that was measured)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, int(-(-fraction * len(ordered) // 1)))
    return ordered[min(rank, len(ordered)) - 1]


def spread(indexes: int, count: int, *, seed: int = 11) -> list[int]:
    return random.Random(seed).sample(range(indexes), min(count, indexes))


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "-"


def environment() -> dict[str, Any]:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True, check=False).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True, check=False).stdout.strip()
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "machine": platform.machine(),
        "cpu": model,
        "cores": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "commit": commit + ("+dirty" if dirty else ""),
        "versions": {name: _version(name) for name in (
            "vault-syncd", "aiohttp", "kubernetes_asyncio", "hvac", "apscheduler")},
    }


def report(scenario: str, *, parameters: Mapping[str, Any], rows: list[tuple[str, Any, str]],
           results: Mapping[str, Any], suffix: str = "") -> Path:
    """Write ``bench/results/<scenario><suffix>.json``; print a Markdown table of ``rows``
    (what, figure, target) with the machine, cores and versions."""
    env = environment()
    document = {
        "scenario": scenario,
        "parameters": dict(parameters),
        "results": dict(results),
        "environment": env,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "python -m bench " + " ".join(sys.argv[1:]),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{scenario}{suffix}.json"
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(document, indent=2) + "\n")
    os.replace(temporary, path)
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    print(f"\n### {scenario} ({', '.join(f'{k}={v}' for k, v in parameters.items())})\n")
    print(f"{env['machine']}, {env['cores']} cores ({env['cpu']}), load {env['load_average_1m']}"
          f" at the end; Python {env['python']}, {versions}; commit {env['commit']}\n")
    print("| measure | value | target |\n|---|---|---|")
    for what, value, target in rows:
        print(f"| {what} | {value} | {target} |")
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    print(f"\n`{document['command']}` → {shown}")
    return path


# --- the common start: N objects synced ------------------------------------------------


@dataclass(frozen=True)
class ColdSync:
    syncd: Syncd
    seconds: float  #: from syncd's start until the last Secret held its value
    first_secret: float  #: from syncd's start until the first Secret appeared
    cpu_seconds: float  #: syncd's CPU in that time


async def prepare(bench: Bench, *, secrets: int, refresh: float, value: str = "v1",
                  templates: int = 0, instant: bool = False) -> None:
    """Vault data at ``app/<i>`` and a VaultStaticSecret ``s<i>`` for each (the first
    ``templates`` with a template; all with ``instantUpdates`` if ``instant``), syncd not yet
    running (a cold sync is syncd starting with everything to do)."""
    await bench.write_secrets(range(secrets), value)
    await bench.create_static_secrets(count=secrets, refresh=refresh, templates=templates,
                                      instant=instant)


async def cold_sync(bench: Bench, *, secrets: int, value: str = "v1",
                    syncd_args: Iterable[str] = ()) -> ColdSync:
    """Start syncd and wait until all ``secrets`` Secrets hold ``value``."""
    syncd = await bench.start_syncd(args=syncd_args)
    try:
        await bench.secrets.wait_count(value, secrets, deadline=max(120.0, secrets * 0.2))
    except TimeoutError:
        raise SystemExit(f"cold sync: {bench.secrets.count(value)} of {secrets} Secrets after"
                         f" {time.monotonic() - syncd.started:.0f} s; see {syncd.log}") from None
    cpu = syncd.cpu()
    stamps = [bench.secrets.changed[name] for name, held in bench.secrets.values.items()
              if held == value]
    return ColdSync(syncd=syncd, seconds=max(stamps) - syncd.started,
                    first_secret=min(stamps) - syncd.started, cpu_seconds=cpu)
