"""``syncd audit-relay``: Vault's socket audit device in, KV change notices out to syncd.

Vault waits for every audit device before it answers a request, so whatever sits at the end
of a socket device is in the path of every request of the cluster: a receiver that reads
slowly slows Vault down, one that has vanished behind a silent network stops it (up to the
device's ``write_timeout``, per entry). The relay is built so that it is never that receiver's
problem:

- it runs next to Vault (a sidecar in each Vault pod) and listens on a unix socket, which
  fails fast (connection refused) rather than silently when the relay is gone;
- it reads continuously, whatever happens downstream: notices wait in a small ring buffer that
  drops the oldest when full, never in the socket;
- it parses only what it keeps: successful ``response`` entries of ``kv`` mounts that change
  data (create, update, patch, delete). Every other entry is dropped after a substring check,
  unparsed; the test message Vault sends on enable is a request entry and is dropped too;
- it keeps three things of an entry: the mount, the request path and, for a kv-v2 write,
  ``response.data.version`` — a number Vault does not HMAC. Everything else of the entry (all
  strings in request and response data are HMAC'd by Vault, but their keys and the token
  accessors are not) is discarded, and no entry is ever logged;
- it sends notices to syncd over one authenticated TCP stream (:mod:`syncd.audit_source`) and
  drops them while syncd is unreachable: the safety poll covers them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
from dataclasses import dataclass

import structlog

from syncd.changes import reconnect_pause
from syncd.health import parse_address

#: Request operations that change what a read of a KV secret returns (``recover``: kv-v2's
#: restore of a secret from a loaded snapshot, Vault 1.20+).
CHANGING = frozenset({"create", "update", "patch", "delete", "recover"})
#: Longer entries are skipped to their end unparsed (a KV write whose request carried megabytes;
#: its change is caught by the safety poll).
MAX_ENTRY = 4 * 1024 * 1024
READ_CHUNK = 256 * 1024
#: Notices waiting for syncd; the oldest are dropped beyond this.
BUFFER = 4096


@dataclass(frozen=True, kw_only=True)
class RelaySettings:
    """``syncd audit-relay``'s options; see ``syncd audit-relay --help``."""

    #: Where Vault's socket device writes: a unix socket path, or ``host:port`` for TCP.
    listen: str
    #: syncd's ``--audit-relay-listen``, as ``host:port``.
    syncd: str
    #: The shared token syncd expects (from a Secret).
    token: str
    #: This Vault's address as VaultConnections write it: its notices only concern those.
    vault_address: str
    #: Permissions of the unix socket (Vault's user must be able to connect).
    socket_mode: int = 0o660

    def __repr__(self) -> str:  # the token is a credential
        return f"RelaySettings(listen={self.listen!r}, syncd={self.syncd!r})"


def keep(entry: bytes) -> dict[str, object] | None:
    """The notice of one audit entry (a JSON line), or None for everything else.

    Vault writes each entry as Go's ``json.Encoder`` does: compact, so the checks on the raw
    bytes below see exactly these spellings; behind the device's ``prefix`` if it has one. The
    ``jsonx`` format (XML) is never kept: the device must use ``format=json``, the default.
    """
    # Cheap checks first, on the raw bytes: most entries are request entries, reads and other
    # engines, and are never parsed.
    if b'"type":"response"' not in entry or b'"mount_type":"kv"' not in entry:
        return None
    start = entry.find(b"{")  # after the prefix, if any
    try:
        parsed = json.loads(entry[start:])
        request = parsed["request"]
        if parsed.get("type") != "response" or parsed.get("error"):
            return None
        if request.get("mount_type") != "kv" or request.get("operation") not in CHANGING:
            return None
        mount, path = request.get("mount_point"), request.get("path")
        if not isinstance(mount, str) or not isinstance(path, str):
            return None
        mount = mount.strip("/")
        if not mount or not path.startswith(mount + "/"):
            return None
        data = (parsed.get("response") or {}).get("data") or {}
        version = data.get("version") if isinstance(data, dict) else None
    except (ValueError, TypeError, AttributeError, KeyError):
        return None
    notice: dict[str, object] = {"mount": mount, "path": path[len(mount) + 1:]}
    if isinstance(version, int) and not isinstance(version, bool):
        notice["version"] = version
    return notice


