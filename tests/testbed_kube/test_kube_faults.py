"""Fault injection and request counters."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException

from testbed.kube import Kube

CMS = "/api/v1/namespaces/default/configmaps"


async def test_counters_by_verb_and_resource(k8s, kube: Kube) -> None:
    v1 = client.CoreV1Api(k8s)
    kube.requests.reset()
    await v1.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
    await v1.read_namespaced_config_map("a", "default")
    await v1.read_namespaced_config_map("a", "default")
    await client.AppsV1Api(k8s).list_namespaced_deployment("default")
    assert kube.requests.count("get", "configmaps") == 2
    assert kube.requests.count("create") == 1
    assert kube.requests.count(resource="deployments.apps") == 1
    assert kube.requests.writes() == 1
    assert kube.requests.snapshot() == {
        "create configmaps": 1,
        "get configmaps": 2,
        "list deployments.apps": 1,
    }
    assert sum(kube.requests.users.values()) == 4  # all by the one (admin) user
    before = kube.requests.total
    kube.admin.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}})
    assert kube.requests.total == before  # the admin handle is not an API client


async def test_error_and_throttle_faults(raw, kube: Kube) -> None:
    kube.faults.error(503, verbs=["get"], resource="configmaps", times=1)
    first = await raw("GET", f"{CMS}/kube-root-ca.crt")
    assert first.status == 503 and first.json["reason"] == "ServiceUnavailable"
    second = await raw("GET", f"{CMS}/kube-root-ca.crt")
    assert second.status == 200  # times=1 is used up
    kube.faults.throttle(retry_after=2, verbs=["list"], resource="config*")
    throttled = await raw("GET", CMS)
    assert throttled.status == 429 and throttled.headers["Retry-After"] == "2"
    assert throttled.json["details"]["retryAfterSeconds"] == 2
    kube.faults.clear()
    assert (await raw("GET", CMS)).status == 200


async def test_probability_and_latency(raw, kube: Kube) -> None:
    kube.faults.error(500, resource="secrets", probability=0.0)
    assert (await raw("GET", "/api/v1/namespaces/default/secrets")).status == 200
    kube.faults.clear()
    kube.faults.latency(0.3, verbs=["list"], resource="secrets", times=1)
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert (await raw("GET", "/api/v1/namespaces/default/secrets")).status == 200
    assert loop.time() - start >= 0.3


async def test_forced_expiry_of_next_watch(k8s, kube: Kube) -> None:
    v1 = client.CoreV1Api(k8s)
    rv = (await v1.list_namespaced_config_map("default")).metadata.resource_version
    kube.faults.expire_watch(resource="configmaps")
    w = watch.Watch()
    with pytest.raises(ApiException) as caught:
        async for _ in w.stream(
            v1.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=5
        ):
            break
    assert caught.value.status == 410
    kube.admin.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}})
    async for event in w.stream(
        v1.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=5
    ):
        assert event["object"].metadata.name == "x"
        break


@contextlib.asynccontextmanager
async def _watch_with_one_change(kube: Kube) -> AsyncIterator[aiohttp.StreamReader]:
    """A raw watch of ConfigMaps from now, and ConfigMap "a" created; on exit, the server has
    closed the watch."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{kube.url}{CMS}?watch=true&resourceVersion={kube.admin.resource_version}"
        ) as resp,
    ):
        kube.admin.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}})
        yield resp.content
    await kube.wait_for(lambda: kube.cluster.open_watches == 0, message="watch closed server-side")


async def test_connection_dropped_mid_watch(kube: Kube) -> None:
    kube.faults.drop_watch(after_events=1, resource="configmaps")
    async with _watch_with_one_change(kube) as content:
        line = await asyncio.wait_for(content.readline(), 5)
        assert json.loads(line)["object"]["metadata"]["name"] == "a"
        with pytest.raises(aiohttp.ClientPayloadError):
            await asyncio.wait_for(content.read(), 5)


async def test_watch_closed_cleanly_and_raw_events(kube: Kube) -> None:
    kube.faults.watch_events({"type": "ADDED", "object": {"metadata": {}}}, "raw",
                             resource="configmaps", times=1)
    kube.faults.close_watch(after_events=1, resource="configmaps", times=1)
    async with _watch_with_one_change(kube) as content:
        rest = await asyncio.wait_for(content.read(), 5)  # a clean end: no payload error
    lines = [json.loads(line) for line in rest.splitlines()]
    assert lines[:2] == [{"type": "ADDED", "object": {"metadata": {}}}, "raw"]
    assert lines[2]["object"]["metadata"]["name"] == "a" and len(lines) == 3


