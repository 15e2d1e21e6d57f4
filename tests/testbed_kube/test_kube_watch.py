"""Watch: resume, 410 Expired then relist, bookmarks, selectors, timeouts, framing."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.exceptions import ApiException

from testbed.kube import Kube, running_kube

CMS = "/api/v1/namespaces/default/configmaps"


def _cm(name: str, value: str = "1", labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default", "labels": labels or {}},
        "data": {"v": value},
    }


async def _take(stream: Any, count: int, wait: float = 5.0) -> list[dict[str, Any]]:
    """The next ``count`` events of a kubernetes-asyncio watch stream."""
    out = []

    async def pull() -> None:
        async for event in stream:
            out.append(event)
            if len(out) >= count:
                return

    await asyncio.wait_for(pull(), wait)
    return out


async def test_resume_from_resource_version(k8s, kube: Kube) -> None:
    v1 = client.CoreV1Api(k8s)
    kube.admin.create(_cm("a"))
    listed = await v1.list_namespaced_config_map("default")
    rv = listed.metadata.resource_version
    kube.admin.patch("v1", "ConfigMap", "a", {"data": {"v": "2"}}, namespace="default")
    kube.admin.create(_cm("b"))
    kube.admin.delete("v1", "ConfigMap", "a", "default")
    w = watch.Watch()
    events = await _take(
        w.stream(v1.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=5),
        3,
    )
    w.stop()
    assert [(e["type"], e["object"].metadata.name) for e in events] == [
        ("MODIFIED", "a"),
        ("ADDED", "b"),
        ("DELETED", "a"),
    ]
    assert events[0]["object"].data == {"v": "2"}
    rvs = [int(e["object"].metadata.resource_version) for e in events]
    assert rvs == sorted(rvs) and rvs[0] > int(rv)


async def test_synthetic_added_without_resource_version(k8s, kube: Kube) -> None:
    kube.admin.create(_cm("a"))
    v1 = client.CoreV1Api(k8s)
    w = watch.Watch()
    events = await _take(w.stream(v1.list_namespaced_config_map, "default", timeout_seconds=5), 2)
    w.stop()
    assert {(e["type"], e["object"].metadata.name) for e in events} == {
        ("ADDED", "a"),
        ("ADDED", "kube-root-ca.crt"),
    }


async def test_expired_then_relist(tmp_path: Path) -> None:
    async with running_kube(watch_window=3) as small:
        small.admin.create(_cm("a"))
        path = small.write_kubeconfig(tmp_path / "kubeconfig")
        api = await config.new_client_from_config(config_file=str(path))
        try:
            v1 = client.CoreV1Api(api)
            rv = (await v1.list_namespaced_config_map("default")).metadata.resource_version
            for i in range(4):  # more changes than the history window holds
                small.admin.patch(
                    "v1", "ConfigMap", "a", {"data": {"v": str(i)}}, namespace="default"
                )
            w = watch.Watch()
            with pytest.raises(ApiException) as caught:
                await _take(
                    w.stream(
                        v1.list_namespaced_config_map,
                        "default",
                        resource_version=rv,
                        timeout_seconds=5,
                    ),
                    1,
                )
            assert caught.value.status == 410
            assert "too old resource version" in caught.value.reason
            relisted = await v1.list_namespaced_config_map("default")
            w = watch.Watch()
            small.admin.patch("v1", "ConfigMap", "a", {"data": {"v": "after"}}, namespace="default")
            events = await _take(
                w.stream(
                    v1.list_namespaced_config_map,
                    "default",
                    resource_version=relisted.metadata.resource_version,
                    timeout_seconds=5,
                ),
                1,
            )
            assert events[0]["type"] == "MODIFIED" and events[0]["object"].data == {"v": "after"}
        finally:
            await api.close()


async def test_410_is_an_error_event_on_http_200(raw, kube: Kube) -> None:
    kube.admin.create(_cm("a"))
    old = kube.admin.resource_version - 1
    kube.admin.compact()
    reply = await raw("GET", f"{CMS}?watch=true&resourceVersion={old}")
    assert reply.status == 200
    lines = (
        reply.body.strip().split("\n") if isinstance(reply.body, str) else [json.dumps(reply.body)]
    )
    assert len(lines) == 1
    event = json.loads(lines[0])
    assert event["type"] == "ERROR"
    assert event["object"]["code"] == 410 and event["object"]["reason"] == "Expired"
    assert event["object"]["message"].startswith(f"too old resource version: {old} (")


async def test_bookmarks(k8s, kube: Kube) -> None:
    v1 = client.CoreV1Api(k8s)
    rv = (await v1.list_namespaced_config_map("default")).metadata.resource_version
    kube.admin.create(_cm("a"))
    w = watch.Watch()
    stream = w.stream(
        v1.list_namespaced_config_map,
        "default",
        resource_version=rv,
        allow_watch_bookmarks=True,
        timeout_seconds=5,
    )
    events = await _take(stream, 2)
    w.stop()
    assert [e["type"] for e in events] == ["ADDED", "BOOKMARK"]
    bookmark_rv = int(events[1]["object"]["metadata"]["resourceVersion"])
    assert bookmark_rv >= int(events[0]["object"].metadata.resource_version)
    assert w.resource_version == str(bookmark_rv)


async def test_no_bookmarks_unless_asked(raw, kube: Kube) -> None:
    reply = await raw(
        "GET", f"{CMS}?watch=true&resourceVersion={kube.admin.resource_version}&timeoutSeconds=1"
    )
    assert reply.status == 200 and reply.body == ""  # 1s > bookmark interval, yet no BOOKMARK


async def test_selector_transitions_and_noop_writes(kube: Kube) -> None:
    kube.admin.create(_cm("a", labels={"sel": "no"}))
    rv = kube.admin.resource_version
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{kube.url}{CMS}?watch=1&labelSelector=sel%3Dyes&resourceVersion={rv}&timeoutSeconds=5"
        ) as resp,
    ):
        kube.admin.patch(
            "v1", "ConfigMap", "a", {"metadata": {"labels": {"sel": "yes"}}}, namespace="default"
        )
        kube.admin.patch("v1", "ConfigMap", "a", {"data": {"v": "1"}}, namespace="default")  # no-op
        kube.admin.patch("v1", "ConfigMap", "a", {"data": {"v": "2"}}, namespace="default")
        kube.admin.patch(
            "v1", "ConfigMap", "a", {"metadata": {"labels": {"sel": "no"}}}, namespace="default"
        )
        events = []
        while len(events) < 3:
            events.append(json.loads(await asyncio.wait_for(resp.content.readline(), 5)))
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    # The watch cache's DELETED for "stopped matching": previous content, the event's RV.
    gone = events[2]["object"]["metadata"]
    assert gone["labels"] == {"sel": "yes"}
    assert gone["resourceVersion"] == str(kube.admin.resource_version)


async def test_timeout_seconds_ends_stream(kube: Kube) -> None:
    async with aiohttp.ClientSession() as session:
        loop = asyncio.get_running_loop()
        start = loop.time()
        async with session.get(
            f"{kube.url}{CMS}?watch=true&resourceVersion="
            f"{kube.admin.resource_version}&timeoutSeconds=1"
        ) as resp:
            body = await asyncio.wait_for(resp.read(), 5)
        assert body == b""
        assert 0.9 <= loop.time() - start < 3


async def test_table_watch_frames(kube: Kube) -> None:
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    kube.admin.create(_cm("a"))
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{kube.url}{CMS}?watch=true&timeoutSeconds=5", headers={"Accept": accept}
        ) as resp,
    ):
        first = json.loads(await asyncio.wait_for(resp.content.readline(), 5))
        second = json.loads(await asyncio.wait_for(resp.content.readline(), 5))
    assert first["object"]["kind"] == "Table" and "columnDefinitions" in first["object"]
    assert [c["name"] for c in first["object"]["columnDefinitions"]] == ["Name", "Data", "Age"]
    assert second["object"]["kind"] == "Table" and "columnDefinitions" not in second["object"]
    assert len(second["object"]["rows"]) == 1


async def test_send_initial_events(kube: Kube) -> None:
    kube.admin.create(_cm("a"))
    url = (
        f"{kube.url}{CMS}?watch=true&sendInitialEvents=true&allowWatchBookmarks=true"
        "&resourceVersionMatch=NotOlderThan&resourceVersion=&timeoutSeconds=5"
    )
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        events = [json.loads(await asyncio.wait_for(resp.content.readline(), 5)) for _ in range(3)]
    assert [e["type"] for e in events] == ["ADDED", "ADDED", "BOOKMARK"]
    assert events[2]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{kube.url}{CMS}?watch=true&sendInitialEvents=true") as resp,
    ):
        assert resp.status == 422
