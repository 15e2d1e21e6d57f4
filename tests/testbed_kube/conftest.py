"""Fixtures for the Kubernetes emulation's own tests (and usable by other test packages).

* ``kube``: a running emulation with test-speed settings (short pod delays and bookmark interval).
* ``kubeconfig``: a kubeconfig file for it (admin token, namespace ``default``).
* ``k8s``: a kubernetes-asyncio ``ApiClient`` on that kubeconfig.
* ``kubectl``: run kubectl 1.32 against it with a private ``--cache-dir``; skips if absent.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from kubernetes_asyncio import client, config

from testbed.kube import Kube, running_kube

KUBECTL = shutil.which("kubectl")


@pytest.fixture
async def kube() -> AsyncIterator[Kube]:
    async with running_kube(
        pod_ready_delay=0.05, bookmark_interval=0.2, crash_loop_interval=0.1
    ) as k:
        yield k


@pytest.fixture
def kubeconfig(kube: Kube, tmp_path: Path) -> Path:
    return kube.write_kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
async def k8s(kubeconfig: Path) -> AsyncIterator[client.ApiClient]:
    api = await config.new_client_from_config(config_file=str(kubeconfig))
    try:
        yield api
    finally:
        await api.close()


@dataclass
class Run:
    rc: int
    out: str
    err: str

    def check(self) -> Run:
        assert self.rc == 0, f"kubectl failed ({self.rc}): {self.err or self.out}"
        return self


Kubectl = Callable[..., Awaitable[Run]]


@pytest.fixture
def kubectl(kubeconfig: Path, tmp_path: Path) -> Kubectl:
    if KUBECTL is None:
        pytest.skip("kubectl is not installed (tests through kubectl need kubectl 1.32 on PATH)")
    cache = tmp_path / "kubectl-cache"
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "HOME": str(tmp_path),
        "NO_PROXY": "127.0.0.1",
    }

    async def run(*args: str, stdin: str | None = None, timeout: float = 60.0) -> Run:  # noqa: ASYNC109
        proc = await asyncio.create_subprocess_exec(
            KUBECTL,
            f"--cache-dir={cache}",
            *args,
            env=env,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(
            proc.communicate(stdin.encode() if stdin else None), timeout
        )
        return Run(proc.returncode or 0, out.decode(), err.decode())

    return run


@dataclass
class Reply:
    status: int
    body: object
    headers: dict[str, str]

    @property
    def json(self) -> dict:  # type: ignore[type-arg]
        assert isinstance(self.body, dict), self.body
        return self.body


class Raw:
    """Plain HTTP against the emulation, to check exact wire answers."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def __call__(
        self,
        method: str,
        path: str,
        *,
        body: object = None,
        token: str | None = None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        data: bytes | None = None,
    ) -> Reply:
        hdrs = {**(headers or {})}
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        if body is not None:
            data = json.dumps(body).encode()
        if data is not None:
            hdrs["Content-Type"] = content_type
        async with self.session.request(method, self.base + path, data=data, headers=hdrs) as resp:
            text = await resp.text()
            try:
                parsed: object = json.loads(text)
            except ValueError:
                parsed = text
            return Reply(resp.status, parsed, dict(resp.headers))


@pytest.fixture
async def raw(kube: Kube) -> AsyncIterator[Raw]:
    async with aiohttp.ClientSession() as session:
        yield Raw(session, kube.url)
