"""Audit devices: Vault's entries (HMAC'd values, plaintext paths and versions), the test
message on enable, and the blocking semantics a receiver imposes on every request."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hvac
import pytest
from hvac import exceptions

from testbed.waiting import until

from .conftest import ReadyVault, in_thread

SECRET = "s3cret-audited-value"


@dataclass
class Receiver:
    path: str
    lines: list[bytes] = field(default_factory=list)
    read: bool = True

    def entries(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]


@asynccontextmanager
async def receiver(tmp_path: Path, *, read: bool = True) -> AsyncIterator[Receiver]:
    got = Receiver(path=str(tmp_path / "audit.sock"), read=read)
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        if not got.read:
            return  # accepts, never reads: a stalled receiver
        while line := await reader.readline():
            got.lines.append(line)

    server = await asyncio.start_unix_server(accept, got.path)
    try:
        yield got
    finally:
        server.close()
        for writer in held:
            writer.close()


async def enable_socket(root: hvac.Client, name: str, path: str, write_timeout: str = "1s") -> None:
    await in_thread(root.sys.enable_audit_device, "socket", path=name, options={
        "address": path, "socket_type": "unix", "write_timeout": write_timeout})


async def test_entries_hmac_values_and_keep_paths_and_versions_plain(
    vault_ready: ReadyVault, root: hvac.Client, tmp_path: Path
) -> None:
    async with receiver(tmp_path) as got:
        await enable_socket(root, "relay", got.path)
        test_message = got.entries()[0]  # sent before the device is enabled
        assert test_message["type"] == "request"
        assert test_message["request"]["path"] == "sys/audit/test"
        listed = await in_thread(root.sys.list_enabled_audit_devices)
        assert listed["data"]["relay/"]["type"] == "socket"

        await in_thread(root.secrets.kv.v2.create_or_update_secret, "app",
                        secret={"password": SECRET})

        def of(path: str) -> list[dict[str, Any]]:
            return [e for e in got.entries() if e["request"]["path"] == path]

        await until(lambda: len(of("secret/data/app")) == 2)
        text = b"".join(got.lines).decode()
        assert SECRET not in text and vault_ready.root_token not in text
        request, response = of("secret/data/app")
        assert (request["type"], response["type"]) == ("request", "response")
        assert request["request"]["id"] == response["request"]["id"]
        for entry in (request, response):
            assert entry["request"]["path"] == "secret/data/app"
            assert entry["request"]["mount_point"] == "secret/"
            assert entry["request"]["mount_type"] == "kv"
            assert entry["request"]["operation"] == "create"
            assert entry["request"]["data"]["data"]["password"].startswith("hmac-sha256:")
            assert entry["auth"]["client_token"].startswith("hmac-sha256:")
            assert entry["auth"]["accessor"].startswith("hmac-sha256:")
        assert response["response"]["data"]["version"] == 1  # a number: not HMAC'd
        assert response["response"]["data"]["created_time"].startswith("hmac-sha256:")
        assert "error" not in response

        with pytest.raises(exceptions.InvalidPath):
            await in_thread(root.secrets.kv.v2.read_secret_version, "missing",
                            raise_on_deleted_version=True)
        await until(lambda: len(of("secret/data/missing")) == 2)
        failed = of("secret/data/missing")[1]
        assert failed["type"] == "response" and failed["error"]


async def test_enable_is_refused_when_the_receiver_is_not_listening(
    vault_ready: ReadyVault, root: hvac.Client, tmp_path: Path
) -> None:
    with pytest.raises(exceptions.InvalidRequest, match="audit backend failed test message"):
        await enable_socket(root, "relay", str(tmp_path / "nobody.sock"))
    assert "relay/" not in (await in_thread(root.sys.list_enabled_audit_devices))["data"]
    with pytest.raises(exceptions.InvalidRequest, match="enterprise-only options"):
        await in_thread(root.sys.enable_audit_device, "file", path="f",
                        options={"file_path": "discard", "filter": 'mount_type == "kv"'})


async def test_no_device_succeeding_refuses_every_request_one_succeeding_is_enough(
    vault_ready: ReadyVault, root: hvac.Client, tmp_path: Path
) -> None:
    async with receiver(tmp_path) as got:
        await enable_socket(root, "relay", got.path)
    # The receiver is gone: its device fails (connection refused), and it is the only one.
    with pytest.raises(exceptions.InternalServerError, match="internal error"):
        await in_thread(root.secrets.kv.v2.create_or_update_secret, "app", secret={"a": "b"})
    file_device = {"file_path": str(tmp_path / "audit.log")}
    with pytest.raises(exceptions.InternalServerError):  # even the way out is locked
        await in_thread(root.sys.enable_audit_device, "file", path="file", options=file_device)
    async with receiver(tmp_path):  # back: a second device of another type can be added
        await in_thread(root.sys.enable_audit_device, "file", path="file", options=file_device)
    await in_thread(root.secrets.kv.v2.create_or_update_secret, "app", secret={"a": "b"})
    assert b'"path":"secret/data/app"' in (tmp_path / "audit.log").read_bytes()


async def test_a_stalled_receiver_delays_every_request_up_to_its_write_timeout(
    vault_ready: ReadyVault, root: hvac.Client, tmp_path: Path
) -> None:
    await in_thread(root.sys.enable_audit_device, "file", path="file",
                    options={"file_path": "discard"})
    async with receiver(tmp_path) as got:
        await enable_socket(root, "stalled", got.path, write_timeout="300ms")
        got.read = False
        await in_thread(root.sys.disable_audit_device, "stalled")
        await enable_socket(root, "stalled", got.path, write_timeout="300ms")  # a fresh, unread one
        # Entries are written until the socket buffers are full; from then on each request
        # waits for the device's timeout (the file device succeeded, so it is not refused).
        wide = {f"field-{i:05d}": "x" for i in range(4000)}  # keys are not HMAC'd: ~100 KB
        slowest = 0.0
        for _ in range(8):
            started = time.monotonic()
            await in_thread(root.secrets.kv.v2.create_or_update_secret, "wide", secret=wide)
            slowest = max(slowest, time.monotonic() - started)
            if slowest >= 0.3:
                break
        assert slowest >= 0.3, slowest


async def test_lines_are_written_as_vaults_go_encoder_writes_its_entry_structs(
    vault_ready: ReadyVault, root: hvac.Client, tmp_path: Path
) -> None:
    async with receiver(tmp_path) as got:
        await in_thread(root.sys.enable_audit_device, "socket", path="relay", options={
            "address": got.path, "socket_type": "unix", "prefix": "@vault "})
        # The test probe (vault/audit.go generateAuditTestProbe): an update of sys/audit/test
        # with an empty auth, formatted like any request entry.
        probe = got.lines[0]
        assert probe.startswith(b'@vault {"time":"') and probe.endswith(b'"type":"request"}\n')
        message = json.loads(probe[len(b"@vault "):])
        assert list(message) == ["time", "auth", "request", "type"]
        assert message["auth"] == {"token_type": "default"}
        assert list(message["request"]) == ["id", "namespace", "operation", "path"]
        assert message["request"]["path"] == "sys/audit/test"

        await in_thread(root.secrets.kv.v2.create_or_update_secret, "a&b",
                        secret={"password": SECRET}, cas=0)

        def written() -> list[bytes]:
            return [line for line in got.lines
                    if b'"type":"response"' in line and b'"mount_type":"kv"' in line]

        await until(lambda: bool(written()))
        raw = written()[0]
        # Go's encoder: HTML characters escaped, fields in struct order, type last.
        assert b'"path":"secret/data/a\\u0026b"' in raw
        assert raw.startswith(b'@vault {"time":"') and raw.endswith(b',"type":"response"}\n')
        response = json.loads(raw[len(b"@vault "):])
        assert list(response) == ["time", "auth", "request", "response", "type"]
        # A request body's numbers are json.Number, strings to the hashing walk: HMAC'd; the
        # plugin's uint64 version is not.
        assert response["request"]["data"]["options"]["cas"].startswith("hmac-sha256:")
        assert response["response"]["data"]["version"] == 1
        assert response["response"]["mount_accessor"].startswith("kv_")
        assert response["response"]["mount_point"] == "secret/"
        assert SECRET.encode() not in b"".join(got.lines)
