"""One Vault server instance (a pod such as vault-0): its seal state and its HTTP listener.

Each node of a raft cluster is unsealed separately: it keeps its own pool of submitted shares,
its own nonce and progress, and comes back sealed when its process restarts, while the data it
serves lives in the shared :class:`~testbed.vault.core.Core`. Each node listens on its own
address (``127.0.0.2:8200`` style addresses let the Kubernetes emulation point pods at nodes).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ssl
import uuid
from typing import Any

from aiohttp import web

from testbed.vault import sealing, shamir
from testbed.vault.core import BUILD_DATE, Core
from testbed.vault.errors import VaultError
from testbed.vault.faults import FaultInjector, RequestCounter
from testbed.vault.server import build_server

MIN_KEY_BYTES = 16  # AES-128 barrier key
MAX_KEY_BYTES = 33  # AES-256 barrier key plus the share's x byte


def decode_key(text: str) -> bytes:
    """Hex first; base64 when hex fails or decodes to an impossible length (reference §1.4)."""
    try:
        raw = binascii.unhexlify(text)
        if MIN_KEY_BYTES <= len(raw) <= MAX_KEY_BYTES:
            return raw
    except (binascii.Error, ValueError):
        pass
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise VaultError(400, "'key' must be a valid hex or base64 string") from None


class Node:
    def __init__(
        self,
        *,
        core: Core,
        index: int,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        wrong_key_status: int = 400,
        fault_seed: int | None = None,
    ) -> None:
        self.core = core
        self.index = index
        self.name = f"vault-{index}"
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.wrong_key_status = wrong_key_status
        self.sealed = True
        self.nonce = ""
        self._parts: list[bytes] = []
        self.counter = RequestCounter()
        self.faults = FaultInjector(seed=fault_seed)
        self.restarts = 0
        self._runner: web.ServerRunner | None = None
        #: Set whenever the listener is up; cleared while a restart cycles it.
        self.listening = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()
        core.nodes.append(self)

    # -- addresses and listener ------------------------------------------------------------

    @property
    def address(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    async def start(self) -> None:
        runner = web.ServerRunner(build_server(self), shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, ssl_context=self.ssl_context)
        await site.start()
        if self.port == 0:
            server = getattr(site, "_server", None)
            sockets = getattr(server, "sockets", None) or []
            self.port = sockets[0].getsockname()[1]
        self._runner = runner
        self.listening.set()

    async def stop(self) -> None:
        for task in list(self._background):
            await task
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def restart(self) -> None:
        """A pod restart: sealed again, pool and nonce gone, connections dropped, same address."""
        self.reseal()
        await self._cycle_listener()

    def restart_soon(self) -> None:
        """:meth:`restart` for the HTTP admin endpoint: reseal now, cycle the listener once the
        current response has gone out (cycling waits for in-flight requests, this one included)."""
        self.reseal()
        self.listening.clear()
        task = asyncio.get_running_loop().create_task(self._cycle_listener())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _cycle_listener(self) -> None:
        await asyncio.sleep(0)  # let a pending response be written first
        if self._runner is None:
            return
        self.listening.clear()
        runner, self._runner = self._runner, None
        await runner.cleanup()
        await self.start()

    def reseal(self) -> None:
        self.restarts += 1
        self.seal()

    # -- seal state machine ----------------------------------------------------------------

    def seal(self) -> None:
        self.sealed = True
        self._clear()

    def _clear(self) -> None:
        self._parts = []
        self.nonce = ""

    @property
    def progress(self) -> int:
        return len(self._parts)

    def seal_status(self) -> dict[str, Any]:
        """The ``sys/seal-status`` object (also the body of every ``sys/unseal`` answer)."""
        config = self.core.seal_config
        status: dict[str, Any] = {
            "type": "shamir",
            "initialized": config is not None,
            "sealed": self.sealed,
            "t": config.secret_threshold if config is not None else 0,
            "n": config.secret_shares if config is not None else 0,
            "progress": self.progress,
            "nonce": self.nonce,
            "version": self.core.version,
            "build_date": BUILD_DATE,
            "migration": False,
            "recovery_seal": False,
            "storage_type": "raft",
        }
        if not self.sealed:
            status["cluster_name"] = self.core.cluster.get("name", "")
            status["cluster_id"] = self.core.cluster.get("id", "")
        return status

    def unseal(self, *, key: str, reset: bool = False) -> dict[str, Any]:
        """One ``sys/unseal`` call, in Vault's order of checks (reference §1.4)."""
        if reset:
            if not self.sealed:
                raise VaultError(400, "vault is unsealed")
            self._clear()
            return self.seal_status()
        if not key:
            raise VaultError(
                400, "'key' must be specified in request body as JSON, or 'reset' set to true"
            )
        raw = decode_key(key)
        config = self.core.seal_config
        if config is None:
            raise VaultError(400, "Vault is not initialized")
        if len(raw) < MIN_KEY_BYTES:
            raise VaultError(400, f"invalid key: key is shorter than minimum {MIN_KEY_BYTES} bytes")
        if len(raw) > MAX_KEY_BYTES:
            raise VaultError(400, f"invalid key: key is longer than maximum {MAX_KEY_BYTES} bytes")
        if not self.sealed:
            return self.seal_status()
        if raw in self._parts:
            return self.seal_status()  # a byte-identical duplicate share is ignored
        self._parts.append(raw)
        if len(self._parts) == 1:
            self.nonce = str(uuid.uuid4())
        if len(self._parts) < config.secret_threshold:
            return self.seal_status()
        parts = self._parts
        self._clear()  # the pool is cleared whether or not the attempt succeeds
        try:
            kek = parts[0] if config.secret_threshold == 1 else shamir.combine(parts)
        except shamir.ShamirError as error:
            raise VaultError(400, f"invalid key: failed to compute combined key: {error}") from None
        try:
            sealing.open_keyring(config, kek)
        except sealing.KeyringError as error:
            raise VaultError(
                self.wrong_key_status,
                "unable to retrieve stored keys: invalid key: "
                f"failed to decrypt keys from storage: {error}",
            ) from None
        self.sealed = False
        return self.seal_status()
