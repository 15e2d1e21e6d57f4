"""The ``events`` change source: Vault Enterprise's event notifications (1.16.3+, as VSO).

One WebSocket ``/v1/sys/events/subscribe/kv*?json=true`` per *login* — a VaultStaticSecret's
namespace, VaultAuth and VaultConnection, which is also what :class:`~syncd.vault_clients.
VaultClients` keeps one client for — shared by every instant VaultStaticSecret using it. The
subscription is made with that login's own token, so Vault's ACL decides which events it sees
(``read`` on ``sys/events/subscribe/kv*``, ``subscribe`` on the secret paths), and an event
received on it only schedules the objects of that login: one tenant's token never listens for
another tenant's objects, and another tenant's events never reach them.

An event says which path changed (``data.event.metadata.path``, e.g. ``secret/data/app``, on
``data.plugin_info.mount_path``); what the secret now holds is read by the reconcile, as
always. A stream that drops is opened again after a short, growing, jittered pause (with a new
token if the old one's lease is ending); while it is down its objects are polled every
``refreshAfter``, and once it is back they are all read once, for what the gap missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import structlog

from syncd.changes import Changes, Notice, notice, reconnect_pause
from syncd.controller import NotReady
from syncd.specs import VaultAuth, VaultConnection, VaultStaticSecret
from syncd.vault_clients import AuthError, VaultClients, namespace_header

#: The event types of both KV versions (``kv-v1/write``, ``kv-v2/data-write``...).
EVENT_TYPES = "kv*"
#: How often the wanted streams are compared with the open ones without a change to trigger it.
RESCAN_SECONDS = 30.0
RESCAN_DEBOUNCE_SECONDS = 0.2
#: WebSocket pings: a dead connection (a Vault pod gone without a FIN) is noticed this fast.
HEARTBEAT_SECONDS = 20.0

Resolve = Callable[[VaultStaticSecret], tuple[VaultAuth, VaultConnection]]


#: What decides a VaultStaticSecret's login: its namespace, VaultAuth reference and Vault
#: namespace. Thousands of objects share a few of these.
Reference = tuple[str, object, str | None]


def reference(spec: VaultStaticSecret) -> Reference:
    return (spec.namespace, spec.vault_auth_ref, spec.vault_namespace)


@dataclass(frozen=True, slots=True)
class Login:
    """Whose token a stream uses; equal logins share one stream."""

    namespace: str
    auth: tuple[str, str, str, int]
    connection: tuple[str, str, str, int]
    vault_namespace: str


class EventsSource:
    def __init__(self, *, changes: Changes, resolve: Resolve, clients: VaultClients) -> None:
        self._changes = changes
        self._resolve = resolve
        self._clients = clients
        self._streams: dict[Login, asyncio.Task[None]] = {}
        self._connected: set[Login] = set()
        #: Logins resolved since the last rescan, by reference: resolving parses the VaultAuth,
        #: and a rescan or a health change asks for every object's (10,000 parses held the
        #: event loop for a second, delaying notices meanwhile).
        self._resolved: dict[Reference, tuple[Login, VaultAuth, VaultConnection] | None] = {}
        self._log = structlog.get_logger("syncd.events")

    def _login(self, spec: VaultStaticSecret) -> tuple[Login, VaultAuth, VaultConnection] | None:
        key = reference(spec)
        if key not in self._resolved:
            self._resolved[key] = self._resolve_login(spec)
        return self._resolved[key]

    def _resolve_login(
        self, spec: VaultStaticSecret,
    ) -> tuple[Login, VaultAuth, VaultConnection] | None:
        try:
            auth, connection = self._resolve(spec)
        except NotReady:
            return None
        login = Login(
            spec.namespace, (auth.namespace, auth.name, auth.uid, auth.generation),
            (connection.namespace, connection.name, connection.uid, connection.generation),
            spec.vault_namespace or auth.vault_namespace or "",
        )
        return login, auth, connection

    def covers(self, spec: VaultStaticSecret) -> bool:
        found = self._login(spec)
        return found is not None and found[0] in self._connected

    async def run(self) -> None:
        async with aiohttp.ClientSession() as session:
            try:
                while True:
                    self._changes.changed.clear()
                    self._rescan(session)
                    await self._changes.apply_health()
                    # A burst of changes (a kubectl apply of many objects, a start-up) makes
                    # one rescan, not one per object.
                    await asyncio.sleep(RESCAN_DEBOUNCE_SECONDS)
                    # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(RESCAN_SECONDS):
                            await self._changes.changed.wait()
            finally:
                streams = list(self._streams.values())
                for task in streams:
                    task.cancel()
                await asyncio.gather(*streams, return_exceptions=True)

    def _rescan(self, session: aiohttp.ClientSession) -> None:
        # Resolve afresh: a change of a VaultAuth or VaultConnection is what triggers this.
        self._resolved.clear()
        wanted: dict[Login, tuple[str, VaultAuth, VaultConnection]] = {}
        for spec in self._changes.specs:
            found = self._login(spec)
            if found is not None:
                wanted.setdefault(found[0], (spec.namespace, found[1], found[2]))
        for login in [login for login in self._streams if login not in wanted]:
            self._streams.pop(login).cancel()  # its objects are gone or use another login now
            self._connected.discard(login)
        for login, (namespace, auth, connection) in wanted.items():
            task = self._streams.get(login)
            if task is None or task.done():
                self._streams[login] = asyncio.create_task(
                    self._stream(session, login, namespace=namespace, auth=auth,
                                 connection=connection),
                    name=f"events {auth.namespace}/{auth.name}",
                )

    async def _stream(
        self, session: aiohttp.ClientSession, login: Login, *, namespace: str,
        auth: VaultAuth, connection: VaultConnection,
    ) -> None:
        log = self._log.bind(vault=connection.address, vault_auth=f"{auth.namespace}/{auth.name}",
                             namespace=namespace)
        failures = 0
        opened_before = False
        while True:
            try:
                client = await self._clients.get(namespace=namespace, auth=auth,
                                                 connection=connection)
                url = f"{client.url.rstrip('/')}/v1/sys/events/subscribe/{EVENT_TYPES}"
                headers = {**connection.headers, **namespace_header(login.vault_namespace),
                           "X-Vault-Token": client.token}
                async with session.ws_connect(
                    url, params={"json": "true"}, headers=headers, heartbeat=HEARTBEAT_SECONDS,
                    ssl=_tls(client.session.verify, url),
                    server_hostname=connection.tls_server_name,
                    timeout=aiohttp.ClientWSTimeout(ws_close=5.0),
                ) as ws:
                    failures = 0
                    self._connected.add(login)
                    self._changes.health_changed()
                    log.info("events stream open")
                    if opened_before:  # what changed while it was down
                        self._catch_up(login)
                    opened_before = True
                    async for message in ws:
                        if message.type == aiohttp.WSMsgType.TEXT:
                            self._deliver(login, message.data)
                    log.warning("events stream closed by Vault", code=ws.close_code)
            except (aiohttp.ClientError, AuthError, OSError, TimeoutError) as exc:
                # A 403 (no read on sys/events/subscribe/kv*) lands here too, as a handshake
                # error: polling goes on, and the next attempt may find the policy fixed.
                log.warning("events stream failed", error=str(exc) or type(exc).__name__)
            finally:
                if login in self._connected:
                    self._connected.discard(login)
                    self._changes.health_changed()
            failures += 1
            await reconnect_pause(failures)

    def _mine(self, login: Login) -> Callable[[VaultStaticSecret], bool]:
        def among(spec: VaultStaticSecret) -> bool:
            found = self._login(spec)
            return found is not None and found[0] == login
        return among

    def _catch_up(self, login: Login) -> None:
        among = self._mine(login)
        for spec in self._changes.specs:
            if among(spec):
                # What the gap missed: due now, but behind the notices (not urgent).
                self._changes.schedule((spec.namespace, spec.name), urgent=False)

    def _deliver(self, login: Login, text: str) -> None:
        change = parse_event(text)
        if change is None:
            self._log.debug("events stream: not a KV event, ignored")
            return
        self._changes.notify(change, among=self._mine(login))


def parse_event(text: str) -> Notice | None:
    """The :class:`~syncd.changes.Notice` of one CloudEvents JSON message, or None.

    Vault's shape: ``{"data": {"event": {"metadata": {"path": "secret/data/app", ...}},
    "event_type": "kv-v2/data-write", "plugin_info": {"mount_path": "secret/", ...}}, ...}``;
    metadata values are strings (``"current_version": "3"``).
    """
    try:
        event = json.loads(text)
        data = event["data"]
        metadata = data["event"]["metadata"]
        mount_path, path = data["plugin_info"]["mount_path"], metadata["path"]
        if not isinstance(mount_path, str) or not isinstance(path, str):
            return None
        version = metadata.get("current_version")
        number = int(version) if isinstance(version, str) and version.isdigit() else None
    except (ValueError, KeyError, TypeError):
        return None
    return notice(mount_point=mount_path, request_path=path, version=number)


def _tls(verify: object, url: str) -> ssl.SSLContext | bool:
    """The TLS settings of the hvac client's session, for aiohttp."""
    if not url.startswith("https:"):
        return True
    if verify is False:
        return False
    return ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
