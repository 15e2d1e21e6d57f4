"""One namespace's templates cannot stall the others, nor take syncd past its memory limit
(issue 10, item 2: a nested loop stopped /healthz, the Lease renewals and every namespace;
``{{ 'x'|center(100000000) }}`` peaked at 401 MiB against a limit of 192Mi).

syncd runs here as in its pod: ``syncd run`` in a process of its own (with its template
workers), so that its memory is its own, and a blocked event loop shows as a probe that does not
answer and a Lease that is not renewed. The hostile templates are written by a namespace user of
namespace ``tenant-a`` through their own client, while namespace ``app`` rotates its secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import yaml

from syncd.leadership import LEASES
from syncd.templating import JINJA2_MARKER
from tests.syncd.e2e.world import OPERATOR_NS, ROOT, World
from tests.unsealer.e2e.world import free_port

TENANT_NS = "tenant-a"
REFRESH = 1.0
# Jinja2 templates (the marker line); Go templates are bounded by the same worker.
JINJA = JINJA2_MARKER + "\n"
HOSTILE = {k: JINJA + v for k, v in {
    "spin": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    # More than there are workers: A still holds only one of them.
    "spin-2": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "spin-3": "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}",
    "balloon": "{{ 'x' | center(100000000) }}",
}.items()}


def _memory_limit_kib() -> int:
    """The container's memory limit in manifests/syncd/deployment.yaml (192Mi), in KiB."""
    deployment = next(d for d in yaml.safe_load_all(
        (ROOT / "manifests/syncd/deployment.yaml").read_text()) if d["kind"] == "Deployment")
    limit = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert str(limit["memory"]).endswith("Mi"), limit
    return int(str(limit["memory"])[:-2]) * 1024


def _status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        return dict(line.split(":", 1) for line in status if ":" in line)


def _kib(pid: int, field: str) -> int:
    return int(_status(pid)[field].split()[0])


def _address_space_kib(pid: int) -> int | None:
    """The soft RLIMIT_AS of ``pid`` in KiB; None while it is unlimited (a worker that was just
    started to replace a killed one sets its limit after its imports)."""
    with open(f"/proc/{pid}/limits", encoding="ascii") as limits:
        line = next(x for x in limits if x.startswith("Max address space"))
    soft = line.split()[3]
    return None if soft == "unlimited" else int(soft) // 1024


def _worker_limits(pid: int) -> list[int] | None:
    """Every live worker's address-space limit, or None while one has not set it yet."""
    found = []
    for worker in _children(pid):
        try:
            kib = _address_space_kib(worker)
        except OSError:  # gone meanwhile (killed over budget): not a worker any more
            continue
        if kib is None:
            return None
        found.append(kib)
    return found


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, KeyError):
                if int(_status(int(entry))["PPid"]) == pid:
                    found.append(int(entry))
    return found


@dataclass
class Observed:
    """What the watcher saw of syncd while the hostile templates ran."""

    samples: int = 0
    worst_probe: float = 0.0
    failed_probes: list[str] = field(default_factory=list)
    peak_rss_kib: int = 0
    workers: set[int] = field(default_factory=set)
    renewals: list[tuple[float, str]] = field(default_factory=list)


