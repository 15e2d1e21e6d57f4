"""``kubectl apply --validate=strict`` against the Kubernetes emulation, as a user runs it.

The VSO manifests of the corpus and README's examples are applied with the real client, so
that what kubectl checks (strict field validation against the CRD schemas) is checked too.
"""

from __future__ import annotations

import asyncio
import os
import shutil

import pytest

from tests.syncd.e2e.world import World

KUBECTL = shutil.which("kubectl")


async def kubectl_apply(world: World, text: str) -> str:
    """``text`` (YAML documents) applied; kubectl's output. Skips the test without kubectl."""
    if KUBECTL is None:
        pytest.skip("kubectl is not installed")
    env = {**os.environ, "KUBECONFIG": str(world.kubeconfig),
           "HOME": str(world.kubeconfig.parent), "NO_PROXY": "127.0.0.1"}
    proc = await asyncio.create_subprocess_exec(
        KUBECTL, f"--cache-dir={world.kubeconfig.parent / 'kubectl-cache'}", "apply",
        "--validate=strict", "-f", "-", env=env, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(text.encode()), 60)
    assert proc.returncode == 0, err.decode() or out.decode()
    return out.decode()
