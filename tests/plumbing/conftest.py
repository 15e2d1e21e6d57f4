"""A JSON Kubernetes client of syncd's kind, connected to the module's ``kube`` emulation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from plumbing.kube import Kube as KubeClient
from plumbing.kube import connect
from testbed.kube import Kube


@pytest.fixture
async def client(kube: Kube, tmp_path: Path) -> AsyncIterator[KubeClient]:
    api = await connect(kubeconfig=str(kube.write_kubeconfig(tmp_path / "kubeconfig")))
    try:
        yield api
    finally:
        await api.close()