async def _watch(world: World, pid: int, port: int, observed: Observed,
                 identity: str) -> None:
    """Every 50 ms: /healthz, the RSS of syncd and its workers, the Lease."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2.0)) as session:
        while True:
            started = time.monotonic()
            try:
                async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                    if response.status != 200:
                        observed.failed_probes.append(f"status {response.status}")
            except (aiohttp.ClientError, TimeoutError) as exc:
                observed.failed_probes.append(type(exc).__name__)
            observed.worst_probe = max(observed.worst_probe, time.monotonic() - started)
            total = 0
            for process in (pid, *_children(pid)):
                with contextlib.suppress(OSError, KeyError):
                    total += _kib(process, "VmRSS")
                    if process != pid:
                        observed.workers.add(process)
            observed.peak_rss_kib = max(observed.peak_rss_kib, total)
            lease = world.kube.admin.get(f"{LEASES.group}/{LEASES.version}", "Lease",
                                         "vault-syncd", OPERATOR_NS) or {}
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") == identity and (
                    not observed.renewals or observed.renewals[-1][1] != spec.get("renewTime")):
                observed.renewals.append((time.monotonic(), str(spec.get("renewTime"))))
            observed.samples += 1
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def _syncd_process(world: World, tmp: Path, *,
                         port: int) -> AsyncIterator[tuple[asyncio.subprocess.Process, Path]]:
    log = tmp / "syncd.log"
    with log.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "syncd", "run", "--kubeconfig", str(world.kubeconfig),
            "--namespace", OPERATOR_NS, "--leader-elect", "true",
            "--lease-duration", "2s", "--renew-deadline", "1.5s", "--retry-period", "0.25s",
            "--health-address", f"127.0.0.1:{port}", "--default-refresh-after", "1s",
            "--backoff-max", "2s",
            stdout=sink, stderr=sink, stdin=asyncio.subprocess.DEVNULL,
            env={**os.environ, "OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none",
                 "SYNCD_LOG_LEVEL": "info"},
        )
    try:
        yield process, log
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()


async def test_a_hostile_template_stalls_no_one(world: World, tmp_path: Path) -> None:
    limit = _memory_limit_kib()
    world.kube.admin.create_namespace(TENANT_NS)
    # Namespace A reads Vault as app does (a copy of its token Secret).
    token = world.secret("vault-token") or {}
    world.apply({**{k: v for k, v in token.items() if k in ("apiVersion", "kind", "type",
                                                            "data")},
                 "metadata": {"name": "vault-token", "namespace": TENANT_NS,
                              "labels": token["metadata"].get("labels") or {}}})
    value = world.value("b-first")
    await world.write_kv("kv-secret/info", {"password": value})
    # Namespace B's Secret goes through a template too, so it needs the template workers.
    world.vss("rotating", refreshAfter="1s", destination={
        "name": "rotating", "create": True,
        "transformation": {"excludeRaw": True,
                           "templates": {"dsn": {"text": "db://app:{{ .Secrets.password }}@db"}}}})

    port = free_port()
    async with _syncd_process(world, tmp_path, port=port) as (process, log):
        await world.synced("rotating", deadline=30)
        assert world.secret_data("rotating") == {"password": value,
                                                 "dsn": f"db://app:{value}@db"}
        identity = world.lease_holder()
        assert identity
        main_before = _kib(process.pid, "VmHWM")

        observed = Observed()
        watcher = asyncio.create_task(_watch(world, process.pid, port, observed, identity))
        try:
            async with world.tenant(namespace=TENANT_NS) as tenant:
                for name, text in HOSTILE.items():
                    await tenant.create_vss(name, destination={
                        "name": name, "create": True,
                        "transformation": {"templates": {"out": {"text": text}}}})
            for name in HOSTILE:
                await world.eventually(
                    lambda name=name: world.condition(name, "Ready", TENANT_NS).get("reason")
                    == "TemplateTooExpensive", deadline=15,
                    message=f"{name}: TemplateTooExpensive "
                            f"(now {world.condition(name, 'Ready', TENANT_NS)})")

            # B rotates while A's templates keep being retried: each rotation is in B's Secret
            # within refreshAfter + 1 s.
            for round_ in range(4):
                rotated = world.value(f"b-rotated-{round_}")
                await world.write_kv("kv-secret/info", {"password": rotated})
                written = time.monotonic()
                await world.eventually(
                    lambda rotated=rotated: (world.secret_data("rotating") or {}).get("dsn")
                    == f"db://app:{rotated}@db", deadline=REFRESH + 1.0,
                    message=f"rotation {round_} in B's Secret within refreshAfter + 1 s")
                assert time.monotonic() - written <= REFRESH + 1.0
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        main_peak = _kib(process.pid, "VmHWM")
        worker_limits: list[int] = await world.eventually(
            lambda: _worker_limits(process.pid), deadline=5.0,
            message="every template worker has set its address-space limit")
        assert process.returncode is None, "syncd exited"

        # A: reported, retried with backoff, nothing written.
        for name in HOSTILE:
            found = world.condition(name, "Ready", TENANT_NS)
            assert found["status"] == "False" and found["reason"] == "TemplateTooExpensive"
            assert found["message"].startswith("key 'out': "), found
            assert world.secret(name, TENANT_NS) is None
        for name in ("spin", "spin-2", "spin-3"):
            assert "longer than 1 s" in world.condition(name, "Ready", TENANT_NS)["message"]
        assert "more memory than allowed" in \
            world.condition("balloon", "Ready", TENANT_NS)["message"]

        # The event loop answered throughout, and the Lease was renewed throughout.
        assert observed.samples > 50
        assert not observed.failed_probes, observed.failed_probes
        assert observed.worst_probe < 1.0, observed.worst_probe
        times = [t for t, _ in observed.renewals]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert len(times) > 10 and max(gaps) < 1.5, gaps
        assert world.lease_holder() == identity

        # Memory: syncd and its workers together, sampled, stay under the pod's limit; syncd
        # itself never held the balloon (its peak did not move); each worker is held by the
        # kernel to its idle size plus the budget (--template-memory-mib, 24).
        assert observed.workers, "the templates ran in worker processes"
        assert observed.peak_rss_kib < limit, observed.peak_rss_kib
        assert main_peak - main_before < 16 * 1024, (main_before, main_peak)
        assert worker_limits and all(kib < 56 * 1024 for kib in worker_limits), worker_limits
        print(f"\nsyncd VmHWM {main_before} KiB before A's templates, {main_peak} KiB after; "
              f"syncd + workers peak RSS {observed.peak_rss_kib} KiB over {observed.samples} "
              f"samples; worker address-space limits {worker_limits} KiB (worst case syncd + "
              f"2 workers: {main_peak + 2 * max(worker_limits)} KiB); slowest /healthz "
              f"{observed.worst_probe:.3f} s; largest gap between Lease renewals "
              f"{max(gaps):.2f} s")

    # Stopped on SIGTERM: its workers went with it.
    assert process.returncode == 0
    assert not [p for p in observed.workers if os.path.exists(f"/proc/{p}")]
    logs = log.read_text()
    assert '"event": "stopped"' in logs
    assert not world.leaks([logs])
