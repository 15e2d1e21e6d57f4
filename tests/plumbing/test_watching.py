"""The informer against the Kubernetes emulation, as a misbehaving server or proxy would treat it:
malformed events are skipped (the informer keeps following), and watches that the server ends
at once are reopened with a growing delay (no hot loop), reset by a healthy stream."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import AsyncIterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from plumbing import telemetry
from plumbing.kube import Kube as KubeClient
from plumbing.kube import Resource
from plumbing.watching import Informer
from testbed.kube import Kube, running_kube

CONFIGMAPS = Resource("", "v1", "configmaps")
SECRET = "s3cr3t-in-a-malformed-event-7f1c"


@pytest.fixture
async def kube() -> AsyncIterator[Kube]:
    async with running_kube(bookmark_interval=0.2) as k:
        yield k


@pytest.fixture
def logs() -> io.StringIO:
    stream = io.StringIO()
    telemetry.configure(service_name="t", service_version="1", log_level="debug", stream=stream,
                        span_exporter=InMemorySpanExporter())
    return stream


@contextlib.asynccontextmanager
async def _running(informer: Informer) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(informer.run())
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _configmap(kube: Kube, name: str) -> None:
    kube.admin.apply({"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"name": name, "namespace": "default"}, "data": {"a": "b"}})


def _watches(kube: Kube) -> int:
    return kube.requests.count("watch", "configmaps")


def _lines(logs: io.StringIO, event: str) -> list[dict[str, object]]:
    return [line for line in map(json.loads, logs.getvalue().splitlines())
            if line["event"] == event]


async def test_malformed_events_are_skipped_and_the_informer_follows_on(
    kube: Kube, client: KubeClient, logs: io.StringIO
) -> None:
    kube.faults.watch_events(
        {"type": "ADDED", "object": {"metadata": {"namespace": "default"},
                                     "data": {"password": SECRET}}},  # no metadata.name
        {"type": "DELETED", "object": {"kind": "ConfigMap"}},  # no metadata at all
        {"type": "MODIFIED", "object": {"metadata": {"name": 7}}},  # not a string
        {"type": "ADDED", "object": "a string"},
        {"type": "SURPRISE", "object": {"metadata": {"name": "x"}, "data": {"k": SECRET}}},
        ["not", "an", "event"],
        "neither",
        verbs=["watch"], resource="configmaps", times=1,
    )
    informer = Informer(kube=client, resource=CONFIGMAPS, namespace="default")
    async with _running(informer) as task:
        await kube.wait_for(informer.synced.is_set, message="listed")
        await kube.wait_for(lambda: len(_lines(logs, "malformed watch event skipped"))
                            + len(_lines(logs, "malformed object skipped")) >= 7,
                            message="every malformed event skipped with a warning")
        _configmap(kube, "after")
        await kube.wait_for(lambda: informer.get("default", "after"),
                            message="a change after the malformed events reaches the cache")
        assert not task.done()
    assert _watches(kube) == 1, "skipped in place: the watch was not even reopened"
    assert informer.get("default", "x") is None
    assert SECRET not in logs.getvalue()
    whys = {line["why"] for line in _lines(logs, "malformed object skipped")}
    assert whys == {"no metadata", "no metadata.name", "metadata not strings"}


async def test_malformed_list_items_are_skipped(
    kube: Kube, client: KubeClient, logs: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    _configmap(kube, "good")
    real = client.request

    async def with_a_bad_item(method: str, path: str, **kwargs: object) -> dict[str, object]:
        page = await real(method, path, **kwargs)  # type: ignore[arg-type]
        page["items"].append({"metadata": {"namespace": "default"}})
        return page

    monkeypatch.setattr(client, "request", with_a_bad_item)
    informer = Informer(kube=client, resource=CONFIGMAPS, namespace="default")
    async with _running(informer) as task:
        await kube.wait_for(informer.synced.is_set, message="listed despite a nameless item")
        assert informer.get("default", "good") is not None
        assert all(obj["metadata"].get("name") for obj in informer)
        assert not task.done()
    assert _lines(logs, "malformed object skipped")


async def test_watches_closed_at_once_are_reopened_with_backoff_not_in_a_hot_loop(
    kube: Kube, client: KubeClient, logs: io.StringIO
) -> None:
    fault = kube.faults.close_watch(verbs=["watch"], resource="configmaps")
    informer = Informer(kube=client, resource=CONFIGMAPS, namespace="default",
                        backoff_base=0.25, backoff_cap=1.0)
    async with _running(informer) as task:
        await kube.wait_for(lambda: _watches(kube) >= 2, message="reopened after a close")
        start = _watches(kube)
        await asyncio.sleep(3.0)  # the measurement window: how many watches in 3 s
        in_window = _watches(kube) - start
        # With the delays (0.125-0.25, 0.25-0.5, 0.5-1, then 0.5-1 s at the cap): at most 7.
        # A hot loop against the emulation opens hundreds.
        assert 2 <= in_window <= 8, in_window
        assert kube.requests.count("list", "configmaps") == 1, "a clean close needs no list"
        assert not task.done()
        # Healed: the informer is still alive and follows the server again.
        kube.faults.remove(fault)
        _configmap(kube, "healed")
        await kube.wait_for(lambda: informer.get("default", "healed"), timeout=5,
                            message="the informer follows once the watches stay open")
    assert _lines(logs, "watch ended early, reopening after a delay")


async def test_the_backoff_resets_after_a_healthy_stream(
    kube: Kube, client: KubeClient, logs: io.StringIO
) -> None:
    delayed = "watch ended early, reopening after a delay"
    kube.faults.close_watch(verbs=["watch"], resource="configmaps", times=3)
    informer = Informer(kube=client, resource=CONFIGMAPS, namespace="default",
                        backoff_base=0.8, backoff_cap=5.0, healthy_after=0.5)
    async with _running(informer):
        # Three early ends: the first reopened at once, the next two after 0.4-0.8 and 0.8-1.6 s.
        # The fourth watch stays open for 0.7 s (healthy), then closes; the fifth closes at once.
        await kube.wait_for(lambda: _watches(kube) == 3, message="three watches closed")
        kube.faults.close_watch(verbs=["watch"], resource="configmaps", after_seconds=0.7,
                                times=1)
        await kube.wait_for(lambda: _watches(kube) == 4, message="a healthy watch")
        kube.faults.close_watch(verbs=["watch"], resource="configmaps", times=1)
        await kube.wait_for(lambda: _watches(kube) == 6, timeout=3,
                            message="reopened at once after the healthy one, twice")
        assert len(_lines(logs, delayed)) == 2, "after a healthy stream, no delay again"


async def test_an_informer_of_some_namespaces_follows_each_and_nothing_else(
    kube: Kube, client: KubeClient
) -> None:
    for namespace in ("a", "b", "c"):
        kube.admin.apply({"apiVersion": "v1", "kind": "Namespace",
                          "metadata": {"name": namespace}})
        kube.admin.apply({"apiVersion": "v1", "kind": "ConfigMap",
                          "metadata": {"name": "first", "namespace": namespace}})
    # The first watch of "a" is told its history is gone: "a" is listed again, "b" is not.
    kube.faults.expire_watch(verbs=["watch"], resource="configmaps", namespace="a")
    informer = Informer(kube=client, resource=CONFIGMAPS, namespaces=["a", "b", "a"])
    assert informer.namespaces == ("a", "b")

    def lists(namespace: str) -> int:
        return len([r for r in kube.requests.log if r.verb == "list" and r.namespace == namespace
                    and r.resource == "configmaps"])

    async with _running(informer) as task:
        await kube.wait_for(informer.synced.is_set, message="both namespaces listed")
        assert {key for key in ((o["metadata"]["namespace"], o["metadata"]["name"])
                                for o in informer) if key[1] == "first"} == {
            ("a", "first"), ("b", "first")}
        kube.admin.apply({"apiVersion": "v1", "kind": "ConfigMap",
                          "metadata": {"name": "later", "namespace": "b"}})
        kube.admin.apply({"apiVersion": "v1", "kind": "ConfigMap",
                          "metadata": {"name": "later", "namespace": "c"}})
        await kube.wait_for(lambda: informer.get("b", "later"), message="b followed")
        await kube.wait_for(lambda: lists("a") == 2, message="a listed again")
        assert lists("b") == 1
        assert informer.get("b", "first") is not None, "a's relist kept b's part of the cache"
        kube.admin.delete("v1", "ConfigMap", "first", "a")
        await kube.wait_for(lambda: informer.get("a", "first") is None, message="a followed")
        assert informer.get("b", "first") is not None and informer.get("c", "later") is None
        assert not task.done()
    requests = [r for r in kube.requests.log if r.resource == "configmaps"]
    assert {r.namespace for r in requests} == {"a", "b"}, "one list+watch per namespace only"
