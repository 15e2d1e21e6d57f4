"""Audit devices (``sys/audit``): the ``file`` and ``socket`` types, Vault's JSON entries and
its blocking semantics (reference audit-stream.md §1-3).

- Entries: one JSON object per line as Go's ``json.Encoder`` writes Vault's entry structs
  (``audit/types.go``): compact, fields in struct order (``time, auth, error, forwarded,
  forwarded_from, request, response, type``), ``<``, ``>`` and ``&`` escaped, other non-ASCII
  text raw, a newline after each, ``prefix`` (if set) before each. A ``request`` entry before the
  handler runs and a ``response`` entry after it (with ``error`` when it failed, and a
  ``response`` object even when the handler returned none). Every string value inside
  ``request.data`` and ``response.data`` is replaced by ``hmac-sha256:<hex>`` under the
  cluster's audit key, and so are the numbers of ``request.data`` (Vault decodes request bodies
  into ``json.Number``, a string to its hashing walk) — but not the numbers a plugin answers
  with (``response.data.version`` of a kv-v2 write is a ``uint64``: plaintext); so are the
  client token and (``hmac_accessor``, default on) the accessors. Keys, paths, operations and
  mount fields stay plaintext. ``log_raw=true`` turns the HMAC off.
- Enabling a device sends it a test message first, unless ``skip_test`` (Vault's
  ``generateAuditTestProbe``: a request entry of an ``update`` of ``sys/audit/test`` with an
  empty auth); if that fails the device is refused ("audit backend failed test message").
- Blocking: every request waits for every device. A socket device is one connection behind
  one lock (``internal/observability/event/sink_socket.go``): it dials lazily within
  ``write_timeout``, writes with a deadline of ``write_timeout``, and on a failure disconnects,
  redials once and retries the write once (so about 3x the timeout at worst); a socket that is
  gone fails at once (connection refused). If no device succeeds the request is refused with
  500 ``internal error``; with no device enabled nothing is audited.
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
        self.prefix = options.get("prefix", "").encode()

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
        if self._writer is None:
            async with asyncio.timeout(self.write_timeout):  # the dial's own deadline
                self._writer = await self._connect()
        async with asyncio.timeout(self.write_timeout):  # SetWriteDeadline
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
            test = {"time": _now(), "auth": {"token_type": "default"},
                    "request": {"id": str(uuid.uuid4()), "namespace": {"id": "root"},
                                "operation": "update", "path": "sys/audit/test"},
                    "type": "request"}
            try:
                await device.write(device.prefix + _line(test))
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

    def _hashed(self, value: Any, *, numbers: bool) -> Any:
        """``value`` with its strings HMAC'd; with ``numbers``, its numbers too (as JSON
        text, which is what a ``json.Number`` holds)."""
        if isinstance(value, str):
            return self.hash(value)
        if numbers and isinstance(value, int | float) and not isinstance(value, bool):
            return self.hash(json.dumps(value))
        if isinstance(value, dict):
            return {k: self._hashed(v, numbers=numbers) for k, v in value.items()}
        if isinstance(value, list):
            return [self._hashed(v, numbers=numbers) for v in value]
        return value

    async def log(self, entry: dict[str, Any], *, token: TokenEntry | None) -> None:
        """Write ``entry`` (a request or response entry, plaintext) to every device; raise 500
        if there are devices and none succeeded."""
        if not self.devices:
            return
        devices = list(self.devices.values())
        lines = {device.path: device.prefix + _line(self._format(entry, token, device))
                 for device in devices}
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
                    part["data"] = self._hashed(part["data"], numbers=section == "request")
        return _in_struct_order(formatted)


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


#: Field order of Vault's entry structs (``audit/types.go``), which Go's encoder keeps.
_ENTRY_ORDER = ("time", "auth", "error", "forwarded", "forwarded_from", "request", "response",
                "type")
_REQUEST_ORDER = (
    "client_certificate_serial_number", "client_id", "client_token", "client_token_accessor",
    "data", "headers", "id", "mount_accessor", "mount_class", "mount_is_external_plugin",
    "mount_point", "mount_running_sha256", "mount_running_version", "mount_type", "namespace",
    "operation", "path", "policy_override", "remote_address", "remote_port",
    "replication_cluster", "request_uri", "wrap_ttl")
_RESPONSE_ORDER = (
    "auth", "data", "headers", "mount_accessor", "mount_class", "mount_is_external_plugin",
    "mount_point", "mount_running_sha256", "mount_running_plugin_version", "mount_type",
    "redirect", "secret", "wrap_info", "warnings")
_AUTH_ORDER = (
    "accessor", "client_token", "display_name", "entity_id", "metadata", "policies",
    "policy_results", "token_policies", "token_ttl", "token_type")


def _ordered(part: dict[str, Any], order: tuple[str, ...]) -> dict[str, Any]:
    return {**{k: part[k] for k in order if k in part},
            **{k: v for k, v in part.items() if k not in order}}


def _in_struct_order(entry: dict[str, Any]) -> dict[str, Any]:
    ordered = _ordered(entry, _ENTRY_ORDER)
    for key, order in (("request", _REQUEST_ORDER), ("response", _RESPONSE_ORDER),
                       ("auth", _AUTH_ORDER)):
        if isinstance(ordered.get(key), dict):
            ordered[key] = _ordered(ordered[key], order)
    return ordered


def _line(entry: dict[str, Any]) -> bytes:
    """One entry as Go's ``json.Encoder`` writes it: compact, HTML characters escaped,
    other non-ASCII text as UTF-8, a newline after it."""
    text = json.dumps(entry, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text.encode() + b"\n"


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
    response: dict[str, Any] = {
        key: request["request"][key] for key in ("mount_accessor", "mount_class", "mount_point",
                                                 "mount_type") if request["request"].get(key)}
    if data is not None:
        response["data"] = data
    entry["response"] = response
    if error is not None:
        entry["error"] = error
    return entry
