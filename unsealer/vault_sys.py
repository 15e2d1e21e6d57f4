"""The four ``sys/`` endpoints the unsealer speaks, over aiohttp, to one Vault pod.

These endpoints need no token and answer while Vault is sealed. They are called on a pod's own
address, never through the Service: the Service routes only to Ready pods, and a sealed pod is
not Ready. aiohttp is used rather than hvac so nothing blocks the event loop and no thread pool
is needed for four small requests.

Share material passes through :meth:`VaultNode.submit` as the request body only; no exception
or log line made here contains it.

Identity: the TCP connection goes to the pod's IP, but the TLS handshake is for the pod's
stable DNS name (``server_name``: SNI and the hostname check), so only a server holding a
certificate for *that pod's* name, from the configured CA, passes. A certificate for the IP,
or for a sibling pod's name, does not. :attr:`VaultNode.verified` says whether that proof is
in place; plain http proves nothing.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

import aiohttp


class VaultSysError(Exception):
    """Vault refused a sys/ request; ``status`` is the HTTP code (0: no answer)."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class SealStatus:
    initialized: bool
    sealed: bool
    threshold: int
    shares: int
    progress: int
    nonce: str
    version: str

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> SealStatus:
        return cls(
            initialized=bool(body.get("initialized")),
            sealed=bool(body.get("sealed", True)),
            threshold=int(body.get("t") or 0),
            shares=int(body.get("n") or 0),
            progress=int(body.get("progress") or 0),
            nonce=str(body.get("nonce") or ""),
            version=str(body.get("version") or ""),
        )


@dataclass(frozen=True)
class InitResult:
    """What ``sys/init`` returned. Secret: never log or repr it (repr is blanked)."""

    keys_hex: tuple[str, ...]
    root_token: str

    def __repr__(self) -> str:
        return f"InitResult(<{len(self.keys_hex)} shares>, <root token>)"


def _errors(body: Any) -> str:
    if isinstance(body, dict):
        return "; ".join(str(e) for e in body.get("errors") or [])[:300]
    return ""


def _tls_reason(exc: BaseException) -> str:
    cause = getattr(exc, "certificate_error", None) or getattr(exc, "os_error", None) or exc
    reason = getattr(cause, "verify_message", None) or getattr(cause, "reason", None)
    return str(reason or type(cause).__name__)[:200]


class VaultNode:
    """One Vault server (one pod), addressed directly."""

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        address: str,
        ssl_context: ssl.SSLContext | bool = True,
        server_name: str | None = None,
        request_seconds: float = 10.0,
    ) -> None:
        self.address = address.rstrip("/")
        self.server_name = server_name
        self._session = session
        self._ssl = ssl_context
        self._timeout = aiohttp.ClientTimeout(total=request_seconds)

    @property
    def verified(self) -> bool:
        """Whether every answer comes from a server that proved ``server_name`` (https, a CA,
        hostname checked). Only then may the unsealer risk more than the threshold of shares."""
        if not self.address.startswith("https://") or self._ssl is False:
            return False
        if isinstance(self._ssl, ssl.SSLContext) and not (
            self._ssl.check_hostname and self._ssl.verify_mode == ssl.CERT_REQUIRED
        ):
            return False
        return self.server_name is not None

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        url = f"{self.address}/v1/{path}"
        try:
            async with self._session.request(
                method, url, json=body, ssl=self._ssl, timeout=self._timeout,
                server_hostname=self.server_name if url.startswith("https://") else None,
            ) as response:
                try:
                    payload = await response.json(content_type=None)
                except ValueError:
                    payload = None
                if response.status >= 400:
                    raise VaultSysError(
                        f"{method} {path} on {self.address}: {response.status}"
                        f" {_errors(payload)}".rstrip(),
                        status=response.status,
                    )
                return payload
        except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError) as exc:
            # The server at this address did not prove the pod's name: nothing was sent.
            proof = f" for {self.server_name}" if self.server_name else ""
            raise VaultSysError(
                f"{method} {path} on {self.address}: TLS refused, no valid certificate{proof}"
                f" ({_tls_reason(exc)})", status=0,
            ) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise VaultSysError(
                f"{method} {path} on {self.address}: no answer ({type(exc).__name__})", status=0
            ) from None

    async def seal_status(self) -> SealStatus:
        return SealStatus.from_json(await self._call("GET", "sys/seal-status"))

    async def reset(self) -> SealStatus:
        return SealStatus.from_json(await self._call("PUT", "sys/unseal", {"reset": True}))

    async def submit(self, share_hex: str) -> SealStatus:
        """Submit one share. A wrong set fails only at the threshold (400, or 500 before 1.13)."""
        return SealStatus.from_json(await self._call("PUT", "sys/unseal", {"key": share_hex}))

    async def initialize(
        self, *, shares: int, threshold: int, pgp_keys: list[str] | None = None
    ) -> InitResult:
        body: dict[str, Any] = {"secret_shares": shares, "secret_threshold": threshold}
        if pgp_keys:
            body["pgp_keys"] = pgp_keys
        result = await self._call("PUT", "sys/init", body)
        return InitResult(keys_hex=tuple(result["keys"]), root_token=str(result["root_token"]))