async def test_conflict_fault_is_a_real_conflict(raw, kube: Kube) -> None:
    kube.faults.error(409, verbs=["update"], resource="configmaps", times=1)
    current = (await raw("GET", f"{CMS}/kube-root-ca.crt")).json
    refused = await raw("PUT", f"{CMS}/kube-root-ca.crt", body=current)
    assert refused.status == 409 and refused.json["reason"] == "Conflict"
    assert refused.json["details"] == {"name": "kube-root-ca.crt", "kind": "configmaps"}
    assert "the object has been modified" in refused.json["message"]
    assert (await raw("PUT", f"{CMS}/kube-root-ca.crt", body=current)).status == 200


async def test_restart_keeps_state_and_cuts_watches(kube: Kube) -> None:
    port = kube.port
    created = kube.admin.create(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kept"}})
    rv = created["metadata"]["resourceVersion"]
    async with aiohttp.ClientSession() as session:
        watch_url = f"{kube.url}{CMS}?watch=true&resourceVersion={rv}"
        async with session.get(watch_url) as stream:
            restart = asyncio.create_task(kube.restart_server(down=0.5))
            with pytest.raises(aiohttp.ClientPayloadError):
                async with asyncio.timeout(5):
                    async for _ in stream.content:
                        pass  # no event comes: the read ends when the connection is cut
            with pytest.raises(aiohttp.ClientConnectionError):
                await session.get(f"{kube.url}{CMS}/kept")  # refused while it is down
            await restart
        assert kube.port == port
        async with session.get(f"{kube.url}{CMS}/kept") as answer:
            assert (await answer.json())["metadata"]["resourceVersion"] == rv
        kube.admin.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "new"}})
        # The history survived: a watch from the old RV resumes with what came since.
        async with session.get(watch_url) as stream:
            line = await asyncio.wait_for(stream.content.readline(), 5)
            event = json.loads(line)
            assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "new")
            assert int(event["object"]["metadata"]["resourceVersion"]) > int(rv)


async def test_expire_watches_ends_open_watches_with_410(kube: Kube) -> None:
    created = kube.admin.create(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "old"}})
    rv = created["metadata"]["resourceVersion"]
    kube.admin.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "newer"}})
    async with aiohttp.ClientSession() as session:
        watch_url = f"{kube.url}{CMS}?watch=true&resourceVersion={rv}"
        async with session.get(watch_url) as stream:
            first = json.loads(await asyncio.wait_for(stream.content.readline(), 5))
            assert first["object"]["metadata"]["name"] == "newer"
            assert kube.expire_watches() == 1
            async with asyncio.timeout(5):
                rest = [json.loads(line) async for line in stream.content if line.strip()]
        # The stream ended properly after one ERROR event: 410 Expired.
        assert [(e["type"], e["object"]["code"]) for e in rest] == [("ERROR", 410)]
        async with session.get(watch_url) as stream:  # resuming from the old RV: 410 again
            event = json.loads(await asyncio.wait_for(stream.content.readline(), 5))
            assert (event["type"], event["object"]["reason"]) == ("ERROR", "Expired")


async def test_cut_watches_drops_the_connections(kube: Kube) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{kube.url}{CMS}?watch=true") as stream:
            await asyncio.wait_for(stream.content.readline(), 5)  # the initial ADDED
            assert kube.cut_watches() == 1
            with pytest.raises(aiohttp.ClientPayloadError):
                async with asyncio.timeout(5):
                    async for _ in stream.content:
                        pass
        await kube.wait_for(lambda: kube.cluster.open_watches == 0, message="watch closed")


async def test_a_held_request_is_announced_with_its_client(raw, kube: Kube) -> None:
    """``user=`` picks whose requests a fault delays; ``held()`` names each request held now
    and the client port it came on (a driver kills that client mid-write), until it ends."""
    writer_token = kube.admin.mint_token("default", "writer")
    kube.faults.latency(1.5, verbs=["create"], resource="configmaps",
                        user="system:serviceaccount:default:writer")
    # Another user's write is not held.
    assert (await raw("POST", CMS, body={"metadata": {"name": "admin"}})).status == 201
    assert kube.faults.held() == []
    reader, writer = await asyncio.open_connection("127.0.0.1", kube.port)
    body = json.dumps({"metadata": {"name": "held"}}).encode()
    writer.write(f"POST {CMS} HTTP/1.1\r\nHost: testbed\r\nAuthorization: Bearer {writer_token}"
                 f"\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                 .encode() + body)
    await writer.drain()
    began = time.time()
    await kube.wait_for(lambda: kube.faults.held() != [], timeout=5, message="held")
    [held] = kube.faults.held()
    assert (held.verb, held.resource, held.namespace, held.user) == (
        "create", "configmaps", "default", "system:serviceaccount:default:writer")
    assert held.peer_port == writer.get_extra_info("sockname")[1]
    assert began < held.until <= began + 1.6
    status = await asyncio.wait_for(reader.readline(), 5)
    assert time.time() >= held.until - 0.05
    assert kube.faults.held() == []
    assert status.split()[1] == b"403"  # the ServiceAccount may not create ConfigMaps
    writer.close()
