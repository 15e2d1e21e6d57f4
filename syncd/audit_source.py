"""The ``audit`` change source: notices from ``syncd audit-relay`` (Community Vault).

Community Vault has no event stream since 1.16; its audit log has every request. The relay
(:mod:`syncd.audit_relay`) runs next to each Vault server, keeps only successful KV writes of
its audit stream and sends them here as *notices*: one JSON line each, ``{"mount": "secret",
"path": "data/app", "version": 3}`` — a mount and a request path, never a value (there is none:
Vault HMACs every string of an entry, and the relay keeps only paths and the version number).

The stream: a relay connects over TCP and sends one hello line, ``{"token": ..., "vault":
<the Vault address VaultConnections use>}``; syncd answers ``ok`` if the token is the shared
one (compared in constant time) and closes the connection otherwise. Then only notices flow,
and syncd never writes again, so a slow syncd cannot push back on the relay (which drops what
it cannot send). A relay's notices only schedule objects whose VaultConnection has the relay's
Vault address, and while at least one relay of an address is connected its objects are polled
at the safety interval; when the last one drops, at their own ``refreshAfter``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
from collections import Counter
from collections.abc import Callable

import structlog

from syncd.changes import Changes, Notice
from syncd.controller import NotReady
from syncd.events_source import Reference, reference
from syncd.health import parse_address
from syncd.specs import VaultAuth, VaultConnection, VaultStaticSecret

#: A hello or notice line longer than this is not one: the connection is closed.
MAX_LINE = 16 * 1024
HELLO_SECONDS = 5.0

Resolve = Callable[[VaultStaticSecret], tuple[VaultAuth, VaultConnection]]


def vault_key(address: str) -> str:
    """Addresses compared as VaultConnections write them, give or take a trailing slash."""
    return address.strip().rstrip("/").lower()


class AuditSource:
    def __init__(self, *, changes: Changes, resolve: Resolve, listen: str, token: str) -> None:
        if not token:
            raise ValueError("the audit source needs the relays' shared token")
        self._changes = changes
        self._resolve = resolve
        self._host, self._port = parse_address(listen)
        self._token = token.encode()
        self._relays: Counter[str] = Counter()
        #: Vault addresses resolved since the objects' references last changed, by reference
        #: (a health change asks for every object's; resolving parses its VaultAuth).
        self._addresses: dict[Reference, str | None] = {}
        self._handlers: set[asyncio.Task[None]] = set()
        #: The bound port (tests listen on port 0).
        self.port: int | None = None
        self.listening = asyncio.Event()
        self._log = structlog.get_logger("syncd.audit")

    def _address(self, spec: VaultStaticSecret) -> str | None:
        key = reference(spec)
        if key not in self._addresses:
            try:
                self._addresses[key] = vault_key(self._resolve(spec)[1].address)
            except NotReady:
                self._addresses[key] = None
        return self._addresses[key]

    def covers(self, spec: VaultStaticSecret) -> bool:
        address = self._address(spec)
        return address is not None and self._relays[address] > 0

    async def run(self) -> None:
        server = await asyncio.start_server(self._accept, self._host, self._port, limit=MAX_LINE)
        self.port = server.sockets[0].getsockname()[1]
        self._log.info("listening for audit relays", address=f"{self._host}:{self.port}")
        self.listening.set()
        try:
            async with server:
                while True:  # connections are served by the server's own tasks
                    await self._changes.changed.wait()
                    self._changes.changed.clear()
                    self._addresses.clear()  # a VaultAuth or VaultConnection may have changed
                    await self._changes.apply_health()
        finally:
            handlers = list(self._handlers)
            for task in handlers:
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        peer = str(writer.get_extra_info("peername"))
        try:
            await self._relay(reader, writer, peer=peer)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            self._log.info("audit relay disconnected", peer=peer, error=str(exc))
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _relay(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, peer: str
    ) -> None:
        try:
            hello = json.loads(await asyncio.wait_for(reader.readline(), HELLO_SECONDS))
            token, vault = str(hello["token"]).encode(), vault_key(str(hello["vault"]))
        except (TimeoutError, ValueError, KeyError, TypeError):
            self._log.warning("audit relay refused: no hello", peer=peer)
            return
        if not vault or not hmac.compare_digest(token, self._token):
            self._log.warning("audit relay refused: wrong token", peer=peer)
            return
        writer.write(b"ok\n")
        await writer.drain()
        self._relays[vault] += 1
        if self._relays[vault] == 1:
            self._changes.health_changed()
        self._log.info("audit relay connected", peer=peer, vault=vault)
        try:
            while line := await reader.readline():
                change = _parse_notice(line)
                if change is not None:
                    self._changes.notify(change, among=lambda spec: self._address(spec) == vault)
        finally:
            self._relays[vault] -= 1
            if self._relays[vault] <= 0:
                del self._relays[vault]
                self._changes.health_changed()
            self._log.info("audit relay gone", peer=peer, vault=vault)


def _parse_notice(line: bytes) -> Notice | None:
    try:
        raw = json.loads(line)
        mount, path, version = raw["mount"], raw["path"], raw.get("version")
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(mount, str) or not isinstance(path, str) or not mount or not path:
        return None
    return Notice(mount=mount.strip("/"), path=path.strip("/"),
                  version=version if isinstance(version, int) else None)
