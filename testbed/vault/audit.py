"""Audit devices (``sys/audit``): the ``file`` and ``socket`` types, Vault's JSON entries and
its blocking semantics (reference audit-stream.md §1-3).

- Entries: one compact JSON object per line, a ``request`` entry before the handler runs and a
  ``response`` entry after it (with ``error`` when it failed). Every string value inside
  ``request.data`` and ``response.data``, the client token and (``hmac_accessor``, default on)
  the accessors are replaced by ``hmac-sha256:<hex>`` under the cluster's audit key; keys,
  paths, operations, mount fields and non-string values (``response.data.version``) stay
  plaintext. ``log_raw=true`` turns the HMAC off.
- Enabling a device sends it a test message first (a request entry on ``sys/audit/test``,
  unless ``skip_test``); if that fails the device is refused ("audit backend failed test
  message").
- Blocking: every request waits for every device, each write bounded by the device's
  ``write_timeout`` (a socket device: one connection behind one lock; a failed write
  disconnects, redials once and retries once, so about 3x the timeout at worst). If no device
  succeeds the request is refused with 500 ``internal error``; with no device enabled nothing
  is audited.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import hmac
import json
import secrets
import sys
import uuid
from typing import TYPE_CHECKING, Any

from testbed.vault.durations import parse_duration_seconds
from testbed.vault.errors import VaultError

if TYPE_CHECKING:
    from testbed.vault.storage import Storage
    from testbed.vault.tokens import TokenEntry

TYPES = ("file", "socket")


class Device:
    def __init__(self, *, path: str, type: str, description: str, options: dict[str, str],
                 local: bool) -> None:
        self.path, self.type, self.description = path, type, description
        self.options, self.local = options, local
        self.hmac_accessor = options.get("hmac_accessor", "true").lower() != "false"
        self.log_raw = options.get("log_raw", "false").lower() == "true"

    def describe(self) -> dict[str, Any]:
        return {"type": self.type, "description": self.description, "options": self.options,
                "local": self.local, "path": self.path}

    async def write(self, line: bytes) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        return None


class FileDevice(Device):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.file_path = self.options.get("file_path", "")
        if not self.file_path:
            raise VaultError(400, "file_path is required")

    async def write(self, line: bytes) -> None:
        if self.file_path == "discard":
            return
        if self.file_path == "stdout":
            sys.stdout.buffer.write(line)
            sys.stdout.flush()
            return
        with open(self.file_path, "ab") as handle:  # noqa: ASYNC230 - a local file, as Vault
            handle.write(line)


class SocketDevice(Device):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.address = self.options.get("address", "")
        if not self.address:
            raise VaultError(400, "address is required")
        self.socket_type = self.options.get("socket_type", "tcp")
        if self.socket_type not in ("tcp", "unix"):
            raise VaultError(400, f"socket_type {self.socket_type!r} is not emulated")
        self.write_timeout = parse_duration_seconds(
            self.options.get("write_timeout", "2s"), field="write_timeout")
        self._lock = asyncio.Lock()
        self._writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> asyncio.StreamWriter:
        if self.socket_type == "unix":
            _, writer = await asyncio.open_unix_connection(self.address)
        else:
            host, _, port = self.address.rpartition(":")
            _, writer = await asyncio.open_connection(host, int(port))
        # Flush to the kernel before drain returns: a receiver that stops reading blocks the
        # writer once the socket buffers are full, as a net.Conn write does.
        writer.transport.set_write_buffer_limits(0)
        return writer

    async def _send(self, line: bytes) -> None:
        async with asyncio.timeout(self.write_timeout):
            if self._writer is None:
                self._writer = await self._connect()
            self._writer.write(line)
            await self._writer.drain()

    async def write(self, line: bytes) -> None:
        async with self._lock:  # one connection, one write at a time
            try:
                await self._send(line)
            except (OSError, TimeoutError):
                await self.close()  # disconnect, redial once, retry once
                await self._send(line)

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(0.1):
                    await writer.wait_closed()


class AuditBroker:
    """The audit table of the cluster and the fan-out of every entry to its devices."""

    def __init__(self, *, storage: Storage) -> None:
        self._storage = storage
        self.devices: dict[str, Device] = {}
        stored = storage.attach("audit", self._dump) or {}
        self.key: bytes = bytes.fromhex(stored.get("key") or secrets.token_hex(32))
        for entry in stored.get("devices", []):
            with contextlib.suppress(VaultError):
                self.devices[entry["path"]] = _make(entry)

    def _dump(self) -> dict[str, Any]:
        return {"key": self.key.hex(), "devices": [d.describe() for d in self.devices.values()]}

    def listing(self) -> dict[str, Any]:
        return {path: device.describe() for path, device in self.devices.items()}

    async def enable(self, path: str, data: dict[str, Any]) -> None:
        path = path.strip("/") + "/"
        if path in self.devices:
            raise VaultError(400, f"path already in use at {path}")
        options = {str(k): str(v) for k, v in (data.get("options") or {}).items()}
        device = _make({"path": path, "type": data.get("type", ""), "options": options,
                        "description": data.get("description", ""),
                        "local": bool(data.get("local", False))})
        if options.get("skip_test", "false").lower() != "true":
            test = {"time": _now(), "type": "request", "auth": {},
                    "request": {"id": str(uuid.uuid4()), "operation": "update",
                                "path": "sys/audit/test", "namespace": {"id": "root"}}}
            try:
                await device.write(_line(test))
            except (OSError, TimeoutError) as exc:
                await device.close()
                raise VaultError(400, f"audit backend failed test message: {exc}") from None
        self.devices[path] = device
        self._storage.changed()

    async def disable(self, path: str) -> None:
        device = self.devices.pop(path.strip("/") + "/", None)
        if device is not None:
            await device.close()
            self._storage.changed()

    # --- entries ---------------------------------------------------------------------------------

    def hash(self, value: str) -> str:
        return "hmac-sha256:" + hmac.new(self.key, value.encode(), hashlib.sha256).hexdigest()

    def _hashed(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.hash(value)
        if isinstance(value, dict):
            return {k: self._hashed(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._hashed(v) for v in value]
        return value

    async def log(self, entry: dict[str, Any], *, token: TokenEntry | None) -> None:
        """Write ``entry`` (a request or response entry, plaintext) to every device; raise 500
        if there are devices and none succeeded."""
        if not self.devices:
            return
        devices = list(self.devices.values())
        lines = {device.path: _line(self._format(entry, token, device)) for device in devices}
        results = await asyncio.gather(*(d.write(lines[d.path]) for d in devices),
                                       return_exceptions=True)
        if not any(result is None for result in results):
            raise VaultError(500, "internal error")

    def _format(self, entry: dict[str, Any], token: TokenEntry | None,
                device: Device) -> dict[str, Any]:
        formatted: dict[str, Any] = json.loads(json.dumps(entry))
        if token is not None:
            raw = not device.hmac_accessor or device.log_raw
            formatted["auth"] = {
                "client_token": token.id if device.log_raw else self.hash(token.id),
                "accessor": token.accessor if raw else self.hash(token.accessor),
                "display_name": token.display_name, "policies": list(token.policies),
                "token_policies": list(token.policies), "token_type": "service",
                "policy_results": {"allowed": "error" not in entry},
            }
            formatted["request"]["client_token"] = formatted["auth"]["client_token"]
            formatted["request"]["client_token_accessor"] = formatted["auth"]["accessor"]
        if not device.log_raw:
            for section in ("request", "response"):
                part = formatted.get(section)
                if isinstance(part, dict) and "data" in part:
                    part["data"] = self._hashed(part["data"])
        return formatted


def _make(entry: dict[str, Any]) -> Device:
    kind = entry.get("type", "")
    if kind not in TYPES:
        raise VaultError(400, f'unknown backend type: "{kind}"')
    options = dict(entry.get("options") or {})
    for option in ("filter", "exclude", "fallback"):
        if option in options:  # Community Vault
            raise VaultError(400, "enterprise-only options supplied")
    device_class = FileDevice if kind == "file" else SocketDevice
    return device_class(path=entry["path"], type=kind, description=entry.get("description", ""),
                        options=options, local=bool(entry.get("local", False)))


def _line(entry: dict[str, Any]) -> bytes:
    return json.dumps(entry, separators=(",", ":")).encode() + b"\n"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")


def request_entry(*, request_id: str, operation: str, path: str, mount_point: str,
                  mount_type: str, mount_accessor: str, remote_address: str,
                  data: dict[str, Any] | None) -> dict[str, Any]:
    """A request entry (plaintext; :meth:`AuditBroker.log` applies the HMAC)."""
    request: dict[str, Any] = {
        "id": request_id, "operation": operation, "mount_point": mount_point,
        "mount_type": mount_type, "mount_accessor": mount_accessor,
        "mount_class": "secret" if mount_type == "kv" else "",
        "namespace": {"id": "root"}, "path": path, "remote_address": remote_address,
    }
    if data:
        request["data"] = data
    return {"time": _now(), "type": "request", "request": request}


def response_entry(request: dict[str, Any], *, data: dict[str, Any] | None,
                   error: str | None) -> dict[str, Any]:
    """The response entry of ``request`` (an entry from :func:`request_entry`)."""
    entry: dict[str, Any] = {"time": _now(), "type": "response", "request": request["request"]}
    response: dict[str, Any] = {"mount_point": request["request"]["mount_point"],
                                "mount_type": request["request"]["mount_type"]}
    if data is not None:
        response["data"] = data
    entry["response"] = response
    if error is not None:
        entry["error"] = error
    return entry
