"""Event notifications (Vault Enterprise 1.16+; reference §1.11): the KV events and the
WebSocket ``GET /v1/sys/events/subscribe/<event type pattern>?json=true``.

What a subscriber gets, as Vault sends it (CloudEvents JSON, one text message per event; the
shape of ``vault/eventbus`` and the kv plugin's ``kvEvent``)::

    {"id": ..., "source": "vault://<node>", "specversion": "1.0", "type": "*",
     "data": {"event": {"id": ..., "metadata": {"current_version": "3", "oldest_version": "1",
                                                 "data_path": "secret/data/app",
                                                 "modified": "true", "operation": "data-write",
                                                 "path": "secret/data/app"}},
              "event_type": "kv-v2/data-write",
              "plugin_info": {"mount_class": "secret", "mount_accessor": "kv_...",
                              "mount_path": "secret/", "plugin": "kv",
                              "plugin_version": "v0.20.0+builtin"}},
     "datacontentype": "application/cloudevents", "time": "..."}

The plugin sends ``path`` and ``data_path`` below its mount and the bus prepends the mount path;
metadata values are strings; the versions only on the events of a version change
(``data-*``, ``delete``, ``undelete``, ``destroy``, with the versions the request named as a JSON
list: ``deleted_versions``...); ``data_path`` only where there is data to read. Access as
Vault's ``http/events.go`` checks it: opening the stream needs ``read`` on
``sys/events/subscribe/<pattern>``; then a root token gets every event, any other token only
events that have a ``data_path``, on which it has ``subscribe`` with a ``subscribe_event_types``
glob matching the event type (looked up again per event here; Vault caches a yes for 5
minutes). The ``namespaces`` and ``filter`` parameters are not emulated (testbed/README.md).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from testbed.vault.errors import VaultError, invalid_token, permission_denied, sealed
from testbed.vault.kv_v2 import KvV2Backend

if TYPE_CHECKING:
    from testbed.vault.mounts import Mount
    from testbed.vault.node import Node

PREFIX = "/v1/sys/events/subscribe/"
#: Events waiting for a slow subscriber; Vault drops beyond its buffer too.
BUFFER = 1024

#: kv-v2 events whose metadata carries current_version and oldest_version, and the name of the
#: versions the request named (a JSON list), if any.
_VERSIONED = {"data-write": None, "data-patch": None, "data-delete": None,
              "delete": "deleted_versions", "undelete": "undeleted_versions",
              "destroy": "destroyed_versions"}

#: (area below the kv-v2 mount, operation) -> (event, whether the metadata has data_path).
_KV2: dict[tuple[str, str], tuple[str, bool]] = {
    ("data", "create"): ("data-write", True), ("data", "update"): ("data-write", True),
    ("data", "patch"): ("data-patch", True), ("data", "delete"): ("data-delete", False),
    ("metadata", "create"): ("metadata-write", True),
    ("metadata", "update"): ("metadata-write", True),
    ("metadata", "patch"): ("metadata-patch", True),
    ("metadata", "delete"): ("metadata-delete", False),
    ("delete", "create"): ("delete", False), ("delete", "update"): ("delete", False),
    ("undelete", "create"): ("undelete", True), ("undelete", "update"): ("undelete", True),
    ("destroy", "create"): ("destroy", False), ("destroy", "update"): ("destroy", False),
    ("config", "create"): ("config-write", True), ("config", "update"): ("config-write", True),
}


@dataclass(eq=False)
class _Subscriber:
    pattern: str
    token_id: str
    queue: asyncio.Queue[dict[str, Any]] = field(
        default_factory=lambda: asyncio.Queue(BUFFER))


class EventBus:
    """The cluster's subscribers; the request pipeline publishes KV events into it."""

    def __init__(self, *, node_id: str = "vault-0") -> None:
        #: The CloudEvents ``source`` names the node that sent the event.
        self.node_id = node_id
        self._subscribers: set[_Subscriber] = set()
        #: Streams open now (tests wait on it).
        self.connected = 0
        self._kick: asyncio.Event | None = None

    def after_request(self, *, mount: Mount, operation: str, path: str,
                      data: dict[str, Any] | None = None) -> None:
        """Publish the event of a successful request to ``path`` (below ``mount``), if any;
        ``data``: the request's body."""
        if not self._subscribers or mount.backend.mount_type != "kv":
            return
        full = f"{mount.path}{path}"
        metadata: dict[str, str] = {"modified": "true", "path": full}
        if isinstance(mount.backend, KvV2Backend):
            area, _, key = path.partition("/")
            found = _KV2.get((area, operation))
            if found is None:
                return
            name, with_data_path = found
            event_type = f"kv-v2/{name}"
            metadata["operation"] = name
            if with_data_path:
                # Where the plugin says to read: metadata events name the metadata path,
                # an undelete the data it brought back.
                read_area = "data" if area == "undelete" else area
                metadata["data_path"] = f"{mount.path}{read_area}/{key}" if key else full
            entry = mount.backend.keys.get(key)
            if name == "data-delete" and entry is None:
                return  # nothing was there: the plugin sends nothing
            if name in _VERSIONED and entry is not None:
                metadata["current_version"] = str(entry.current_version)
                metadata["oldest_version"] = str(entry.oldest_version)
                named = _VERSIONED[name]
                if named is not None:
                    versions = (data or {}).get("versions") or []
                    metadata[named] = json.dumps(
                        [int(v) for v in versions if str(v).lstrip("-").isdigit()],
                        separators=(",", ":"))
        elif operation in ("create", "update"):
            event_type, metadata["operation"], metadata["data_path"] = "kv-v1/write", \
                "write", full
        elif operation == "delete":
            event_type, metadata["operation"] = "kv-v1/delete", "delete"
        else:
            return
        event_id = str(uuid.uuid4())
        message = {
            "id": event_id, "source": f"vault://{self.node_id}", "specversion": "1.0",
            "type": "*",
            "data": {  # no "namespace": it is left out for the root namespace
                "event": {"id": event_id, "metadata": metadata},
                "event_type": event_type,
                "plugin_info": {"mount_class": "secret", "mount_accessor": mount.accessor,
                                "mount_path": mount.path, "plugin": "kv",
                                "plugin_version": mount.describe()["running_plugin_version"]},
            },
            "datacontentype": "application/cloudevents",
            "time": datetime.datetime.now(datetime.UTC).isoformat(),
        }
        for subscriber in self._subscribers:
            if glob(subscriber.pattern, event_type):
                if subscriber.queue.full():
                    continue  # a subscriber that does not read loses events
                subscriber.queue.put_nowait(message)

    def disconnect_all(self) -> None:
        """Close every open stream (a Vault restart, a load balancer's idle timeout)."""
        if self._kick is not None:
            self._kick.set()

    async def subscribe(self, node: Node, request: web.BaseRequest) -> web.StreamResponse:
        """The WebSocket endpoint; errors before the upgrade are Vault's JSON errors."""
        core = node.core
        if node.sealed or not core.initialized:
            raise sealed()
        pattern = request.path[len(PREFIX):].strip()
        if not pattern:
            raise VaultError(400, "did not specify eventType to subscribe to")
        raw = request.query.get("json", "")
        if raw not in _TRUE + _FALSE:  # Go's strconv.ParseBool
            raise VaultError(400, f"invalid parameter for JSON: {raw}")
        if raw not in _TRUE:  # Vault sends protobuf then
            raise VaultError(400, "the testbed only sends JSON events: add ?json=true")
        token_id = request.headers.get("X-Vault-Token", "")
        if not token_id:
            raise permission_denied()
        token = core.tokens.lookup(token_id)
        if token is None:
            raise invalid_token()
        acl_path = request.path[len("/v1/"):]
        if not token.is_root and not core.policies.acl(token.policies).allows(acl_path, "read"):
            raise permission_denied()
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        subscriber = _Subscriber(pattern=pattern, token_id=token_id)
        self._subscribers.add(subscriber)
        self.connected += 1
        if self._kick is None or self._kick.is_set():
            self._kick = asyncio.Event()
        kick = self._kick
        reading = asyncio.create_task(ws.receive())  # ends when the client closes
        kicked = asyncio.create_task(kick.wait())
        try:
            while not reading.done() and not kicked.done():
                getting = asyncio.create_task(subscriber.queue.get())
                await asyncio.wait([getting, reading, kicked],
                                   return_when=asyncio.FIRST_COMPLETED)
                if not getting.done():
                    getting.cancel()
                    break
                message = getting.result()
                if self._allowed(node, subscriber, message):
                    await ws.send_str(json.dumps(message))
        finally:
            self._subscribers.discard(subscriber)
            self.connected -= 1
            for task in (reading, kicked):
                task.cancel()
            await ws.close()
        return ws

    @staticmethod
    def _allowed(node: Node, subscriber: _Subscriber, message: dict[str, Any]) -> bool:
        token = node.core.tokens.lookup(subscriber.token_id)
        if token is None:
            return False
        if token.is_root:
            return True
        # Only root tokens get events without a data path (deletes, destroys): Vault's rule.
        data_path = message["data"]["event"]["metadata"].get("data_path", "")
        if not data_path:
            return False
        acl = node.core.policies.acl(token.policies)
        return acl.allows(data_path, "subscribe") and any(
            glob(allowed, message["data"]["event_type"])
            for allowed in acl.subscribe_event_types(data_path))


_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("", "0", "f", "F", "FALSE", "false", "False")


def glob(pattern: str, subject: str) -> bool:
    """``*`` matches any run of characters, everything else itself (ryanuber/go-glob, which
    Vault matches event types with)."""
    parts = pattern.split("*")
    if len(parts) == 1:
        return subject == pattern
    if not subject.startswith(parts[0]) or not subject.endswith(parts[-1]):
        return False
    position = len(parts[0])
    end = len(subject) - len(parts[-1])
    for part in parts[1:-1]:
        found = subject.find(part, position, end)
        if found < 0:
            return False
        position = found + len(part)
    return position <= end
