"""Event notifications (Vault Enterprise 1.16+; reference §1.11): the KV events and the
WebSocket ``GET /v1/sys/events/subscribe/<event type pattern>?json=true``.

What a subscriber gets, as Vault sends it (CloudEvents JSON, one text message per event)::

    {"id": ..., "source": "https://vaultproject.io/", "specversion": "1.0", "type": "*",
     "data": {"event": {"id": ..., "metadata": {"current_version": "3", "oldest_version": "1",
                                                 "data_path": "secret/data/app",
                                                 "modified": "true", "operation": "data-write",
                                                 "path": "secret/data/app"}},
              "event_type": "kv-v2/data-write",
              "plugin_info": {"mount_class": "secret", "mount_accessor": "kv_...",
                              "mount_path": "secret/", "plugin": "kv"}},
     "datacontentype": "application/cloudevents", "time": "..."}

Metadata values are strings; ``data_path`` only where the docs' table lists it. Access as in
1.16: opening the stream needs ``read`` on ``sys/events/subscribe/<pattern>``; each event is
then delivered only if the token (looked up again per event, so a revoked token stops getting
them) has ``list`` and ``subscribe`` on the event's ``path``. ``subscribe_event_types`` is not
enforced, nor are the ``namespaces`` and ``filter`` parameters (testbed/README.md).
"""

from __future__ import annotations

import asyncio
import datetime
import fnmatch
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

    def __init__(self) -> None:
        self._subscribers: set[_Subscriber] = set()
        #: Streams open now (tests wait on it).
        self.connected = 0
        self._kick: asyncio.Event | None = None

    def after_request(self, *, mount: Mount, operation: str, path: str) -> None:
        """Publish the event of a successful request to ``path`` (below ``mount``), if any."""
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
                metadata["data_path"] = f"{mount.path}data/{key}" if key else full
            entry = mount.backend.keys.get(key)
            if entry is not None:
                metadata["current_version"] = str(entry.current_version)
                metadata["oldest_version"] = str(entry.oldest_version)
        elif operation in ("create", "update"):
            event_type, metadata["operation"], metadata["data_path"] = "kv-v1/write", \
                "write", full
        elif operation == "delete":
            event_type, metadata["operation"] = "kv-v1/delete", "delete"
        else:
            return
        event_id = str(uuid.uuid4())
        message = {
            "id": event_id, "source": "https://vaultproject.io/", "specversion": "1.0",
            "type": "*",
            "data": {
                "event": {"id": event_id, "metadata": metadata},
                "event_type": event_type,
                "plugin_info": {"mount_class": "secret", "mount_accessor": mount.accessor,
                                "mount_path": mount.path, "plugin": "kv"},
            },
            "datacontentype": "application/cloudevents",
            "time": datetime.datetime.now(datetime.UTC).isoformat(),
        }
        for subscriber in self._subscribers:
            if fnmatch.fnmatchcase(event_type, subscriber.pattern):
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
        pattern = request.path[len(PREFIX):]
        if not pattern:
            raise VaultError(400, "missing event type")
        if request.query.get("json", "").lower() not in ("true", "1"):
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
        path = message["data"]["event"]["metadata"]["path"]
        acl = node.core.policies.acl(token.policies)
        return acl.allows(path, "subscribe") and acl.allows(path, "list")