class Relay:
    def __init__(self, settings: RelaySettings) -> None:
        self._settings = settings
        self._pending: collections.deque[bytes] = collections.deque(maxlen=BUFFER)
        self._wake = asyncio.Event()
        self._connected = False
        self._readers: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        #: Counts for the log and the tests: entries read, notices kept, notices dropped.
        self.stats: collections.Counter[str] = collections.Counter()
        #: Set once the socket Vault writes to accepts connections.
        self.listening = asyncio.Event()
        self.address: str = settings.listen
        self._log = structlog.get_logger("syncd.audit_relay")

    async def run(self, stop: asyncio.Event) -> None:
        server = await self._listen()
        forwarding = asyncio.create_task(self._forward(), name="forward")
        try:
            async with server:
                self.listening.set()
                self._log.info("audit relay listening", listen=self.address,
                               syncd=self._settings.syncd)
                await stop.wait()
        finally:
            forwarding.cancel()
            # Closing Vault's connections ends their readers (EOF); cancelling the tasks of
            # a stream server's callbacks would be reported as errors by asyncio.
            readers = list(self._readers.items())
            for _, writer in readers:
                writer.close()
            await asyncio.gather(forwarding, *(task for task, _ in readers),
                                 return_exceptions=True)
            self._log.info("audit relay stopped", **self.stats)

    async def _listen(self) -> asyncio.Server:
        listen = self._settings.listen
        if listen.startswith("/") or listen.startswith("."):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(listen)  # left by a relay that was killed
            server = await asyncio.start_unix_server(self._vault, listen)
            os.chmod(listen, self._settings.socket_mode)
            return server
        host, port = parse_address(listen)
        server = await asyncio.start_server(self._vault, host, port)
        self.address = f"{host}:{server.sockets[0].getsockname()[1]}"
        return server

    # --- from Vault ----------------------------------------------------------------------------

    async def _vault(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._readers[task] = writer
        self._log.info("vault connected")
        partial = b""
        skipping = False
        try:
            while chunk := await reader.read(READ_CHUNK):
                lines = chunk.split(b"\n")
                lines[0] = partial + lines[0]
                partial = lines.pop()
                for line in lines:
                    if skipping:  # the end of an entry too long to keep
                        skipping = False
                        continue
                    self._entry(line)
                if len(partial) > MAX_ENTRY:
                    partial, skipping = b"", True
                    self.stats["oversized"] += 1
        except OSError:
            pass
        finally:
            self._readers.pop(task, None)
            writer.close()
            self._log.info("vault disconnected")

    def _entry(self, line: bytes) -> None:
        self.stats["entries"] += 1
        notice = keep(line)
        if notice is None:
            return
        if not self._connected:
            self.stats["dropped"] += 1  # syncd is away: its safety poll covers this change
            return
        if len(self._pending) == self._pending.maxlen:
            self.stats["dropped"] += 1
        self._pending.append(json.dumps(notice, separators=(",", ":")).encode() + b"\n")
        self.stats["kept"] += 1
        self._wake.set()

    # --- to syncd ------------------------------------------------------------------------------

    async def _forward(self) -> None:
        host, port = parse_address(self._settings.syncd)
        failures = 0
        while True:
            streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
            try:
                streams = await asyncio.wait_for(asyncio.open_connection(host, port), 5.0)
                reader, writer = streams
                hello = {"token": self._settings.token, "vault": self._settings.vault_address}
                writer.write(json.dumps(hello).encode() + b"\n")
                await writer.drain()
                if await asyncio.wait_for(reader.readline(), 5.0) != b"ok\n":
                    raise ConnectionRefusedError("syncd refused the relay's token")
                failures = 0
                self._connected = True
                self._log.info("connected to syncd", syncd=self._settings.syncd)
                closed = asyncio.create_task(reader.read(1))  # syncd never writes again
                woken: asyncio.Task[bool] | None = None
                try:
                    while not closed.done():
                        self._wake.clear()
                        while self._pending:
                            writer.write(self._pending.popleft())
                        await writer.drain()
                        woken = asyncio.create_task(self._wake.wait())
                        await asyncio.wait([closed, woken], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for task in (closed, woken):
                        if task is not None:
                            task.cancel()
                raise ConnectionResetError("syncd closed the stream")
            except (OSError, TimeoutError) as exc:
                if self._connected or failures == 0:
                    self._log.warning("syncd unreachable, dropping notices until it is back",
                                      error=str(exc) or type(exc).__name__)
            finally:
                self._connected = False
                self.stats["dropped"] += len(self._pending)
                self._pending.clear()
                if streams is not None:
                    streams[1].close()
            failures += 1
            await reconnect_pause(failures, cap=5.0)
