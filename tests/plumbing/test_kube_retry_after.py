"""The JSON client waits out a Retry-After as client-go does, against the Kubernetes emulation:
a 429 (or a 5xx that names a wait) is sent again after that long, at most ten times; any
other failure is the caller's at once."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from plumbing.kube import MAX_RETRIES, KubeError
from plumbing.kube import Kube as KubeClient
from testbed.kube import Kube, running_kube

PATH = "/api/v1/namespaces/default/configmaps/settings"


@pytest.fixture
async def kube() -> AsyncIterator[Kube]:
    async with running_kube() as k:
        k.admin.create({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "settings", "namespace": "default"}})
        yield k


async def test_a_429_is_sent_again_after_its_retry_after(kube: Kube, client: KubeClient) -> None:
    kube.faults.throttle(retry_after=1, verbs="get", resource="configmaps", times=2)
    kube.requests.reset()
    started = time.monotonic()
    found = await client.request("GET", PATH)
    assert found["metadata"]["name"] == "settings"
    assert kube.requests.count("get", "configmaps") == 3
    assert time.monotonic() - started >= 2.0  # waited the two seconds it was asked to


async def test_the_retries_end_and_the_last_answer_is_raised(kube: Kube,
                                                             client: KubeClient) -> None:
    kube.faults.throttle(retry_after=0, verbs="get", resource="configmaps")
    kube.requests.reset()
    with pytest.raises(KubeError) as caught:
        await client.request("GET", PATH)
    assert caught.value.status == 429
    assert kube.requests.count("get", "configmaps") == MAX_RETRIES + 1


async def test_a_failure_without_retry_after_is_not_retried(kube: Kube,
                                                            client: KubeClient) -> None:
    kube.faults.error(500, verbs="get", resource="configmaps", times=1)
    kube.requests.reset()
    with pytest.raises(KubeError) as caught:
        await client.request("GET", PATH)
    assert caught.value.status == 500
    assert kube.requests.count("get", "configmaps") == 1
