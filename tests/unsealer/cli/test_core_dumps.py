"""Both services keep their memory (tokens, shares) out of core dumps: RLIMIT_CORE 0 and not
dumpable, read from outside the running process where the kernel shows it."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest


def _core_limit(pid: int) -> list[str]:
    """The soft and hard 'Max core file size' of a running process, from /proc/PID/limits."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max core file size"):
            return line.split()[4:6]
    raise AssertionError("no core limit line")


async def _first_line_then_limits(world: Any, *argv: str) -> tuple[list[str], str]:
    """Start a service, wait for its first log line (it is running main), read its limits."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", *argv, stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL, env=world.environment({"SYNCD_LOG_LEVEL": "debug"}),
        cwd=world.workdir)
    assert process.stderr is not None
    try:
        first = await asyncio.wait_for(process.stderr.readline(), 30)
        assert first, f"{argv[0]} ended before logging anything"
        limits = _core_limit(process.pid)
        process.send_signal(signal.SIGTERM)
        rest = await asyncio.wait_for(process.stderr.read(), 30)
        await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    err = (first + rest).decode()
    world.record((argv[0], "run"), process.returncode or 0, out="", err=err)
    return limits, err


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
async def test_unsealer_run_has_no_core_dumps(world: Any) -> None:
    keys = world.bootstrap().keys
    world.place({"kube-a": keys[0:2], "kube-b": keys[2:4], "disk": [keys[4], keys[0]]})
    limits, _ = await _first_line_then_limits(
        world, "unsealer", "run", "--custody-config", str(world.custody_config()),
        *world.pod_args(), "--allow-plain-http", "--health-address", "127.0.0.1:0")
    assert limits == ["0", "0"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
async def test_syncd_run_has_no_core_dumps(world: Any) -> None:
    limits, _ = await _first_line_then_limits(
        world, "syncd", "run", "--kubeconfig", str(world.kubeconfig), "--leader-elect", "false",
        "--health-address", "127.0.0.1:0")
    assert limits == ["0", "0"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
@pytest.mark.parametrize("service", ["unsealer", "syncd"])
def test_each_cli_entry_point_makes_the_process_not_dumpable(service: str) -> None:
    """PR_GET_DUMPABLE is only answered to the process itself (root may read any process's
    /proc files whatever the flag): a child runs the real entry point, then asks."""
    probe = (
        "import ctypes, resource\n"
        f"from {service}.cli import main\n"
        "try:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
        "print(ctypes.CDLL(None).prctl(3, 0, 0, 0, 0), resource.getrlimit(resource.RLIMIT_CORE))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True, timeout=60)
    assert result.stdout.splitlines()[-1] == "0 (0, 0)"
