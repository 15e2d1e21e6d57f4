"""The faults, each as an injection and a clearing, written against :class:`Control`.

A scenario is one fault held for the fault window while secrets keep rotating; ``clear`` ends
it (Vault unsealed, rules removed, the API server back). Faults that need syncd as a process
of its own (SIGKILL, the leader killed) are the runner's (``needs_processes``): the fast cases
run syncd in the test's event loop and cannot kill it.

Vault faults hit syncd's KV reads (``GET /v1/secret/data/*``); Kubernetes faults hit the
Secrets and the VaultStaticSecret statuses syncd writes, never the Lease (a fault on the Lease
is a leadership scenario of its own).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bench.faults.control import Control

KV_READS = {"method": "GET", "path": "/v1/secret/data/*"}
STATUS = "vaultstaticsecrets.secrets.vault-syncd.dev/status"


@dataclass(frozen=True, kw_only=True)
class Scenario:
    name: str
    injected: str  #: what was injected, for the table
    inject: Callable[[Control], Awaitable[None]]
    clear: Callable[[Control], Awaitable[None]]
    needs_processes: bool = False
    hold: float | None = None  #: seconds the fault holds, if not the run's fault window


async def _nothing(control: Control) -> None:
    return None


async def _clear_vault(control: Control) -> None:
    await control.vault_clear()


async def _clear_kube(control: Control) -> None:
    await control.kube_clear()


async def _vault_5xx(control: Control) -> None:
    await control.vault_fault(**KV_READS, status=500, probability=0.5)
    await control.vault_fault(**KV_READS, status=503)


async def _vault_sealed(control: Control) -> None:
    await control.vault_seal()


async def _vault_unseal(control: Control) -> None:
    await control.vault_unseal()


async def _vault_timeouts(control: Control) -> None:
    await control.vault_fault(**KV_READS, latency=90.0)  # longer than any client timeout


async def _vault_resets(control: Control) -> None:
    await control.vault_fault(**KV_READS, reset=True)


async def _vault_slow(control: Control) -> None:
    await control.vault_fault(**KV_READS, latency=1.5)


async def _kube_conflicts(control: Control) -> None:
    for resource in ("secrets", STATUS):
        await control.kube_fault("error", code=409, verbs=["update", "patch"],
                                 resource=resource, probability=0.7)


async def _kube_expired(control: Control) -> None:
    await control.kube_expire_watches()


async def _kube_throttled(control: Control) -> None:
    for resource in ("secrets", STATUS, "vaultstaticsecrets.*"):
        await control.kube_fault("throttle", retry_after=2, resource=resource)


async def _kube_dropped(control: Control) -> None:
    # Every watch open now is cut, and every new one is cut after 2 s or 5 events.
    await control.kube_fault("drop_watch", verbs=["watch"], seconds=2.0)
    await control.kube_fault("drop_watch", verbs=["watch"], after_events=5)
    await control.kube_cut_watches()


async def _kube_restart(control: Control) -> None:
    await control.kube_restart(down=3.0)


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(name="steady", injected="none (the control row: rotations only)",
             inject=_nothing, clear=_nothing),
    Scenario(name="vault-5xx", injected="KV reads: 500 (half) and 503 (the rest)",
             inject=_vault_5xx, clear=_clear_vault),
    Scenario(name="vault-sealed", injected="Vault sealed mid-sync (503 sealed), then unsealed",
             inject=_vault_sealed, clear=_vault_unseal),
    Scenario(name="vault-sealed-long", injected="Vault sealed for 60 s, then unsealed",
             inject=_vault_sealed, clear=_vault_unseal, hold=60.0),
    Scenario(name="vault-timeouts", injected="KV reads unanswered for 90 s",
             inject=_vault_timeouts, clear=_clear_vault),
    Scenario(name="vault-resets", injected="KV reads: connection reset",
             inject=_vault_resets, clear=_clear_vault),
    Scenario(name="vault-slow", injected="KV reads: 1.5 s latency",
             inject=_vault_slow, clear=_clear_vault),
    Scenario(name="kube-409", injected="Secret and status writes: 409 Conflict (70 %)",
             inject=_kube_conflicts, clear=_clear_kube),
    Scenario(name="kube-410", injected="every watch ended by a 410 ERROR, history compacted",
             inject=_kube_expired, clear=_nothing),
    Scenario(name="kube-429", injected="Secrets and VaultStaticSecrets: 429, Retry-After 2",
             inject=_kube_throttled, clear=_clear_kube),
    Scenario(name="kube-dropped-watches", injected="watches cut, and cut again after 2 s",
             inject=_kube_dropped, clear=_clear_kube),
    Scenario(name="kube-restart", injected="API server down 3 s, back with its state",
             inject=_kube_restart, clear=_nothing),
    # The runner's own (see bench/faults/runner.py): syncd as processes.
    Scenario(name="syncd-sigkill",
             injected="leader SIGKILLed during a held Secret write (mid-write), restarted",
             inject=_nothing, clear=_nothing, needs_processes=True),
    Scenario(name="leader-killed", injected="leader SIGKILLed, the standby takes over",
             inject=_nothing, clear=_nothing, needs_processes=True),
)

BY_NAME = {scenario.name: scenario for scenario in SCENARIOS}
