"""Event notifications: the WebSocket, the CloudEvents JSON of KV operations, and the ACL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import hvac
import pytest

from testbed.waiting import until

from .conftest import ReadyVault, in_thread

SUBSCRIBE = "/v1/sys/events/subscribe/kv*?json=true"


@asynccontextmanager
async def stream(ready: ReadyVault, token: str) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    async with aiohttp.ClientSession() as session, session.ws_connect(
        ready.address + SUBSCRIBE, headers={"X-Vault-Token": token}
    ) as ws:
        await until(lambda: ready.vault.core.events.connected > 0)
        yield ws


async def next_event(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    message = await asyncio.wait_for(ws.receive(), 5)
    assert message.type == aiohttp.WSMsgType.TEXT, message
    return dict(json.loads(message.data))


async def test_kv_v2_operations_emit_vaults_cloudevents(
    vault_ready: ReadyVault, root: hvac.Client
) -> None:
    kv = root.secrets.kv.v2
    async with stream(vault_ready, vault_ready.root_token) as ws:
        await in_thread(kv.create_or_update_secret, "app", secret={"password": "s3cret-value"})
        event = await next_event(ws)
        assert event["specversion"] == "1.0" and event["type"] == "*"
        assert event["datacontentype"] == "application/cloudevents"
        data = event["data"]
        assert data["event_type"] == "kv-v2/data-write"
        assert data["plugin_info"]["mount_path"] == "secret/"
        assert data["plugin_info"]["plugin"] == "kv"
        assert data["event"]["metadata"] == {
            "current_version": "1", "oldest_version": "1", "data_path": "secret/data/app",
            "modified": "true", "operation": "data-write", "path": "secret/data/app",
        }
        assert "s3cret-value" not in json.dumps(event)  # events never carry data

        await in_thread(kv.update_metadata, "app", max_versions=3)
        await in_thread(kv.delete_secret_versions, "app", versions=[1])
        await in_thread(kv.destroy_secret_versions, "app", versions=[1])
        await in_thread(kv.delete_latest_version_of_secret, "app")
        await in_thread(kv.read_secret_version, "app", raise_on_deleted_version=False)  # a read
        await in_thread(kv.delete_metadata_and_all_versions, "app")
        seen = [(await next_event(ws))["data"] for _ in range(5)]
        assert [d["event_type"] for d in seen] == [
            "kv-v2/metadata-write", "kv-v2/delete", "kv-v2/destroy", "kv-v2/data-delete",
            "kv-v2/metadata-delete",
        ]
        assert [d["event"]["metadata"]["path"] for d in seen] == [
            "secret/metadata/app", "secret/delete/app", "secret/destroy/app", "secret/data/app",
            "secret/metadata/app",
        ]
        assert "data_path" in seen[0]["event"]["metadata"]
        assert "data_path" not in seen[1]["event"]["metadata"]


async def test_subscribing_needs_read_and_events_need_subscribe_on_the_path(
    vault_ready: ReadyVault, root: hvac.Client
) -> None:
    await in_thread(root.sys.create_or_update_policy, "listener", """
        path "sys/events/subscribe/kv*" { capabilities = ["read"] }
        path "secret/*" {
          capabilities = ["read", "list", "subscribe"]
          subscribe_event_types = ["*"]
        }
        path "secret/data/other-team/*" { capabilities = ["deny"] }
    """)
    await in_thread(root.sys.create_or_update_policy, "reader", """
        path "secret/*" { capabilities = ["read", "list", "subscribe"] }
    """)
    listener = (await in_thread(root.auth.token.create, policies=["listener"]))["auth"]
    reader = (await in_thread(root.auth.token.create, policies=["reader"]))["auth"]

    async with aiohttp.ClientSession() as session:
        for token in (reader["client_token"], "not-a-token"):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(vault_ready.address + SUBSCRIBE,
                                         headers={"X-Vault-Token": token})
            assert refused.value.status == 403

    kv = root.secrets.kv.v2
    async with stream(vault_ready, listener["client_token"]) as ws:
        await in_thread(kv.create_or_update_secret, "other-team/db", secret={"a": "b"})
        await in_thread(kv.create_or_update_secret, "mine", secret={"a": "b"})
        event = await next_event(ws)  # the other team's write was never sent
        assert event["data"]["event"]["metadata"]["path"] == "secret/data/mine"
        await in_thread(root.auth.token.revoke, listener["client_token"])
        await in_thread(kv.create_or_update_secret, "mine", secret={"a": "c"})
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.receive(), 0.3)  # a revoked token gets nothing more


async def test_disconnect_all_closes_the_streams(vault_ready: ReadyVault) -> None:
    async with stream(vault_ready, vault_ready.root_token) as ws:
        vault_ready.vault.core.events.disconnect_all()
        message = await asyncio.wait_for(ws.receive(), 5)
        assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    await until(lambda: vault_ready.vault.core.events.connected == 0)


async def test_metadata_is_the_kv_plugins_and_the_envelope_vaults_bus(
    vault_ready: ReadyVault, root: hvac.Client
) -> None:
    kv = root.secrets.kv.v2
    await in_thread(kv.create_or_update_secret, "app", secret={"a": "1"})
    async with stream(vault_ready, vault_ready.root_token) as ws:
        await in_thread(kv.update_metadata, "app", max_versions=3)
        await in_thread(kv.delete_secret_versions, "app", versions=[1])
        await in_thread(kv.delete_latest_version_of_secret, "missing")  # nothing there
        await in_thread(kv.create_or_update_secret, "app", secret={"a": "2"})
        metadata_write, delete, write = [await next_event(ws) for _ in range(3)]
    # Versions only on events of a version change (plugin: path_metadata.go sends none).
    assert metadata_write["data"]["event"]["metadata"] == {
        "data_path": "secret/metadata/app", "modified": "true", "operation": "metadata-write",
        "path": "secret/metadata/app"}
    assert delete["data"]["event"]["metadata"]["deleted_versions"] == "[1]"
    assert delete["data"]["event_type"] == "kv-v2/delete"  # no data-delete for "missing"
    assert write["data"]["event"]["metadata"]["current_version"] == "2"
    assert write["source"].startswith("vault://")
    assert write["data"]["plugin_info"]["plugin_version"].endswith("+builtin")
    assert "namespace" not in write["data"]  # left out for the root namespace


async def test_only_events_with_a_data_path_reach_a_token_that_is_not_root(
    vault_ready: ReadyVault, root: hvac.Client
) -> None:
    """Vault's http/events.go: no data_path, root only; else ``subscribe`` on the data path
    and an allowed event type."""
    await in_thread(root.sys.create_or_update_policy, "writes-only", """
        path "sys/events/subscribe/kv*" { capabilities = ["read"] }
        path "secret/*" {
          capabilities = ["subscribe"]
          subscribe_event_types = ["kv-v2/data-*"]
        }
    """)
    await in_thread(root.sys.create_or_update_policy, "no-event-types", """
        path "sys/events/subscribe/kv*" { capabilities = ["read"] }
        path "secret/*" { capabilities = ["read", "list", "subscribe"] }
    """)
    writes_only = (await in_thread(root.auth.token.create, policies=["writes-only"]))["auth"]
    no_types = (await in_thread(root.auth.token.create, policies=["no-event-types"]))["auth"]
    kv = root.secrets.kv.v2
    async with stream(vault_ready, writes_only["client_token"]) as narrow, \
            stream(vault_ready, no_types["client_token"]) as nothing, \
            stream(vault_ready, vault_ready.root_token) as everything:
        await in_thread(kv.create_or_update_secret, "app", secret={"a": "1"})
        await in_thread(kv.update_metadata, "app", max_versions=3)  # not a data-* event
        await in_thread(kv.delete_latest_version_of_secret, "app")  # no data_path
        await in_thread(kv.destroy_secret_versions, "app", versions=[1])  # no data_path
        await in_thread(kv.create_or_update_secret, "app", secret={"a": "2"})
        seen = [(await next_event(everything))["data"]["event_type"] for _ in range(5)]
        assert seen == ["kv-v2/data-write", "kv-v2/metadata-write", "kv-v2/data-delete",
                        "kv-v2/destroy", "kv-v2/data-write"]
        # data-delete matches kv-v2/data-* but has no data_path: never sent to this token.
        got = [(await next_event(narrow))["data"]["event"]["metadata"] for _ in range(2)]
        assert [m["operation"] for m in got] == ["data-write", "data-write"]
        assert [m["current_version"] for m in got] == ["1", "2"]
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(nothing.receive(), 0.3)  # subscribe without event types


async def test_the_json_parameter_is_parsed_as_a_go_bool(vault_ready: ReadyVault) -> None:
    base = vault_ready.address + "/v1/sys/events/subscribe/"
    headers = {"X-Vault-Token": vault_ready.root_token}
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(base + "kv*?json=1", headers=headers):
            pass
        for url, message in ((base + "kv*?json=maybe", "invalid parameter for JSON: maybe"),
                             (base + "%20?json=true", "did not specify eventType")):
            async with session.get(url, headers=headers) as response:
                assert response.status == 400
                assert message in (await response.json())["errors"][0]
