"""SIGTERM: the reconcile in flight finishes within the grace period or is cancelled; ``run``
returns promptly, and no task of syncd is left running.

syncd runs here as ``syncd run`` runs it: under ``plumbing.lifecycle.run_until_signalled``, and
the process really receives SIGTERM.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import time

from plumbing.lifecycle import run_until_signalled
from syncd.operator import run
from tests.syncd.e2e.world import ROOT, World


def _syncd_tasks() -> list[asyncio.Task[object]]:
    """Live tasks running code of syncd or plumbing (the testbeds' tasks are not counted)."""
    roots = (str(ROOT / "syncd"), str(ROOT / "plumbing"))
    found = []
    for task in asyncio.all_tasks():
        if task is asyncio.current_task() or task.done():
            continue
        frame = task.get_coro()
        names = set()
        while frame is not None:
            code = getattr(frame, "cr_code", None) or getattr(frame, "gi_code", None)
            if code is not None:
                names.add(code.co_filename)
            frame = getattr(frame, "cr_await", None) or getattr(frame, "gi_yieldfrom", None)
        if any(name.startswith(roots) for name in names):
            found.append(task)
    return found


async def _sigterm_while_reading(world: World, *, latency: float, grace: float) -> float:
    """Start syncd, hold its first Vault read for ``latency`` s, SIGTERM it while the read is
    in flight; the seconds from the signal until ``run`` returned."""
    world.settings = dataclasses.replace(world.settings, grace_seconds=grace)
    await world.write_kv("kv-secret/info", {"password": world.value("shutdown")})
    faults = world.vault.admin.add_fault(path="/v1/secret/data/kv-secret/*", latency=latency,
                                         times=1)
    main = asyncio.create_task(run_until_signalled(lambda stop: run(world.settings, stop)))
    await world.wait_started()
    world.vss("in-flight")
    await world.eventually(lambda: faults[0].fired == 1, message="the Vault read in flight")
    assert world.spans_named("reconcile") == []  # the reconcile has not finished

    signalled = time.monotonic()
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(main, timeout=grace + 5)
    elapsed = time.monotonic() - signalled
    assert '"event": "stopped"' in world.logs.getvalue()
    assert _syncd_tasks() == []
    return elapsed


async def test_sigterm_lets_the_reconcile_in_flight_finish(world: World) -> None:
    elapsed = await _sigterm_while_reading(world, latency=0.5, grace=3.0)
    assert elapsed < 3.0
    # It finished its work: the Secret and the status are written.
    assert (world.secret_data("in-flight") or {}).get("password", "").startswith("s3cr3t-")
    assert world.condition("in-flight", "Ready")["status"] == "True"
    assert len(world.spans_named("reconcile")) == 1


async def test_sigterm_cancels_a_reconcile_longer_than_the_grace(world: World) -> None:
    elapsed = await _sigterm_while_reading(world, latency=5.0, grace=0.5)
    assert elapsed < 0.5 + 1.0, f"run() took {elapsed:.1f} s to return"
    # Cancelled: nothing was written.
    assert world.secret("in-flight") is None
    assert world.condition("in-flight", "Ready") == {}
